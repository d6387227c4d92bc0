"""A-Eval scoring through the one scorer: native maps of both sides meet in the shared system."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import UnknownNameError
from medsegzoo.evaluation.protocols.aeval import aeval_tolerances
from medsegzoo.evaluation.scoring import score_predictions

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


def _score(datalist: Path, pred_dir: Path, tmp_path: Path, report_dir: Path | None = None):
    return score_predictions(datalist, pred_dir, "flare22", report_dir, dataset_dir=tmp_path, evaluation_system="aeval8",
                             metrics=("dsc", "nsd"))


def test_native_labels_and_predictions_meet_in_aeval8(tmp_path: Path) -> None:
    # BTCV ground truth (liver 6, spleen 1, kidneys 2/3); prediction in FLARE22 values (liver 1,
    # spleen 3, kidney_right 2, kidney_left 13) with the left kidney missed
    datalist = _case_set(tmp_path, "btcv", {"liver": 6, "spleen": 1, "kidney_right": 2, "kidney_left": 3},
                         labeled=["liver", "spleen", "kidney_right", "kidney_left", "pancreas", "gallbladder",
                                  "esophagus", "stomach"])
    _save(prediction_path(tmp_path / "pred", "a"), _blocks({"liver": 1, "spleen": 3, "kidney_right": 2}))
    table = _score(datalist, tmp_path / "pred", tmp_path)
    by_class = table.set_index("class")
    assert list(table["class"]) == ["liver", "kidney_right", "spleen", "pancreas", "gallbladder", "esophagus", "stomach", "kidney_left"]
    for organ in ("liver", "spleen", "kidney_right"):
        assert by_class.loc[organ, "dsc"] == pytest.approx(1.0) and by_class.loc[organ, "nsd"] == pytest.approx(1.0)
    assert by_class.loc["kidney_left", "dsc"] == 0.0  # missed organ: a real zero
    # BTCV labels pancreas, gallbladder, esophagus, stomach: both empty here = 1 (A-Eval convention)
    assert by_class.loc["pancreas", "dsc"] == 1.0


def test_classes_the_test_set_lacks_are_not_scored(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "msd_spleen", {"spleen": 1})
    _save(prediction_path(tmp_path / "pred", "a"), _blocks({"liver": 1, "spleen": 3}))
    table = _score(datalist, tmp_path / "pred", tmp_path, tmp_path / "rep")
    # the predicted liver is not counted against a set that does not label it: no row, not a zero
    assert list(table["class"]) == ["spleen"]
    assert table.set_index("class").loc["spleen", "dsc"] == pytest.approx(1.0)
    assert (tmp_path / "rep" / "per_case.csv").is_file()


def test_case_level_labeled_classes_restrict_scoring(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "flare22", {"liver": 1, "spleen": 3}, labeled=["liver", "spleen"])
    _save(prediction_path(tmp_path / "pred", "a"), _blocks({"liver": 1, "spleen": 3}))
    table = _score(datalist, tmp_path / "pred", tmp_path)
    assert set(table["class"]) == {"liver", "spleen"}


def test_unknown_native_map_fails_before_scoring(tmp_path: Path) -> None:
    datalist = _case_set(tmp_path, "my_hospital", {"spleen": 1})
    _save(prediction_path(tmp_path / "pred", "a"), _blocks({"spleen": 3}))
    with pytest.raises(UnknownNameError, match=r"case 'a' .*data set 'my_hospital'"):
        _score(datalist, tmp_path / "pred", tmp_path)


def test_tolerances_by_name_and_as_the_public_code_indexes_them() -> None:
    by_name = aeval_tolerances("aeval8")
    assert by_name == {"liver": 5.0, "kidney_right": 3.0, "spleen": 3.0, "pancreas": 5.0, "gallbladder": 2.0,
                       "esophagus": 3.0, "stomach": 5.0, "kidney_left": 3.0}
    public = aeval_tolerances("aeval8", "aeval_public_code")
    assert {c: v for c, v in public.items() if v != by_name[c]} == {"esophagus": 2.0, "stomach": 2.0, "kidney_left": 2.0}
    assert aeval_tolerances("aeval10")["adrenal_gland_left"] == 2.0
    with pytest.raises(UnknownNameError, match="tolerance_indexing"):
        aeval_tolerances("aeval8", "by_position")
