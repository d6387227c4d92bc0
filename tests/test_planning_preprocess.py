"""The bundle's preprocessing step: fingerprint + plan written once, read back by the configs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.planning import (
    compute_fingerprint,
    fit_conv_kernel_sizes,
    fit_pool_kernel_sizes,
    plan_patch_and_spacing,
)
from medsegzoo.planning.preprocess import (
    ensure_plan,
    plan_training_set,
    planned_conv_kernel_sizes,
    planned_pool_kernel_sizes,
    read_plan,
)


def _datalist(tmp_path: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        image = rng.normal(0, 10, (20, 24, 12)).astype(np.float32)
        label = np.zeros((20, 24, 12), np.uint8)
        label[5:15, 6:18, 3:9] = 1
        image[label > 0] += 100 + 10 * i
        affine = np.diag([1.0, 1.2, 3.0 + i, 1.0])
        nib.save(nib.Nifti1Image(image, affine), tmp_path / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), tmp_path / f"lab{i}.nii.gz")
        cases.append({"case_id": f"c{i}", "image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz",
                      "dataset": "msd_spleen", "labeled_classes": ["spleen"]})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"name": "t", "training": cases, "test": []}))
    return path


def test_plan_matches_the_fingerprint_functions(tmp_path: Path) -> None:
    datalist = _datalist(tmp_path)
    out = tmp_path / "plan" / "fingerprint.json"
    payload = plan_training_set(datalist, out, num_labels=2, max_patch_voxels=16**3)
    cases = [{"image": str(tmp_path / f"img{i}.nii.gz"), "label": str(tmp_path / f"lab{i}.nii.gz")} for i in range(3)]
    reference = compute_fingerprint(cases)
    assert payload["mean"] == pytest.approx(reference.mean)
    assert payload["percentile_99_5"] == pytest.approx(reference.percentile_99_5)
    assert payload["median_spacing"] == pytest.approx([1.0, 1.2, 4.0])
    assert payload["plan"] == plan_patch_and_spacing(reference, 2, max_patch_voxels=16**3)
    assert read_plan(out) == payload["plan"]
    assert np.prod(payload["plan"]["patch_size"]) <= 16**3
    assert planned_pool_kernel_sizes(out, 5) == fit_pool_kernel_sizes(payload["plan"]["pool_kernel_sizes"], 5)
    assert planned_conv_kernel_sizes(payload, 6) == fit_conv_kernel_sizes(payload["plan"]["conv_kernel_sizes"], 6)


def test_network_kernels_without_a_plan_or_from_an_older_one(tmp_path: Path) -> None:
    # a network built before any preprocessing (the model zoo's checks): fixed 2x2x2 strides, 3x3x3
    assert planned_pool_kernel_sizes(tmp_path / "missing.json", 5) == [[2, 2, 2]] * 5
    assert planned_conv_kernel_sizes(tmp_path / "missing.json", 6) == [[3, 3, 3]] * 6
    # a plan written before strides were planned: what its models were trained with
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"mean": 0.0, "plan": {"spacing": [1, 1, 1], "patch_size": [64, 64, 64]}}))
    assert planned_pool_kernel_sizes(old, 5) == [[2, 2, 2]] * 5
    planned = {"plan": {"pool_kernel_sizes": [[1, 2, 2], [2, 2, 2]], "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]]}}
    assert planned_pool_kernel_sizes(planned, 3) == [[1, 2, 2], [2, 2, 2], [1, 1, 1]]
    assert planned_conv_kernel_sizes(planned, 2) == [[1, 3, 3], [3, 3, 3]]


def test_ensure_plan_reuses_the_file(tmp_path: Path) -> None:
    datalist = _datalist(tmp_path)
    out = tmp_path / "fingerprint.json"
    first = ensure_plan(out, datalist)
    data = json.loads(out.read_text())
    data["mean"] = 12345.0  # a rerun must read this file, not recompute it
    out.write_text(json.dumps(data))
    assert ensure_plan(out, datalist)["mean"] == 12345.0
    assert ensure_plan(out, datalist, recompute=True)["mean"] == pytest.approx(first["mean"])


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no data-set plan"):
        read_plan(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text(json.dumps({"mean": 0.0}))
    with pytest.raises(DataValidationError, match="old.json.*rerun"):
        read_plan(tmp_path / "old.json")
    datalist = _datalist(tmp_path)
    with pytest.raises(DataValidationError, match="split 'validation' has no case"):
        plan_training_set(datalist, tmp_path / "x.json", split="validation")
