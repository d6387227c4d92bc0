"""Round trip: phantoms written by ``medsegzoo phantoms`` in each public layout, read back by
``medsegzoo datalist``, must give the right data set, canonical classes, case counts and
existing files, and pass full validation (native label values, geometry, finite voxels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsegzoo.cli import main
from medsegzoo.data.datalist import SPLIT_KEYS, load_split
from medsegzoo.data.phantoms.layouts import LAYOUTS, MANIFEST_NAME
from medsegzoo.data.readers import PHANTOM_MANIFEST
from medsegzoo.data.validation import validate_datalist
from medsegzoo.taxonomy import get_dataset

SIZE = 32
CASES, UNLABELED = 3, 1

# layout -> (data set, spot checks {position in labeled_classes (1-based = native value for
# label maps): canonical class} from REFERENCE.md and the data set descriptions, number of
# classes)
EXPECTED: dict[str, tuple[str, dict[int, str], int]] = {
    "msd_spleen": ("msd_spleen", {1: "spleen"}, 1),
    "msd_liver": ("msd_liver", {1: "liver", 2: "liver_tumor"}, 2),
    "msd_pancreas": ("msd_pancreas", {1: "pancreas", 2: "pancreas_tumor"}, 2),
    "msd_lung": ("msd_lung", {1: "lung_tumor"}, 1),
    "msd_hepatic_vessel": (
        "msd_hepatic_vessel",
        {1: "hepatic_vessel", 2: "hepatic_vessel_tumor"},
        2,
    ),
    "msd_colon": ("msd_colon", {1: "colon_tumor"}, 1),
    "btcv": ("btcv", {1: "spleen", 6: "liver", 9: "postcava", 11: "pancreas"}, 13),
    "amos": ("amos", {6: "liver", 10: "pancreas", 15: "prostate_uterus"}, 15),
    "amos_mr": ("amos_mr", {10: "pancreas", 13: "duodenum"}, 15),
    "word": ("word", {1: "liver", 5: "stomach", 12: "adrenal_gland"}, 16),
    "flare22": ("flare22", {1: "liver", 4: "pancreas", 13: "kidney_left"}, 13),
    # per-class masks: labeled_classes in native order, one mask file each
    "totalsegmentator": ("totalsegmentator", {1: "spleen", 5: "liver", 63: "postcava"}, 117),
    "abdomenatlas": ("abdomenatlas", {2: "gallbladder", 7: "postcava"}, 9),
    "abdomenatlas1_1": ("abdomenatlas1_1", {2: "gallbladder", 19: "hepatic_vessel"}, 25),
    "kits19": ("kits19", {1: "kidney", 2: "kidney_tumor"}, 2),
    "lits": ("lits", {1: "liver", 2: "liver_tumor"}, 2),
    "chaos_mr": ("chaos_mr", {1: "liver", 2: "kidney_right", 3: "kidney_left", 4: "spleen"}, 4),
    "chaos_ct": ("chaos_ct", {1: "liver"}, 1),
    "ct_org": ("ct_org", {1: "liver", 3: "lung", 4: "kidney"}, 6),
    "abdomenct1k": ("abdomenct1k", {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}, 4),
    "pancreas_ct": ("pancreas_ct", {1: "pancreas"}, 1),
    "la": ("la", {1: "left_atrium"}, 1),
    "brats2019": (
        "brats2019",
        {1: "necrotic_tumor_core", 2: "peritumoral_edema", 3: "enhancing_tumor"},
        3,
    ),
}


def _expected_split(layout: str, record: dict) -> str:
    """Where the reader must put a case the phantom manifest records (split as written).

    The manifest uses the writer's vocabulary; the reader follows the real layout:
    TotalSegmentator's meta.csv says train/val; AMOS and WORD imagesTs hold official test
    images; CT-ORG volumes 0-20 are the data set's test set (the phantoms are numbered from
    0); the LA release keeps labels in every h5 file, so train.list cases are all labeled.
    """
    split = {"train": "training", "val": "validation"}.get(record["split"], record["split"])
    if layout == "ct_org" and record["labeled"]:
        return "test"
    if layout == "la" and split == "unlabeled":
        return "training"
    if layout in ("amos", "amos_mr", "word") and not record["labeled"]:
        return "unlabeled_test"
    return split


def test_every_phantom_layout_has_a_round_trip_test():
    assert set(EXPECTED) == set(LAYOUTS)
    assert PHANTOM_MANIFEST == MANIFEST_NAME


@pytest.mark.parametrize("layout", sorted(EXPECTED))
def test_phantoms_read_back(layout, tmp_path):
    dataset, spot_checks, n_classes = EXPECTED[layout]
    root = tmp_path / layout
    unlabeled = UNLABELED if LAYOUTS[layout].holds_unlabeled else 0
    phantoms = [
        "phantoms",
        str(root),
        "--layout",
        layout,
        "--cases",
        str(CASES),
        "--unlabeled",
        str(unlabeled),
    ]
    assert main([*phantoms, "--size", str(SIZE), "--site", "1", "--seed", "7", "--quiet"]) == 0
    out = tmp_path / "list.json"
    assert (
        main(["datalist", layout, str(root), "--out", str(out), "--validate", "--workers", "1"])
        == 0
    )
    datalist = json.loads(out.read_text())
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    where = {os.path.normpath(root / e["image"]): k for k in SPLIT_KEYS for e in datalist[k]}
    assert len(where) == len(manifest["records"]) == CASES + unlabeled
    for record in manifest["records"]:
        assert where[os.path.normpath(root / record["image"])] == _expected_split(layout, record), (
            record["case_id"]
        )
    assert datalist["datasets"] == [dataset]

    labeled = [e for k in ("training", "validation", "test") for e in datalist[k]]
    for entry in labeled:
        assert entry["dataset"] == dataset
        classes = entry["labeled_classes"]
        assert len(classes) == n_classes
        assert {i: classes[i - 1] for i in spot_checks} == spot_checks
        assert classes == list(get_dataset(dataset).classes)
        if "masks" in entry:
            assert list(entry["masks"]) == classes
        assert entry["site"] == "site1"  # from the phantom manifest
    for entry in datalist["unlabeled"] + datalist["unlabeled_test"]:
        assert entry["labeled_classes"] == [] and "label" not in entry and "masks" not in entry

    # every image the phantom writer recorded is in the datalist once, with its metadata
    resolved = [e for k in SPLIT_KEYS for e in load_split(out, k, base_dir=root)]
    by_image = {e["image"]: e for e in resolved}
    assert len(by_image) == len(resolved) == CASES + unlabeled
    for record in manifest["records"]:
        entry = by_image[os.path.normpath(root / record["image"])]
        assert (entry["sex"], entry["age"]) == (record["sex"], record["age"])
    for entry in resolved:
        paths = [entry["image"], entry.get("label"), *(entry.get("masks") or {}).values()]
        assert all(Path(p).exists() for p in paths if p)


def test_both_commands_in_subprocesses_and_a_random_split(tmp_path):
    root = tmp_path / "kits"
    medsegzoo = [sys.executable, "-m", "medsegzoo"]
    phantoms = [
        *medsegzoo,
        "phantoms",
        str(root),
        "--layout",
        "kits19",
        "--cases",
        "6",
        "--size",
        str(SIZE),
        "--quiet",
    ]
    done = subprocess.run(phantoms, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "kits.json"
    datalist_cmd = [
        *medsegzoo,
        "datalist",
        "kits19",
        str(root),
        "--out",
        str(out),
        "--split",
        "0.5/0.17/0.33",
        "--seed",
        "2",
    ]
    done = subprocess.run(datalist_cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "cases: training 3, validation 1, test 2" in done.stdout
    datalist = json.loads(out.read_text())
    assert {e["case_id"] for k in ("training", "validation", "test") for e in datalist[k]} == {
        f"case_{i:05d}" for i in range(6)
    }
    validate_datalist(out, root)


def test_a_case_with_a_missing_mask_file_is_named_in_the_summary(tmp_path, capsys):
    root = tmp_path / "atlas"
    assert (
        main(
            [
                "phantoms",
                str(root),
                "--layout",
                "abdomenatlas",
                "--cases",
                "2",
                "--size",
                "24",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "atlas.json"
    assert main(["datalist", "abdomenatlas", str(root), "--out", str(out)]) == 0
    assert "note:" not in capsys.readouterr().out  # a complete download: no note
    case = sorted(p for p in root.iterdir() if p.is_dir())[1]
    (case / "segmentations" / "postcava.nii.gz").unlink()
    assert main(["datalist", "abdomenatlas", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: 1 case(s) have fewer mask files than their data set defines" in printed
    assert f"{case.name} lacks postcava" in printed
    entry = next(e for e in json.loads(out.read_text())["training"] if e["case_id"] == case.name)
    assert "postcava" not in entry["labeled_classes"] and len(entry["labeled_classes"]) == 8


@pytest.mark.parametrize("layout", ["btcv", "amos", "word", "flare22", "chaos_mr"])
def test_native_values_sit_where_their_organs_are(layout, tmp_path):
    """Each native value read back marks the right organ: the liver lies on the patient's right of
    the spleen, the right kidney on the right of the left one (world RAS x, whatever the
    orientation the site stores), and the liver is larger than the pancreas/kidney.

    A label table wrong in both the writer and the reader would pass the class-name checks
    above; it cannot put the left kidney on the patient's right.
    """
    from medsegzoo.data.formats import read_volume

    root = tmp_path / layout
    assert (
        main(
            [
                "phantoms",
                str(root),
                "--layout",
                layout,
                "--cases",
                "1",
                "--size",
                "40",
                "--site",
                "1",
                "--seed",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "list.json"
    assert main(["datalist", layout, str(root), "--out", str(out)]) == 0
    entry = load_split(out, "training", base_dir=root)[0]
    spec = get_dataset(entry["dataset"])
    volume = read_volume(entry["label"], field="label", reference=entry["image"])
    label, affine = np.asarray(volume.array), volume.affine
    label = label.squeeze()

    def world_x(name: str) -> float:
        voxels = np.argwhere(label == spec.index_of(name))
        assert len(voxels), f"{layout}: no voxel of {name} (value {spec.index_of(name)})"
        return float((affine[:3, :3] @ voxels.mean(axis=0) + affine[:3, 3])[0])

    def size(name: str) -> int:
        return int((label == spec.index_of(name)).sum())

    assert world_x("liver") > world_x("spleen")  # RAS: +x is the patient's right
    assert world_x("kidney_right") > world_x("kidney_left")
    assert size("liver") > size("kidney_left")
    if "pancreas" in spec.classes:
        assert size("liver") > size("pancreas")


# layouts whose labeled part holds only labeled cases: an image there without its label lost it
FULLY_LABELED = ("abdomenatlas", "amos", "brats2019", "btcv", "chaos_ct", "flare22", "kits19", "lits", "msd_spleen", "word")


@pytest.mark.parametrize("layout", FULLY_LABELED)
def test_a_deleted_label_is_an_error_naming_the_case_or_a_listed_warning(layout, tmp_path, capsys):
    import shutil

    root = tmp_path / layout
    assert main(["phantoms", str(root), "--layout", layout, "--cases", "2", "--size", "16", "--quiet"]) == 0
    record = json.loads((root / MANIFEST_NAME).read_text())["records"][0]
    label = root / (record.get("label") or record["masks"])
    shutil.rmtree(label) if label.is_dir() else label.unlink()
    out = tmp_path / "list.json"
    capsys.readouterr()
    assert main(["datalist", layout, str(root), "--out", str(out), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"case {record['case_id']} has no label (expected {label})" in err, err
    assert "--allow-unlabeled" in err and not out.exists()

    assert main(["datalist", layout, str(root), "--out", str(out), "--workers", "1", "--allow-unlabeled"]) == 0
    assert f"have no label and are listed as unlabeled (--allow-unlabeled): {record['case_id']}" in capsys.readouterr().err
    datalist = json.loads(out.read_text())
    assert datalist["missing_labels"] == [record["case_id"]]
    labeled = {e["case_id"] for k in ("training", "validation", "test") for e in datalist[k]}
    unlabeled = {e["case_id"] for k in ("unlabeled", "unlabeled_test") for e in datalist[k]}
    assert record["case_id"] in unlabeled and record["case_id"] not in labeled


def test_datalist_out_below_a_file_fails_before_scanning(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub.json"
    # the data set folder does not even exist: the --out problem is reported first
    assert main(["datalist", "btcv", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"medsegzoo datalist: error: {out}: cannot create the file: {tmp_path / 'afile'} is a file, not a folder\n"
