"""The case engine: layouts, datalists, label conversion, parallel runs and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from medsegzoo.data.io import save_volume
from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError
from medsegzoo.evaluation.cases import discover_cases, evaluate_cases
from medsegzoo.evaluation.metrics import compute_case_metrics
from medsegzoo.taxonomy import get_label_system

SPACING = (0.75, 1.25, 2.0)  # exact in float32, as NIfTI headers store them
AFFINE = np.diag([*SPACING, 1.0])
SHAPE = (20, 18, 12)
TOUCHSTONE = get_label_system("touchstone9")
# AbdomenAtlas file stems (gall_bladder, postcava)
STEMS = {"gallbladder": "gall_bladder"}


def _label_map(seed: int, classes=(1, 4, 5, 9)) -> np.ndarray:
    """A small label map with a few touchstone9 organs (blobs)."""
    rng = np.random.default_rng(seed)
    label = np.zeros(SHAPE, np.uint8)
    for value in classes:
        label[ndimage.gaussian_filter(rng.random(SHAPE), 1.5) > 0.55] = value
    return label


def _write_maps(folder: Path, cases: dict[str, np.ndarray], affine=AFFINE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for case, label in cases.items():
        save_volume(folder / f"{case}.nii.gz", label, affine)
    return folder


def _write_masks(folder: Path, cases: dict[str, np.ndarray], system=TOUCHSTONE) -> Path:
    for case, label in cases.items():
        seg = folder / case / "segmentations"
        seg.mkdir(parents=True, exist_ok=True)
        for value, name in system.labels.items():
            save_volume(seg / f"{STEMS.get(name, name)}.nii.gz", (label == value).astype(np.uint8), AFFINE)
    return folder


@pytest.fixture()
def maps(tmp_path):
    gt = {f"case{i}": _label_map(i) for i in range(3)}
    pred = {case: np.roll(label, 1, axis=i) for i, (case, label) in enumerate(gt.items())}
    return gt, pred, _write_maps(tmp_path / "gt", gt), _write_maps(tmp_path / "pred", pred)


def _expected(gt: dict[str, np.ndarray], pred: dict[str, np.ndarray], convention="aeval", tolerances="aeval") -> pd.DataFrame:
    rows = []
    for case in sorted(gt):
        for row in compute_case_metrics(pred[case], gt[case], SPACING, TOUCHSTONE.labels, tolerances, convention=convention):
            rows.append({"case": case, **row})
    return pd.DataFrame(rows)


def _assert_same(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table["case"]) == list(expected["case"])
    assert list(table["class"]) == list(expected["class"])
    for column in ("dsc", "nsd", "hd95", "assd", "gt_present", "pred_present", "gt_voxels", "pred_voxels"):
        np.testing.assert_allclose(table[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-12, err_msg=column)


def test_label_map_folders_give_the_metric_values(maps):
    gt, pred, gt_dir, pred_dir = maps
    result = evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)
    _assert_same(result.table, _expected(gt, pred))
    assert len(result.table) == 3 * 9  # every touchstone class of every case, absent ones included
    absent = result.table[~result.table["gt_present"] & ~result.table["pred_present"]]
    assert (absent["dsc"] == 1.0).all()  # A-Eval: both empty = 1
    assert result.missing_prediction == result.missing_ground_truth == []
    assert any("FLARE22" in n or "A-Eval" in n for n in result.notes())


@pytest.mark.slow
def test_worker_processes_give_the_same_table(maps):
    _, _, gt_dir, pred_dir = maps
    serial = evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False).table
    parallel = evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=2, progress=False).table
    pd.testing.assert_frame_equal(serial, parallel)


def test_per_class_mask_folders_on_either_side(maps, tmp_path):
    gt, pred, gt_dir, _ = maps
    masks_dir = _write_masks(tmp_path / "pred_masks", pred)
    assert (masks_dir / "case0" / "segmentations" / "gall_bladder.nii.gz").is_file()
    expected = _expected(gt, pred, "touchstone", "touchstone")
    from_masks = evaluate_cases(masks_dir, gt_dir, "touchstone9", convention="touchstone", workers=1, progress=False)
    _assert_same(from_masks.table, expected)
    gt_masks = _write_masks(tmp_path / "gt_masks", gt)
    both = evaluate_cases(masks_dir, gt_masks, "touchstone9", convention="touchstone", workers=1, progress=False)
    _assert_same(both.table, expected)
    # Touchstone: classes absent in the ground truth are NaN
    absent = both.table[~both.table["gt_present"]]
    assert len(absent) > 0 and absent[["dsc", "nsd", "hd95", "assd"]].isna().all().all()


def test_discover_cases_reads_both_layouts(maps, tmp_path):
    _, pred, _, pred_dir = maps
    cases = discover_cases(pred_dir, "touchstone9")
    assert sorted(cases) == ["case0", "case1", "case2"] and cases["case0"].label.endswith("case0.nii.gz")
    masks = discover_cases(_write_masks(tmp_path / "m", {"x": pred["case0"]}))
    assert set(masks["x"].masks) == set(TOUCHSTONE.classes)  # gall_bladder -> gallbladder
    with pytest.raises(LayoutError, match="no cases"):
        discover_cases(tmp_path / "m" / "x" / "segmentations" / "..")


def test_datalist_ground_truth_in_a_native_label_system(tmp_path):
    """BTCV label maps in a datalist, scored in touchstone9 (converted by the taxonomy)."""
    from medsegzoo.data.datalist import make_case, new_datalist, save_datalist
    from medsegzoo.taxonomy import convert_label_map, get_dataset

    btcv = {v: n for v, n in get_dataset("btcv").labels.items()}
    value = {n: v for v, n in btcv.items()}
    rng = np.random.default_rng(0)
    native = np.zeros(SHAPE, np.uint8)
    for name in ("spleen", "liver", "esophagus", "postcava"):
        native[ndimage.gaussian_filter(rng.random(SHAPE), 1.5) > 0.55] = value[name]
    save_volume(tmp_path / "data" / "labels" / "btcv1.nii.gz", native, AFFINE)
    save_volume(tmp_path / "data" / "images" / "btcv1.nii.gz", native.astype(np.float32), AFFINE)
    labeled = [n for n in btcv.values() if n != "pancreas"]  # pretend pancreas was not annotated
    entry = make_case("btcv1", "images/btcv1.nii.gz", dataset="btcv", labeled_classes=labeled, label="labels/btcv1.nii.gz", site="A", age=61)
    datalist = tmp_path / "data" / "datalist.json"
    save_datalist(new_datalist({"test": [entry]}, name="btcv", layout="btcv"), datalist)

    converted = convert_label_map(native, "btcv", "touchstone9")
    pred = np.roll(converted, 1, axis=0)
    pred_dir = _write_maps(tmp_path / "pred", {"btcv1": pred})
    result = evaluate_cases(pred_dir, datalist, "touchstone9", workers=1, progress=False)
    table = result.table
    assert "pancreas" not in set(table["class"])  # not labeled: no row
    assert list(table["class"]) == [c for c in TOUCHSTONE.classes if c != "pancreas"]
    expected = {r["class"]: r for r in compute_case_metrics(pred, converted, SPACING, TOUCHSTONE.labels, "aeval")}
    for row in table.to_dict("records"):
        assert row["dsc"] == expected[row["class"]]["dsc"]
        assert row["nsd"] == pytest.approx(expected[row["class"]]["nsd"], abs=1e-12)
        assert row["site"] == "A" and row["age"] == 61 and row["dataset"] == "btcv"


def test_metadata_csv_is_joined_on_case(maps, tmp_path):
    _, _, gt_dir, pred_dir = maps
    csv = tmp_path / "meta.csv"
    pd.DataFrame({"case_id": ["case0", "case1", "case2"], "sex": ["F", "M", "F"], "age": [50, 60, 70]}).to_csv(csv, index=False)
    table = evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False, metadata=csv).table
    assert (table.loc[table["case"] == "case1", "sex"] == "M").all()
    assert table.groupby("case")["age"].first().tolist() == [50, 60, 70]
    pd.DataFrame({"case": ["case0"], "dsc": [1]}).to_csv(csv, index=False)
    with pytest.raises(DataValidationError, match="overwrite"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False, metadata=csv)


# ---- bad input ----------------------------------------------------------------------------


def test_missing_cases_fail_by_default_and_are_counted_when_allowed(maps):
    _, pred, gt_dir, pred_dir = maps
    (pred_dir / "case1.nii.gz").unlink()
    save_volume(pred_dir / "extra.nii.gz", pred["case0"], AFFINE)
    with pytest.raises(DataValidationError, match=r"1 case\(s\) .* no prediction .*case1.*1 prediction\(s\) .*extra.*allow-missing"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)
    result = evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False, allow_missing=True)
    assert sorted(result.table["case"].unique()) == ["case0", "case2"]
    assert result.missing_prediction == ["case1"] and result.missing_ground_truth == ["extra"]
    notes = "\n".join(result.notes())
    assert "skipped 1 ground-truth case(s) without prediction: case1" in notes
    assert "skipped 1 prediction(s) without ground truth: extra" in notes


def test_different_shapes_or_affines_name_both_files(maps):
    _, pred, gt_dir, pred_dir = maps
    save_volume(pred_dir / "case0.nii.gz", pred["case0"][:, :, :-1], AFFINE)
    with pytest.raises(DataValidationError, match=r"pred/case0.nii.gz has shape \(20, 18, 11\) but .*gt/case0.nii.gz"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    save_volume(pred_dir / "case0.nii.gz", pred["case0"], shifted)
    with pytest.raises(DataValidationError, match=r"pred/case0.nii.gz and .*gt/case0.nii.gz have different affines"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)


def test_label_values_outside_the_system_name_file_and_values(maps):
    _, pred, gt_dir, pred_dir = maps
    bad = pred["case2"].copy()
    bad[0, 0, 0], bad[1, 0, 0] = 12, 40
    save_volume(pred_dir / "case2.nii.gz", bad, AFFINE)
    with pytest.raises(DataValidationError, match=r"pred/case2.nii.gz: label values \[12, 40\] are not in label system 'touchstone9'"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)
    save_volume(pred_dir / "case2.nii.gz", pred["case2"].astype(np.float32) + 0.5, AFFINE)
    with pytest.raises(DataValidationError, match=r"case2.nii.gz: label map holds non-integer values"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", workers=1, progress=False)


def test_non_binary_or_missing_masks_name_the_file(maps, tmp_path):
    _, pred, gt_dir, _ = maps
    masks_dir = _write_masks(tmp_path / "pm", pred)
    liver = masks_dir / "case1" / "segmentations" / "liver.nii.gz"
    save_volume(liver, (pred["case1"] == 5).astype(np.uint8) * 255, AFFINE)
    with pytest.raises(DataValidationError, match=r"case1/segmentations/liver.nii.gz: mask of class 'liver' is not binary \(values 0, 255\)"):
        evaluate_cases(masks_dir, gt_dir, "touchstone9", workers=1, progress=False)
    liver.unlink()
    with pytest.raises(DataValidationError, match=r"case1/segmentations: no mask file for class\(es\) \['liver'\]"):
        evaluate_cases(masks_dir, gt_dir, "touchstone9", workers=1, progress=False)


def test_settings_are_checked_before_any_file_is_read(maps):
    _, _, gt_dir, pred_dir = maps
    with pytest.raises(UnknownNameError, match="touchstone99"):
        evaluate_cases(pred_dir, gt_dir, "touchstone99", progress=False)
    with pytest.raises(UnknownNameError, match="colon"):  # an explicit table must cover every class
        evaluate_cases(pred_dir, gt_dir, "universal32", convention="aeval", tolerances="aeval", progress=False)
    with pytest.raises(UnknownNameError, match="known"):
        evaluate_cases(pred_dir, gt_dir, "touchstone9", convention="brats", progress=False)
    table = evaluate_cases(pred_dir, gt_dir, "touchstone9", tolerances=2.0, metrics=("dsc", "nsd"), workers=1, progress=False).table
    assert list(table.columns[:4]) == ["case", "class", "dsc", "nsd"] and "hd95" not in table
    assert math.isfinite(table["nsd"].iloc[0])
    json.dumps(table.iloc[0].to_dict(), default=str)  # rows are plain values


def test_scored_classes_follow_the_ground_truth_labels():
    from medsegzoo.evaluation.cases import CaseSource, _scored_classes

    # KiTS19 labels one merged "kidney": both sides of a left/right system count as labeled
    kits = CaseSource("k", label="k.nii.gz", label_system="kits19", labeled=("kidney", "kidney_tumor"))
    assert _scored_classes(kits, TOUCHSTONE) == ["kidney_right", "kidney_left"]
    # a label map in the evaluation's own system labels every class
    assert _scored_classes(CaseSource("t", label="t.nii.gz", label_system="touchstone9"), TOUCHSTONE) == list(TOUCHSTONE.classes)
    # per-class masks label the classes they have files for
    masks = CaseSource("m", masks={"liver": "liver.nii.gz", "gall_bladder": "gb.nii.gz", "colon": "c.nii.gz"})
    assert _scored_classes(masks, TOUCHSTONE) == ["gallbladder", "liver"]


def test_classes_the_ground_truth_does_not_label_are_counted(maps, tmp_path):
    gt, _, _, pred_dir = maps
    gt_masks = _write_masks(tmp_path / "gt_masks", gt)
    (gt_masks / "case2" / "segmentations" / "spleen.nii.gz").unlink()  # case2 does not label the spleen
    result = evaluate_cases(pred_dir, gt_masks, "touchstone9", workers=1, progress=False)
    assert len(result.table) == 3 * 9 - 1
    assert not ((result.table["case"] == "case2") & (result.table["class"] == "spleen")).any()
    assert result.unlabeled_counts() == {"spleen": 1}
    assert "skipped 1 of 27 (case, class) pairs: the ground truth does not label the class (spleen in 1 case(s))" in result.notes()
    complete = evaluate_cases(pred_dir, _write_masks(tmp_path / "full", gt), "touchstone9", workers=1, progress=False)
    assert complete.unlabeled_counts() == {} and not any("does not label" in n for n in complete.notes())
