"""Scoring written label maps in A-Eval's shared system (native maps of both sides converted)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.engines.aeval_evaluation import aeval_tolerances, evaluate_predictions, prediction_path
from medsegzoo.errors import UnknownNameError

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), AFFINE), path)


def _blocks(values: dict[str, int]) -> np.ndarray:
    """A 24^3 map with one cube per organ, at fixed places, painted with the given values."""
    out = np.zeros((24, 24, 24), np.uint8)
    places = {"liver": (2, 2, 2), "spleen": (12, 2, 2), "kidney_right": (2, 12, 12), "kidney_left": (14, 14, 14)}
    for name, value in values.items():
        x, y, z = places[name]
        out[x:x + 6, y:y + 6, z:z + 6] = value
    return out


def _case_set(tmp_path: Path, dataset: str, native: dict[str, int], labeled: list[str] | None = None) -> Path:
    _save(tmp_path / "img" / "a.nii.gz", np.zeros((24, 24, 24)))
    _save(tmp_path / "lab" / "a.nii.gz", _blocks(native))
    case = {"case_id": "a", "image": "img/a.nii.gz", "label": "lab/a.nii.gz", "dataset": dataset,
            "labeled_classes": labeled or list(native)}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"name": dataset, "training": [], "test": [case]}))
    return path


def test_prediction_path_follows_monai_folder_layout(tmp_path: Path) -> None:
    assert prediction_path(tmp_path / "d" / "img" / "x.nii.gz", tmp_path / "p", tmp_path / "d") == tmp_path / "p" / "img" / "x_seg.nii.gz"
    assert prediction_path("/elsewhere/y.nii", tmp_path / "p", tmp_path / "d").name == "y_seg.nii.gz"


def test_native_labels_and_predictions_meet_in_aeval8(tmp_path: Path) -> None:
    # BTCV ground truth (liver 6, spleen 1, kidneys 2/3); prediction in FLARE22 values (liver 1,
    # spleen 3, kidney_right 2, kidney_left 13) with the left kidney missed
    datalist = _case_set(tmp_path, "btcv", {"liver": 6, "spleen": 1, "kidney_right": 2, "kidney_left": 3},
                         labeled=["liver", "spleen", "kidney_right", "kidney_left", "pancreas", "gallbladder",
                                  "esophagus", "stomach"])
    _save(tmp_path / "pred" / "img" / "a_seg.nii.gz", _blocks({"liver": 1, "spleen": 3, "kidney_right": 2}))
    table = evaluate_predictions(datalist, tmp_path / "pred", "flare22", dataset_dir=tmp_path)
    by_class = table.set_index("class")
    assert list(table["class"]) == ["liver", "kidney_right", "spleen", "pancreas", "gallbladder", "esophagus", "stomach", "kidney_left"]
    for organ in ("liver", "spleen", "kidney_right"):
        assert by_class.loc[organ, "dsc"] == pytest.approx(1.0) and by_class.loc[organ, "nsd"] == pytest.approx(1.0)
    assert by_class.loc["kidney_left", "dsc"] == 0.0  # missed organ: a real zero
    # BTCV labels pancreas, gallbladder, esophagus, stomach: both empty here = 1 (A-Eval convention)
    assert by_class.loc["pancreas", "dsc"] == 1.0


def test_classes_the_test_set_lacks_are_absent_not_zero(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "msd_spleen", {"spleen": 1})
    _save(tmp_path / "pred" / "img" / "a_seg.nii.gz", _blocks({"liver": 1, "spleen": 3}))
    table = evaluate_predictions(datalist, tmp_path / "pred", "flare22", dataset_dir=tmp_path, report_dir=tmp_path / "rep")
    others = table[table["class"] != "spleen"]
    assert others["dsc"].isna().all() and others["nsd"].isna().all() and (~others["labeled"]).all()
    assert bool(others.set_index("class").loc["liver", "pred_present"])  # predicted, but not scored
    assert table.set_index("class").loc["spleen", "dsc"] == pytest.approx(1.0)
    assert (tmp_path / "rep" / "per_case.csv").is_file()


def test_case_level_labeled_classes_restrict_scoring(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "flare22", {"liver": 1, "spleen": 3}, labeled=["liver", "spleen"])
    _save(tmp_path / "pred" / "img" / "a_seg.nii.gz", _blocks({"liver": 1, "spleen": 3}))
    table = evaluate_predictions(datalist, tmp_path / "pred", "flare22", dataset_dir=tmp_path)
    assert set(table.dropna(subset=["dsc"])["class"]) == {"liver", "spleen"}


def test_unknown_native_map_fails_before_scoring(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "my_hospital", {"spleen": 1})
    with pytest.raises(UnknownNameError, match="case a names data set 'my_hospital'"):
        evaluate_predictions(datalist, tmp_path / "pred", "flare22", dataset_dir=tmp_path)


def test_tolerances_by_name_and_as_the_public_code_indexes_them() -> None:
    by_name = aeval_tolerances("aeval8")
    assert by_name == {"liver": 5.0, "kidney_right": 3.0, "spleen": 3.0, "pancreas": 5.0, "gallbladder": 2.0,
                       "esophagus": 3.0, "stomach": 5.0, "kidney_left": 3.0}
    public = aeval_tolerances("aeval8", "aeval_public_code")
    assert {c: v for c, v in public.items() if v != by_name[c]} == {"esophagus": 2.0, "stomach": 2.0, "kidney_left": 2.0}
    assert aeval_tolerances("aeval10")["adrenal_gland_left"] == 2.0
    with pytest.raises(UnknownNameError, match="tolerance_indexing"):
        aeval_tolerances("aeval8", "by_position")
