"""Export a bundle's inference network (TorchScript through MONAI, ONNX) and check it.

TorchScript goes through MONAI's own ``ckpt_export`` (``python -m monai.bundle ckpt_export``), which
embeds the bundle's metadata and configs in the ``.ts`` file. The TCT, TCSeg and STU-Net networks
compile with ``torch.jit.script`` (the model zoo's check: ``ckpt_export`` without tracing); the
universal model does not (MONAI's Swin UNETR calls gradient checkpointing, whose ``**kwargs``
TorchScript cannot compile) and is exported with ``--use_trace True`` at the bundle's patch size.
Tracing records shape arithmetic as graph ops, so the sliding-window batch size may vary - except
for the universal model, whose dynamic heads run one grouped convolution with
``groups = batch x classes``: tracing freezes that product, so its exports run only at the traced
batch size (export with ``--input_shape [sw_batch_size, 1, *patch]`` and use that
``sw_batch_size``; ``FIXED_BATCH_NETWORKS``). ONNX uses the TorchScript-based
``torch.onnx.export`` (``dynamo=False``): the dynamo exporter needs ``onnxscript``, which is not
a dependency.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsegzoo.errors import MedSegZooError

ONNX_OPSET = 17
# networks whose traced/ONNX export is valid only at the traced batch size (see module docstring)
FIXED_BATCH_NETWORKS = ("UniversalModel",)


def has_dynamic_batch(net: torch.nn.Module) -> bool:
    """False for networks whose export freezes the batch size (:data:`FIXED_BATCH_NETWORKS`)."""
    return type(net).__name__ not in FIXED_BATCH_NETWORKS


def load_bundle_network(
    bundle_root: str | os.PathLike,
    config_files: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
    net_id: str = "network_def",
    ckpt_file: str | os.PathLike | None = None,
    key_in_ckpt: str | None = "model",
) -> torch.nn.Module:
    """Instantiate a bundle's network from its configs (CPU, eval mode), optionally with weights.

    Args:
        bundle_root: bundle folder (``bundle_root`` of the configs).
        config_files: config names in ``configs/`` merged left to right (e.g. train, inference, smoke).
        overrides: more config entries (``#``-nested ids).
        net_id: the network's config id (``network_def``: the module before ``.to(device)``).
        ckpt_file: checkpoint to load.
        key_in_ckpt: key holding the state dict in a nested checkpoint (used when present).

    Returns:
        The network in eval mode on the CPU.

    Raises:
        MedSegZooError: the config id is not a torch module.
    """
    from monai.bundle import ConfigParser

    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / name) for name in config_files])
    parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        parser[key] = value
    net = parser.get_parsed_content(net_id)
    if not isinstance(net, torch.nn.Module):
        raise MedSegZooError(f"{root}/configs {list(config_files)}: '{net_id}' is a {type(net).__name__}, not a torch module")
    if ckpt_file is not None:
        state = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        if key_in_ckpt and isinstance(state, dict) and key_in_ckpt in state:
            state = state[key_in_ckpt]
        net.load_state_dict(state)
    return net.cpu().eval()


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike,
                opset: int = ONNX_OPSET, dynamic_batch: bool | None = None) -> Path:
    """Export ``net`` to ONNX with input ``image`` and output ``pred``.

    Args:
        net: the network (eval mode).
        example: an input of the bundle's patch size, ``(B, C, H, W, D)``.
        path: output ``.onnx`` file.
        opset: ONNX opset.
        dynamic_batch: make the batch axis dynamic (default: unless the network freezes it,
            :func:`has_dynamic_batch`; then the model runs only at ``example``'s batch size).

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = has_dynamic_batch(net) if dynamic_batch is None else dynamic_batch
    with torch.no_grad():
        torch.onnx.export(
            net.eval(), (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["pred"],
            dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}} if dynamic else None,
        )
    return path


def run_onnx(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Run an exported ONNX model on the CPU with onnxruntime; returns ``pred``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return session.run(["pred"], {"image": array.astype(np.float32)})[0]


def max_abs_difference(reference: torch.Tensor | np.ndarray, candidate: torch.Tensor | np.ndarray) -> float:
    """Largest absolute difference of two outputs of the same shape.

    Raises:
        MedSegZooError: the shapes differ.
    """
    ref = reference.detach().cpu().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
    cand = candidate.detach().cpu().numpy() if isinstance(candidate, torch.Tensor) else np.asarray(candidate)
    if ref.shape != cand.shape:
        raise MedSegZooError(f"exported output shape {cand.shape} differs from the eager {ref.shape}")
    return float(np.max(np.abs(ref.astype(np.float64) - cand.astype(np.float64))))
