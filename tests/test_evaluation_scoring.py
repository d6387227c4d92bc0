"""The one scorer of bundle predictions (medsegzoo.evaluation.scoring), on hand-made cases."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.scoring import score_predictions


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
    _save(prediction_path(tmp_path / "pred", "a"), gt)
    _save(prediction_path(tmp_path / "pred", "b"), half)
    entries = [
        {"case_id": c, "image": f"images/{c}.nii.gz", "label": f"labels/{c}.nii.gz", "dataset": "la", "labeled_classes": ["left_atrium"]}
        for c in ("a", "b")
    ]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"name": "t", "training": [], "validation": [], "test": entries, "unlabeled": []}))
    return tmp_path, datalist


def test_evaluate_predictions_hand_computed(scored_set) -> None:
    root, datalist = scored_set
    table = score_predictions(datalist, root / "pred", "la", root / "report", dataset_dir=root, split="test",
                              metrics=("dsc", "hd95", "assd"))
    by_case = table.set_index("case")
    assert list(by_case["class"]) == ["left_atrium", "left_atrium"]
    assert by_case.loc["a", "dsc"] == pytest.approx(1.0)
    assert by_case.loc["a", "hd95"] == pytest.approx(0.0)
    assert by_case.loc["b", "dsc"] == pytest.approx(2 * 32 / (64 + 32))
    # the missing slab is 2 voxels thick along the 2 mm axis: the farthest GT surface point is 4 mm away
    assert by_case.loc["b", "hd95"] <= 4.0 + 1e-6 and by_case.loc["b", "hd95"] > 0
    assert (root / "report" / "per_case.csv").is_file() and (root / "report" / "summary.md").is_file()


def test_prediction_path_is_the_case_id_in_the_output_folder(tmp_path) -> None:
    assert prediction_path(tmp_path, "case_00001") == tmp_path / "case_00001.nii.gz"
    assert prediction_path(tmp_path, "a/b c") == tmp_path / "a_b_c.nii.gz"  # never a sub-folder or a space
    with pytest.raises(DataValidationError):
        prediction_path(tmp_path, "..")


def test_missing_prediction_is_named(scored_set) -> None:
    root, datalist = scored_set
    prediction_path(root / "pred", "b").unlink()
    with pytest.raises(DataValidationError, match=r"b\.nii\.gz[\s\S]*run the bundle's inference"):
        score_predictions(datalist, root / "pred", "la", None, dataset_dir=root)
    assert not (root / "report").exists()


def test_partial_labels_score_only_the_labeled_classes_in_another_system(tmp_path) -> None:
    # a BTCV-like prediction scored in tct5: the case labels only the spleen (MSD Spleen-like entry)
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    _save(tmp_path / "labels" / "s.nii.gz", gt)
    _save(tmp_path / "images" / "s.nii.gz", np.zeros_like(gt))
    pred = np.zeros_like(gt)
    pred[1:4, 1:4, 1:4] = 5  # tct5: 5 = spleen
    pred[6:9, 6:9, 6:9] = 3  # a liver the case does not label: no row for it
    _save(prediction_path(tmp_path / "pred", "s"), pred)
    entry = {"case_id": "s", "image": "images/s.nii.gz", "label": "labels/s.nii.gz", "dataset": "msd_spleen",
             "labeled_classes": ["spleen"]}
    datalist = tmp_path / "d.json"
    datalist.write_text(json.dumps({"name": "t", "training": [], "validation": [], "test": [entry]}))
    table = score_predictions(datalist, tmp_path / "pred", "tct5", None, dataset_dir=tmp_path)
    assert list(table["class"]) == ["spleen"] and table["dsc"].iloc[0] == pytest.approx(1.0)


