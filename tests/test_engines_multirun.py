"""Tests of the TCSeg prediction scoring and the multi-run command line (medsegzoo.engines.multirun)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.engines.multirun import evaluate_predictions, main, prediction_path
from medsegzoo.errors import DataValidationError


def _save(path, array, spacing=(2.0, 1.0, 1.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))


@pytest.fixture()
def scored_set(tmp_path):
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[2:6, 2:6, 2:6] = 1  # 64 voxels
    half = gt.copy()
    half[4:6] = 0  # 32 voxels, all inside the ground truth
    for case in ("a", "b"):
        _save(tmp_path / "images" / f"{case}.nii.gz", np.zeros_like(gt))
        _save(tmp_path / "labels" / f"{case}.nii.gz", gt * 255 if case == "b" else gt)  # LA nrrd style 255 too
    _save(tmp_path / "pred" / "images" / "a_seg.nii.gz", gt)
    _save(tmp_path / "pred" / "images" / "b_seg.nii.gz", half)
    entries = [
        {"case_id": c, "image": f"images/{c}.nii.gz", "label": f"labels/{c}.nii.gz", "dataset": "la", "labeled_classes": ["left_atrium"]}
        for c in ("a", "b")
    ]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"name": "t", "training": [], "validation": [], "test": entries, "unlabeled": []}))
    return tmp_path, datalist


def test_evaluate_predictions_hand_computed(scored_set) -> None:
    root, datalist = scored_set
    table = evaluate_predictions(root / "pred", datalist, "la", "test", root, out_dir=root / "report")
    by_case = table.set_index("case")
    assert list(by_case["class"]) == ["left_atrium", "left_atrium"]
    assert by_case.loc["a", "dsc"] == pytest.approx(1.0)
    assert by_case.loc["a", "hd95"] == pytest.approx(0.0)
    assert by_case.loc["b", "dsc"] == pytest.approx(2 * 32 / (64 + 32))
    # the missing slab is 2 voxels thick along the 2 mm axis: the farthest GT surface point is 4 mm away
    assert by_case.loc["b", "hd95"] <= 4.0 + 1e-6 and by_case.loc["b", "hd95"] > 0
    assert (root / "report" / "per_case.csv").is_file() and (root / "report" / "summary.md").is_file()


def test_prediction_path_keeps_folders_below_the_data_root(tmp_path) -> None:
    image = tmp_path / "2018LA_Seg_Training Set" / "X1" / "mri_norm2.h5"
    assert prediction_path(tmp_path / "p", image, "seg", tmp_path) == tmp_path / "p" / "2018LA_Seg_Training Set" / "X1" / "mri_norm2_seg.nii.gz"
    assert prediction_path(tmp_path / "p", "a/b.nii.gz") == tmp_path / "p" / "b_seg.nii.gz"


def test_missing_prediction_is_named(scored_set) -> None:
    root, datalist = scored_set
    (root / "pred" / "images" / "b_seg.nii.gz").unlink()
    with pytest.raises(DataValidationError, match="b_seg.nii.gz"):
        evaluate_predictions(root / "pred", datalist, "la", "test", root)


def test_cli_rejects_bad_override(tmp_path, capsys) -> None:
    code = main(["--bundle", str(tmp_path), "--dataset_dir", str(tmp_path), "--datalist", str(tmp_path / "x.json"),
                 "--out", str(tmp_path / "o"), "--set", "no_equals_sign"])
    assert code == 1 and "KEY=VALUE" in capsys.readouterr().err
