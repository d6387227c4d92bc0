"""Checks every bundle test runs on its own bundle (model-zoo conformance, strict weights).

* :func:`assert_train_and_inference_agree`: ``inference.json`` stands alone (the model zoo
  runs it without ``train.json``), so it repeats the settings training used; this checks
  they are equal (spacing, classes, intensity preset, patch, ...) and that the inference
  network has exactly the training network's inference parameters (names and shapes).
* :func:`assert_prediction_equals_direct_forward`: the label map the bundle's inference wrote
  equals the argmax of a direct forward pass of the checkpoint's network (built from
  ``network_def``, weights loaded strictly) on the same preprocessed input.
* :func:`assert_foreign_checkpoint_fails`: weights of another network stop inference with
  the key lists, and write nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from bundle_utils import bundle_dir, bundle_parser

from medsegzoo.bundle_runs import BundleRun, BundleRunError, run_in_process
from medsegzoo.data.predictions import prediction_path
from medsegzoo.networks.weights import StateDictMismatchError, load_weights

SHARED_KEYS = ("label_system", "class_names", "spacing", "patch_size", "intensity_preset")


def assert_train_and_inference_agree(
    bundle: str | os.PathLike,
    train_configs: Sequence[str] = ("train.json",),
    infer_configs: Sequence[str] = ("inference.json",),
    keys: Sequence[str] = SHARED_KEYS,
    overrides: Mapping[str, Any] | None = None,
    training_only: Sequence[str] = (),
) -> None:
    """Settings and inference network parameters of ``train.json`` and ``inference.json`` agree."""
    train = bundle_parser(bundle, list(train_configs), overrides)
    infer = bundle_parser(bundle, list(infer_configs), overrides)
    for key in keys:
        a, b = train.get_parsed_content(key), infer.get_parsed_content(key)
        assert _plain(a) == _plain(b), f"{key}: train.json {a!r} != inference.json {b!r}"
    train_net = train.get_parsed_content("network_def")
    infer_net = infer.get_parsed_content("network_def")
    train_shapes = {k: tuple(v.shape) for k, v in train_net.state_dict().items() if not k.startswith(tuple(training_only))}
    infer_shapes = {k: tuple(v.shape) for k, v in infer_net.state_dict().items()}
    assert train_shapes == infer_shapes, (
        f"inference network differs from the training network: only in training {sorted(set(train_shapes) - set(infer_shapes))[:5]}, "
        f"only in inference {sorted(set(infer_shapes) - set(train_shapes))[:5]}"
    )


def _plain(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def assert_prediction_equals_direct_forward(
    bundle: str | os.PathLike,
    infer_configs: Sequence[str],
    overrides: Mapping[str, Any],
    case: Mapping[str, Any],
    to_labels: Callable[[torch.Tensor], torch.Tensor],
    network_factory: Callable[[Any], torch.nn.Module] | None = None,
) -> None:
    """The written prediction of ``case`` equals a direct forward pass of the checkpoint.

    Run the bundle's inference first with ``overrides`` that make preprocessing a pure
    intensity mapping (the data's own spacing and orientation), so that the prediction file
    and the network output share one grid.

    Args:
        bundle: bundle name or path.
        infer_configs: the inference configs that were run.
        overrides: the same overrides (``bundle_root``, ``dataset_dir``, ``datalist``, ...).
        case: the datalist entry (absolute ``image`` path, ``case_id``).
        to_labels: logits ``(1, C, *spatial)`` -> label map ``(*spatial)`` as the bundle defines
            it (argmax for softmax bundles, thresholds for sigmoid ones).
        network_factory: builds the network from the parser (default: ``network_def``).
    """
    parser = bundle_parser(bundle, list(infer_configs), {**overrides, "amp": False})
    network = network_factory(parser) if network_factory else parser.get_parsed_content("network_def")
    load_weights(network, parser.get_parsed_content("model_file"))
    network.eval()
    # the whole entry but its label: readers take geometry from it where the format has none (HDF5 spacing)
    sample = parser.get_parsed_content("preprocessing")({k: v for k, v in case.items() if k != "label"})
    inferer = parser.get_parsed_content("inferer")
    with torch.no_grad():
        logits = inferer(torch.as_tensor(sample["image"])[None], network)
    expected = to_labels(logits).cpu().numpy()
    written = prediction_path(parser.get_parsed_content("output_dir"), case["case_id"])
    got = np.asarray(nib.load(str(written)).dataobj)
    assert got.shape == expected.shape, f"{written}: shape {got.shape} vs direct forward {expected.shape}"
    agreement = float((got == expected).mean())
    assert agreement == 1.0, f"{written}: {agreement:.6f} of the voxels equal the direct forward pass"


def assert_foreign_checkpoint_fails(
    bundle: str | os.PathLike,
    infer_configs: Sequence[str],
    overrides: Mapping[str, Any],
    tmp_path: Path,
) -> None:
    """Inference with the weights of another network stops with the key lists and writes nothing."""
    foreign = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.Conv3d(4, 2, 1))
    weights = tmp_path / "foreign.pt"
    torch.save(foreign.state_dict(), weights)
    output = tmp_path / "foreign_out"
    run = BundleRun(bundle_dir(bundle), list(infer_configs),
                    {**overrides, "model_file": str(weights), "output_dir": str(output)}, run_id="inference")
    try:
        run_in_process(run)
    except (StateDictMismatchError, RuntimeError, BundleRunError) as err:
        message = "".join(str(e) for e in exception_chain(err))
        assert "foreign.pt" in message and "missing in the checkpoint" in message and "unexpected" in message, message[-2000:]
    else:
        raise AssertionError("inference ran with a foreign checkpoint")
    assert not list(output.glob("*.nii.gz")), "predictions were written with foreign weights"


def exception_chain(err: BaseException) -> list[BaseException]:
    out = []
    while err is not None and err not in out:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out
