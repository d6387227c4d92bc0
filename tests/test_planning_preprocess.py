"""The bundle's preprocessing step: fingerprint + plan written once, read back by the configs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.planning import compute_fingerprint, plan_patch_and_spacing
from medsegzoo.planning.preprocess import ensure_plan, plan_training_set, read_plan


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
    payload = plan_training_set(datalist, out, divisible_by=(4, 4, 4), max_patch_voxels=16**3)
    cases = [{"image": str(tmp_path / f"img{i}.nii.gz"), "label": str(tmp_path / f"lab{i}.nii.gz")} for i in range(3)]
    reference = compute_fingerprint(cases)
    assert payload["mean"] == pytest.approx(reference.mean)
    assert payload["percentile_99_5"] == pytest.approx(reference.percentile_99_5)
    assert payload["median_spacing"] == pytest.approx([1.0, 1.2, 4.0])
    assert payload["plan"] == plan_patch_and_spacing(reference, (4, 4, 4), 16**3)
    assert read_plan(out) == payload["plan"]
    assert np.prod(payload["plan"]["patch_size"]) <= 16**3


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
