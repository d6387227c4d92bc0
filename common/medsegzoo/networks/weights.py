"""Loading network weights strictly: every key and shape must match, or the error lists them.

PyTorch's ``load_state_dict(strict=False)`` (and MONAI's ``CheckpointLoader(strict=False)``)
silently keeps the random initialisation of every tensor it cannot match: a checkpoint of
another network, or one whose keys carry a ``module.`` prefix, "loads" and the model predicts
noise. Every loading path of the package goes through :func:`load_weights` instead:

* the checkpoint may be a plain state dict or a dict wrapping it under a known key
  (``network``, ``model``, ``state_dict`` (nnU-Net), ``net`` (CLIP universal model release),
  ``network_weights``);
* files are read as data only (``weights_only``), with numpy scalars allowed because nnU-Net v1
  ``.model`` files keep their training curves as numpy numbers; a file holding other pickled
  objects is refused, never executed;
* a ``module.`` prefix on every key (a model saved from ``DataParallel`` /
  ``DistributedDataParallel``) is removed; that is a rename, not a guess;
* anything else that does not match (missing, unexpected or differently shaped tensors) is a
  :class:`StateDictMismatchError` that names the file and lists each key, unless fine-tuning
  asks to load only the tensors whose names and shapes match (``only_matching_shapes``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from medsegzoo.errors import MedSegZooError

__all__ = [
    "WEIGHT_KEYS",
    "CheckpointContent",
    "StateDictMismatchError",
    "compare_state_dicts",
    "load_checkpoint_file",
    "load_weights",
    "mismatch_error",
    "read_checkpoint",
    "read_state_dict",
    "with_weights",
]

WEIGHT_KEYS: tuple[str, ...] = ("network", "model", "state_dict", "net", "network_weights")
_LISTED = 40


class StateDictMismatchError(MedSegZooError, RuntimeError):
    """A checkpoint whose keys or shapes do not fit the network."""


@dataclasses.dataclass(frozen=True)
class CheckpointContent:
    """The weights found in a checkpoint, and where they were found.

    Attributes:
        state: ``name -> tensor`` (a whole-dict ``module.`` prefix removed).
        wrapper_key: the top-level key the weights were under (``"state_dict"``), None for a
            plain state dict.
        top_level_keys: every top-level key of the file (the weights' own names for a plain
            state dict), to tell the user what else it held (optimizer, epoch, ...).
        removed_prefix: ``"module."`` when it was removed from every key, else None.
    """

    state: dict[str, torch.Tensor]
    wrapper_key: str | None
    top_level_keys: tuple[str, ...]
    removed_prefix: str | None


def _numpy_safe_globals() -> list[Any]:
    """numpy scalar and dtype types a weights-only load may rebuild.

    nnU-Net v1 ``.model`` files (STU-Net's release format) keep their loss curves and best
    metrics as numpy scalars beside the tensors. A numpy scalar is pickled as
    ``multiarray.scalar(dtype, raw bytes)``: data, not code, so it is safe to allow, unlike
    ``weights_only=False``, which would run whatever a pickled object asks for. Files written
    with numpy 1.x name the function ``numpy.core.multiarray.scalar``, numpy 2 names it
    ``numpy._core.multiarray.scalar``; both names are allowed (numpy 2 still has the function).
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list[Any] = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    # a dtype is rebuilt as an instance of its class (numpy.dtypes.Float64DType, ...)
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}, key=str)
    return allowed


def load_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` a checkpoint as data only (tensors, containers, numbers, numpy scalars).

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded.

    Returns:
        What the file holds.

    Raises:
        StateDictMismatchError: the file does not exist, is truncated, is not a file written by
            ``torch.save``, or holds pickled objects other than data (which could run code); the
            message names the file.
    """
    if not os.path.isfile(path):
        raise StateDictMismatchError(f"{path}: checkpoint file does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled objects
        detail = _load_error_detail(str(err))
        if "GLOBAL" in detail or "Can only build" in detail:
            raise StateDictMismatchError(
                f"{path}: holds pickled Python objects, not only weights ({detail.split(' was not')[0]}); "
                "such objects could run code when loaded, so the file is not read"
            ) from err
        raise StateDictMismatchError(
            f"{path}: not a readable PyTorch checkpoint ({os.path.getsize(path)} bytes; truncated, or not "
            f"written by torch.save): {type(err).__name__}: {detail}"
        ) from err


def _load_error_detail(text: str) -> str:
    """The one informative line of a ``torch.load`` error (its weights-only errors are a page long)."""
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines()]
        lines = [line for line in lines if line and not line.startswith("Check the documentation")]
        return lines[0] if lines else text.splitlines()[0]
    return text.splitlines()[0] if text else ""


def read_checkpoint(source: str | os.PathLike | Mapping[str, Any], map_location: str | torch.device = "cpu") -> CheckpointContent:
    """The state dict held by a checkpoint file or mapping, and where in it it was.

    Args:
        source: checkpoint path, or an already loaded checkpoint / state dict.
        map_location: where tensors are loaded.

    Returns:
        The weights and their place in the file (see :class:`CheckpointContent`).

    Raises:
        StateDictMismatchError: a missing, unreadable or non-checkpoint file, or a mapping
            without tensors.
    """
    where = str(source) if not isinstance(source, Mapping) else "the given checkpoint"
    loaded = source if isinstance(source, Mapping) else load_checkpoint_file(source, map_location)
    state: Any = loaded
    wrapper = None
    for key in WEIGHT_KEYS:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state, wrapper = state[key], key
            break
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        if isinstance(loaded, Mapping):
            found = f"top-level keys: {list(loaded)[:10]}"
        elif torch.is_tensor(loaded):
            found = f"a single tensor of shape {tuple(loaded.shape)}"
        else:
            found = f"a {type(loaded).__name__}"
        raise StateDictMismatchError(
            f"{where}: holds no state dict of tensors ({found}; "
            f"weights are looked for at the top level or under {', '.join(WEIGHT_KEYS)})"
        )
    names = list(state)
    prefix = None
    if all(n.startswith("module.") for n in names):
        state, prefix = {n[len("module."):]: v for n, v in state.items()}, "module."
    top = tuple(str(k) for k in loaded) if isinstance(loaded, Mapping) else ()
    return CheckpointContent(dict(state), wrapper, top, prefix)


def read_state_dict(source: str | os.PathLike | Mapping[str, Any], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict held by a checkpoint file or mapping.

    Args:
        source: checkpoint path, or an already loaded checkpoint / state dict.
        map_location: where tensors are loaded.

    Returns:
        ``name -> tensor`` with a whole-dict ``module.`` prefix removed.

    Raises:
        StateDictMismatchError: a missing, unreadable or non-checkpoint file, or a mapping
            without tensors.
    """
    return read_checkpoint(source, map_location).state


def compare_state_dicts(own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Match checkpoint tensors to a network's state dict by name and shape.

    Args:
        own: the network's state dict (tensors on any device, ``meta`` included).
        weights: the checkpoint's tensors.

    Returns:
        ``{"loaded": [...], "skipped_shape": ["name: checkpoint (..) vs network (..)", ...],
        "missing": [...], "unexpected": [...]}``.
    """
    report: dict[str, list[str]] = {"loaded": [], "skipped_shape": [], "missing": [], "unexpected": []}
    for name, tensor in weights.items():
        if name not in own:
            report["unexpected"].append(name)
        elif tuple(own[name].shape) != tuple(tensor.shape):
            report["skipped_shape"].append(f"{name}: checkpoint {tuple(tensor.shape)} vs network {tuple(own[name].shape)}")
        else:
            report["loaded"].append(name)
    report["missing"] = [n for n in own if n not in weights]
    return report


def mismatch_error(where: str, network_name: str, report: Mapping[str, list[str]], total: int, hint: str = "") -> StateDictMismatchError:
    """The error listing every missing, unexpected and differently shaped key of a report.

    Args:
        where: the checkpoint as the user knows it (its path).
        network_name: the network's class name.
        report: :func:`compare_state_dicts`'s result.
        total: number of tensors of the network.
        hint: a sentence appended (what to do instead).

    Returns:
        The error (to raise).
    """
    sections = []
    for title, items in (("missing in the checkpoint", report["missing"]),
                         ("unexpected (not in the network)", report["unexpected"]),
                         ("different shape", report["skipped_shape"])):
        if items:
            listing = "\n    ".join(items[:_LISTED]) + (f"\n    ... {len(items) - _LISTED} more" if len(items) > _LISTED else "")
            sections.append(f"  {len(items)} {title}:\n    {listing}")
    return StateDictMismatchError(
        f"{where} does not fit {network_name} ({len(report['loaded'])} of {total} tensors match):\n"
        + "\n".join(sections) + (f"\n{hint}" if hint else "")
    )


def load_weights(
    network: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    only_matching_shapes: bool = False,
    map_location: str | torch.device = "cpu",
    hint: str = "",
) -> dict[str, list[str]]:
    """Load a checkpoint into ``network``, strictly unless ``only_matching_shapes``.

    Args:
        network: the network to load into.
        source: checkpoint path or mapping (see :func:`read_state_dict`).
        only_matching_shapes: fine-tuning to another label set: load every tensor whose name and
            shape match and keep the network's own initialisation for the rest.
        map_location: where tensors are loaded.
        hint: a sentence appended to the error (what to do instead).

    Returns:
        ``{"loaded": [...], "skipped_shape": [...], "missing": [...], "unexpected": [...]}``.

    Raises:
        StateDictMismatchError: strict loading found mismatches; the message names the file and
            lists the missing, unexpected and differently shaped keys (with both shapes).
    """
    weights = read_state_dict(source, map_location)
    own = network.state_dict()
    report = compare_state_dicts(own, weights)
    if not only_matching_shapes and (report["skipped_shape"] or report["missing"] or report["unexpected"]):
        where = str(source) if not isinstance(source, Mapping) else "the given checkpoint"
        raise mismatch_error(where, type(network).__name__, report, len(own), hint)
    to_load = {name: weights[name] for name in report["loaded"]}
    if not to_load:
        raise StateDictMismatchError(f"{source}: no tensor of the checkpoint fits {type(network).__name__}")
    network.load_state_dict(to_load, strict=False)
    return report


def with_weights(
    network: nn.Module,
    checkpoint: str | os.PathLike | None = None,
    only_matching_shapes: bool = False,
) -> nn.Module:
    """``network`` with a checkpoint loaded (none: unchanged); for bundle configs.

    Example (``train.json``)::

        "network": "$medsegzoo.networks.with_weights(@network_def, @pretrained_checkpoint).to(@device)"
    """
    if checkpoint:
        load_weights(
            network, checkpoint, only_matching_shapes=only_matching_shapes,
            hint="To fine-tune to another label set, load with only_matching_shapes=True "
            "(bundle key pretrained_only_matching_shapes).",
        )
    return network
