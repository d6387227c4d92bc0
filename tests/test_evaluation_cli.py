"""``medsegzoo evaluate`` on a tiny folder written here: files, numbers, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import surface_distance as deepmind

from medsegzoo.cli import main
from medsegzoo.data.io import save_volume

SPACING = (1.5, 1.0, 2.0)
SHAPE = (10, 12, 8)
AFFINE = np.diag([*SPACING, 1.0])
DIAGONAL = math.sqrt((10 * 1.5) ** 2 + (12 * 1.0) ** 2 + (8 * 2.0) ** 2)
# aeval8 values: liver 1, kidney_right 2, spleen 3, ..., kidney_left 8


def _case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    gt[2:6, 2:6, 2:6] = 1  # liver: a 4x4x4 cube ...
    pred[3:7, 2:6, 2:6] = 1  # ... predicted one voxel lower: 48 of 64 voxels shared
    gt[7:9, 8:11, 1:3] = 2  # kidney_right in the ground truth only: missed
    pred[0:2, 0:2, 6:8] = 8  # kidney_left predicted, absent in the ground truth
    return gt, pred


@pytest.fixture()
def folders(tmp_path):
    gt, pred = _case()
    for case in ("a", "b"):
        save_volume(tmp_path / "gt" / f"{case}.nii.gz", gt, AFFINE)
        save_volume(tmp_path / "pred" / f"{case}.nii.gz", pred, AFFINE)
    return tmp_path


def _run(*argv: str) -> int:
    return main(["evaluate", *argv, "--workers", "1", "--quiet", "--no-plots"])


def test_evaluate_writes_per_case_csv_with_the_expected_numbers(folders, capsys):
    out = folders / "report"
    code = _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(out))
    assert code == 0
    for name in ("per_case.csv", "per_class.csv", "summary.md", "summary.json", "evaluation.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "per_case.csv")
    assert len(table) == 2 * 8 and set(table["case"]) == {"a", "b"}
    rows = table[table["case"] == "a"].set_index("class")
    # liver: DSC = 2 * 48 / 128; NSD (FLARE22: 5 mm) and HD95 as DeepMind computes them
    gt, pred = _case()
    dist = deepmind.compute_surface_distances(gt == 1, pred == 1, SPACING)
    assert rows.loc["liver", "dsc"] == 0.75
    assert rows.loc["liver", "nsd"] == pytest.approx(deepmind.compute_surface_dice_at_tolerance(dist, 5.0), abs=1e-9)
    assert rows.loc["liver", "hd95"] == pytest.approx(deepmind.compute_robust_hausdorff(dist, 95)) == 1.5
    # A-Eval convention: both empty = 1 / 0 mm; one side empty = 0 / the image diagonal
    assert rows.loc["spleen", ["dsc", "nsd", "hd95", "assd"]].tolist() == [1.0, 1.0, 0.0, 0.0]
    for missed in ("kidney_right", "kidney_left"):
        assert rows.loc[missed, "dsc"] == rows.loc[missed, "nsd"] == 0.0
        assert rows.loc[missed, "hd95"] == pytest.approx(DIAGONAL)
    assert bool(rows.loc["kidney_right", "gt_present"]) and not bool(rows.loc["kidney_right", "pred_present"])
    assert rows.loc["liver", "gt_volume_mm3"] == pytest.approx(64 * 1.5 * 1.0 * 2.0)
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["convention"] == "aeval" and settings["nsd_tolerance_mm"]["liver"] == 5.0
    assert settings["n_cases"] == 2 and settings["skipped_missing_prediction"] == []
    printed = capsys.readouterr().out
    assert "2 cases, 8 classes" in printed and "liver" in printed


def test_touchstone_convention_and_a_fixed_tolerance(folders):
    out = folders / "ts"
    assert _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(out),
                "--convention", "touchstone", "--tolerance", "1", "--metrics", "dsc,nsd") == 0
    table = pd.read_csv(out / "per_case.csv").set_index(["case", "class"])
    assert list(table.columns[:2]) == ["dsc", "nsd"] and "hd95" not in table.columns
    assert math.isnan(table.loc[("a", "spleen"), "dsc"]) and math.isnan(table.loc[("a", "kidney_left"), "nsd"])
    assert table.loc[("b", "kidney_right"), "dsc"] == 0.0
    gt, pred = _case()
    dist = deepmind.compute_surface_distances(gt == 1, pred == 1, SPACING)
    assert table.loc[("b", "liver"), "nsd"] == pytest.approx(deepmind.compute_surface_dice_at_tolerance(dist, 1.0), abs=1e-9)


def test_missing_case_is_an_error_unless_allowed(folders, capsys):
    (folders / "pred" / "b.nii.gz").unlink()
    out = folders / "r"
    assert _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "medsegzoo evaluate: error:" in err and "no prediction" in err and ": b" in err
    assert not (out / "per_case.csv").exists()  # nothing half-written
    assert _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(out), "--allow-missing") == 0
    assert "skipped 1 ground-truth case(s) without prediction: b" in capsys.readouterr().err
    assert set(pd.read_csv(out / "per_case.csv")["case"]) == {"a"}
    assert json.loads((out / "evaluation.json").read_text())["skipped_missing_prediction"] == ["b"]
    assert "skipped 1 ground-truth case(s) without prediction: b" in (out / "summary.md").read_text()


def test_label_values_outside_the_system_exit_with_the_file_named(folders, capsys):
    _, pred = _case()
    pred[0, 0, 0] = 9  # aeval8 has values 1..8
    save_volume(folders / "pred" / "a.nii.gz", pred, AFFINE)
    assert _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(folders / "x")) == 1
    err = capsys.readouterr().err
    assert "a.nii.gz: label values [9] are not in label system 'aeval8'" in err



def test_a_negative_tolerance_is_a_clean_error(folders, capsys):
    argv = ["--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(folders / "x")]
    assert _run(*argv, "--tolerance", "-1") == 1
    err = capsys.readouterr().err
    assert "evaluate: error: tolerance table '-1 mm': the NSD tolerance of default must be a finite number of mm >= 0, got -1" in err
    assert not (folders / "x").exists()


@pytest.mark.slow
def test_phantom_abdomenatlas_folder_and_its_datalist(tmp_path):
    """Ground truth written by the phantom generator in the AbdomenAtlas layout, read as a folder and as a datalist."""
    from scipy import ndimage

    from medsegzoo.data.io import load_volume
    from medsegzoo.data.phantoms import write_phantom_dataset
    from medsegzoo.evaluation.metrics import compute_class_metrics
    from medsegzoo.taxonomy import get_label_system

    root = write_phantom_dataset(tmp_path / "atlas", "abdomenatlas", cases=2, size=40, seed=3)
    system = get_label_system("touchstone9")
    case = min(p.name for p in root.iterdir() if p.is_dir())
    masks = {}
    for name in system.classes:
        stem = "gall_bladder" if name == "gallbladder" else name
        masks[name], affine, spacing = load_volume(root / case / "segmentations" / f"{stem}.nii.gz")
    prediction = np.zeros(masks["liver"].shape, np.uint8)
    for value, name in system.labels.items():
        mask = masks[name].astype(bool)
        prediction[ndimage.binary_erosion(mask) if name == "liver" else mask] = value
    save_volume(tmp_path / "pred" / f"{case}.nii.gz", prediction, affine)

    expected = compute_class_metrics(ndimage.binary_erosion(masks["liver"].astype(bool)), masks["liver"], spacing, 1.5)
    assert main(["datalist", "abdomenatlas", str(root), "--out", str(tmp_path / "atlas.json")]) == 0
    for gt in (root, tmp_path / "atlas.json"):
        out = tmp_path / f"report_{Path(gt).suffix or 'folder'}"
        assert _run("--pred", str(tmp_path / "pred"), "--gt", str(gt), "--labels", "touchstone9", "--out", str(out),
                    "--convention", "touchstone", "--allow-missing") == 0
        table = pd.read_csv(out / "per_case.csv").set_index("class")
        assert set(table["case"]) == {case}
        assert table.loc["liver", "dsc"] == pytest.approx(expected["dsc"]) and table.loc["liver", "dsc"] < 1
        assert table.loc["liver", "nsd"] == pytest.approx(expected["nsd"])
        others = table.drop(index="liver")
        assert (others.loc[others["gt_present"], "dsc"] == 1.0).all()
        assert json.loads((out / "evaluation.json").read_text())["skipped_missing_ground_truth"] == []


def test_btcv_default_tolerance_falls_back_to_the_general_one_and_names_it(folders, capsys):
    # btcv's portal vein (and others of its 13 classes) has no FLARE22 tolerance
    out = folders / "btcv"
    argv = ["--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "btcv", "--metrics", "dsc,nsd"]
    assert _run(*argv, "--out", str(out)) == 0
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["nsd_tolerance_default_mm"] == 2.0
    assert settings["nsd_tolerance_mm"]["portal_vein_and_splenic_vein"] == 2.0
    assert settings["nsd_tolerance_mm"]["liver"] == 5.0  # listed classes keep the table's value
    assert "portal_vein_and_splenic_vein" in settings["nsd_tolerance_defaulted_classes"]
    assert "liver" not in settings["nsd_tolerance_defaulted_classes"]
    summary = (out / "summary.md").read_text()
    assert "portal_vein_and_splenic_vein not in the preset table, scored at the convention's general tolerance of 2 mm" in summary
    # the same table given explicitly must cover every class
    assert _run(*argv, "--out", str(folders / "explicit"), "--tolerance", "aeval") == 1
    err = capsys.readouterr().err
    assert "NSD tolerance table 'aeval' has no tolerance for class(es)" in err and "portal_vein_and_splenic_vein" in err
    assert not (folders / "explicit").exists()


def test_out_that_is_a_file_fails_before_scoring(folders, capsys):
    _, pred = _case()
    pred[0, 0, 0] = 9  # scoring would fail on this file: the --out error must come first
    save_volume(folders / "pred" / "a.nii.gz", pred, AFFINE)
    (folders / "taken").write_text("not a folder")
    assert _run("--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(folders / "taken")) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"medsegzoo evaluate: error: {folders / 'taken'}: exists and is a file; the output is a folder, choose another path"
    assert (folders / "taken").read_text() == "not a folder"


def test_write_failure_keeps_the_old_report_and_prints_one_line(folders, capsys, monkeypatch):
    import errno

    import medsegzoo.commands.evaluate

    out = folders / "report"
    argv = ["--pred", str(folders / "pred"), "--gt", str(folders / "gt"), "--labels", "aeval8", "--out", str(out)]
    assert _run(*argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(path, obj, indent=4):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    # evaluation.json, the last file, written by the command with the name it imported
    monkeypatch.setattr(medsegzoo.commands.evaluate, "atomic_write_json", full_disk)
    capsys.readouterr()
    assert _run(*argv, "--title", "second run") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"error: {out / 'evaluation.json'}: No space left on device" in err  # named as the user knows it
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old report, whole
    assert sorted(p.name for p in folders.iterdir()) == ["gt", "pred", "report"]  # no staging left
