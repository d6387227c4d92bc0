"""Phantom layout writers and the ``medsegzoo phantoms`` command: file trees as distributed,
native label values (only the classes each data set labels), read back by the readers."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from medsegzoo.cli import main
from medsegzoo.data.formats import read_volume
from medsegzoo.data.phantoms import layouts
from medsegzoo.data.phantoms.layouts import LAYOUTS, list_phantom_layouts, write_phantom_dataset
from medsegzoo.data.readers import build_datalist
from medsegzoo.errors import MedSegZooError, UnknownNameError
from medsegzoo.taxonomy import get_dataset

SIZE = 20
# layout -> (top folder relative to OUT, files that must exist relative to OUT for cases=2, unlabeled=1)
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "msd_spleen": (
        "Task09_Spleen",
        [
            "Task09_Spleen/dataset.json",
            "Task09_Spleen/imagesTr/spleen_1.nii.gz",
            "Task09_Spleen/labelsTr/spleen_2.nii.gz",
            "Task09_Spleen/imagesTs/spleen_3.nii.gz",
        ],
    ),
    "msd_liver": (
        "Task03_Liver",
        ["Task03_Liver/imagesTr/liver_0.nii.gz", "Task03_Liver/labelsTr/liver_1.nii.gz"],
    ),
    "msd_pancreas": (
        "Task07_Pancreas",
        [
            "Task07_Pancreas/labelsTr/pancreas_001.nii.gz",
            "Task07_Pancreas/imagesTs/pancreas_003.nii.gz",
        ],
    ),
    "msd_lung": ("Task06_Lung", ["Task06_Lung/labelsTr/lung_002.nii.gz"]),
    "msd_hepatic_vessel": (
        "Task08_HepaticVessel",
        ["Task08_HepaticVessel/labelsTr/hepaticvessel_001.nii.gz"],
    ),
    "msd_colon": ("Task10_Colon", ["Task10_Colon/labelsTr/colon_001.nii.gz"]),
    "btcv": (
        "",
        [
            "RawData/Training/img/img0001.nii.gz",
            "RawData/Training/label/label0002.nii.gz",
            "RawData/Testing/img/img0061.nii.gz",
        ],
    ),
    "amos": (
        "amos22",
        [
            "amos22/dataset.json",
            "amos22/labelsTr/amos_0001.nii.gz",
            "amos22/labelsTr/amos_0002.nii.gz",
            "amos22/imagesTs/amos_0003.nii.gz",
            "labeled_data_meta_0000_0599.csv",
        ],
    ),
    "amos_mr": ("amos22", ["amos22/imagesTr/amos_0500.nii.gz", "amos22/labelsTr/amos_0501.nii.gz"]),
    "word": (
        "WORD-V0.1.0",
        [
            "WORD-V0.1.0/imagesTr/word_0001.nii.gz",
            "WORD-V0.1.0/labelsTr/word_0002.nii.gz",
            "WORD-V0.1.0/imagesTs/word_0003.nii.gz",
        ],
    ),
    "flare22": (
        "",
        [
            "Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz",
            "Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0002.nii.gz",
            "Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz",
        ],
    ),
    "totalsegmentator": (
        "",
        [
            "meta.csv",
            "s0000/ct.nii.gz",
            "s0001/segmentations/inferior_vena_cava.nii.gz",
            "s0001/segmentations/vertebrae_L3.nii.gz",
            "s0002/ct.nii.gz",
        ],
    ),
    "abdomenatlas": (
        "",
        [
            "BDMAP_00000001/ct.nii.gz",
            "BDMAP_00000002/segmentations/gall_bladder.nii.gz",
            "BDMAP_00000002/segmentations/postcava.nii.gz",
        ],
    ),
    "abdomenatlas1_1": (
        "",
        [
            "BDMAP_00000001/segmentations/femur_left.nii.gz",
            "BDMAP_00000001/segmentations/celiac_trunk.nii.gz",
        ],
    ),
    "kits19": (
        "data",
        [
            "data/kits.json",
            "data/case_00000/imaging.nii.gz",
            "data/case_00001/segmentation.nii.gz",
            "data/case_00210/imaging.nii.gz",
        ],
    ),
    "lits": (
        "",
        [
            "Training Batch 1/volume-0.nii",
            "Training Batch 1/segmentation-1.nii",
            "LITS-Challenge-Test-Data/test-volume-0.nii",
        ],
    ),
    "chaos_mr": (
        "",
        [
            "CHAOS_Train_Sets/Train_Sets/MR/1/T2SPIR/DICOM_anon/IMG-0002-00001.dcm",
            "CHAOS_Train_Sets/Train_Sets/MR/2/T2SPIR/Ground/IMG-0002-00001.png",
            "CHAOS_Test_Sets/Test_Sets/MR/3/T2SPIR/DICOM_anon/IMG-0002-00001.dcm",
        ],
    ),
    "chaos_ct": (
        "",
        [
            "CHAOS_Train_Sets/Train_Sets/CT/1/DICOM_anon/i0000,0000b.dcm",
            "CHAOS_Train_Sets/Train_Sets/CT/2/Ground/liver_GT_000.png",
        ],
    ),
    "ct_org": (
        "OrganSegmentations",
        [
            "OrganSegmentations/volume-0.nii.gz",
            "OrganSegmentations/labels-1.nii.gz",
            "OrganSegmentations/volume-2.nii.gz",
        ],
    ),
    "abdomenct1k": (
        "",
        [
            "AbdomenCT-1K-ImagePart1/Case_00001_0000.nii.gz",
            "Mask/Case_00002.nii.gz",
            "AbdomenCT-1K-ImagePart1/Case_00003_0000.nii.gz",
        ],
    ),
    "pancreas_ct": (
        "",
        [
            "TCIA_pancreas_labels-02-05-2017/label0001.nii.gz",
            "TCIA_pancreas_labels-02-05-2017/label0002.nii.gz",
        ],
    ),
    "la": ("", ["train.list", "test.list"]),
    "brats2019": (
        "",
        ["MICCAI_BraTS_2019_Data_Validation/BraTS19_2013_102_1/BraTS19_2013_102_1_flair.nii.gz"],
    ),
}
# files that must NOT exist (labels withheld where the layout withholds them)
ABSENT: dict[str, list[str]] = {
    "msd_spleen": ["Task09_Spleen/labelsTr/spleen_3.nii.gz"],
    "btcv": ["RawData/Testing/label/label0061.nii.gz"],
    "kits19": ["data/case_00210/segmentation.nii.gz"],
    "pancreas_ct": ["TCIA_pancreas_labels-02-05-2017/label0003.nii.gz"],
    "flare22": ["Training/FLARE22_LabeledCase50/labels/Case_00001.nii.gz"],
}


def _label_values(root: Path, entry: dict) -> set[int]:
    """Native values of one datalist entry: its label map, or its masks as values."""
    if "label" in entry:
        image = root / entry["image"]
        volume = read_volume(root / entry["label"], field="label", reference=image)
        return {int(v) for v in np.unique(volume.array)}
    spec = get_dataset(entry["dataset"])
    values = {0}
    for cls, path in entry["masks"].items():
        mask = np.asarray(nib.load(str(root / path)).dataobj)
        assert set(np.unique(mask)) <= {0, 1}
        if mask.any():
            values.add(spec.index_of(cls))
    return values


def test_every_layout_has_an_expectation() -> None:
    assert set(EXPECTED) == set(LAYOUTS)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_tree_native_values_and_read_back(tmp_path: Path, layout: str) -> None:
    spec = LAYOUTS[layout]
    unlabeled = 1 if spec.holds_unlabeled else 0
    out = tmp_path / layout
    root = write_phantom_dataset(
        out, layout, cases=2, size=SIZE, site=0, seed=1, unlabeled=unlabeled
    )
    top, files = EXPECTED[layout]
    assert root == out / top
    missing = [f for f in files if not (out / f).is_file()]
    assert not missing, missing
    assert not [f for f in ABSENT.get(layout, []) if (out / f).exists()]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary folder gone

    dataset = get_dataset(spec.dataset)
    datalist = build_datalist(layout, out)
    labeled = [e for key in ("training", "validation", "test") for e in datalist[key]]
    assert len(labeled) == 2 or layout == "la"
    allowed = {0, *dataset.labels, *dataset.value_aliases}  # CHAOS CT stores the liver as 255
    seen: set[int] = set()
    for entry in labeled:
        assert entry["dataset"] == dataset.name
        values = _label_values(out, entry)
        assert values <= allowed, (entry["case_id"], values - allowed)
        seen |= values
    # the data set's classes the phantom draws are really there (not only background)
    assert len(seen) >= min(3, 1 + len(dataset.labels)), seen
    manifest = json.loads((out / layouts.MANIFEST_NAME).read_text())
    assert manifest["layout"] == layout and len(manifest["records"]) == 2 + unlabeled
    assert {"site", "modality", "manufacturer", "age", "sex", "has_tumor"} <= set(
        manifest["records"][0]
    )


@pytest.mark.parametrize(
    ("layout", "values"),
    [
        ("msd_spleen", {0, 1}),
        ("kits19", {0, 1, 2}),
        ("chaos_mr", {0, 63, 126, 189, 252}),
        ("chaos_ct", {0, 255}),
        ("pancreas_ct", {0, 1}),
        ("la", {0, 1}),
        ("msd_pancreas", {0, 1, 2}),
    ],
)
def test_partially_labeled_sets_hold_only_their_classes(
    tmp_path: Path, layout: str, values: set[int]
) -> None:
    write_phantom_dataset(tmp_path / "d", layout, cases=1, size=SIZE, site=0, seed=2)
    entry = build_datalist(layout, tmp_path / "d")["training"][0]
    if layout == "la":
        with h5py.File(tmp_path / "d" / entry["label"], "r") as handle:
            found = {int(v) for v in np.unique(handle["label"][()])}
            assert handle["image"].dtype == np.float32
    else:
        found = _label_values(tmp_path / "d", entry)
    assert found == values


def test_kits19_is_stored_slices_first_and_splits_left_right(tmp_path: Path) -> None:
    from medsegzoo.taxonomy import convert_label_map

    write_phantom_dataset(tmp_path / "k", "kits19", cases=1, size=SIZE, site=2, seed=0)
    image = nib.load(str(tmp_path / "k/data/case_00000/imaging.nii.gz"))
    label = nib.load(str(tmp_path / "k/data/case_00000/segmentation.nii.gz"))
    assert nib.aff2axcodes(image.affine) == ("I", "P", "L")
    np.testing.assert_allclose(image.affine[:3, 3], 0.0)
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
    tct = convert_label_map(np.asarray(label.dataobj), "kits19", "tct5", affine=label.affine)
    ras = nib.as_closest_canonical(nib.Nifti1Image(tct, label.affine)).get_fdata()
    left_x = np.argwhere(ras == 1)[:, 0].mean()  # tct5: 1 = kidney_left, 2 = kidney_right
    right_x = np.argwhere(ras == 2)[:, 0].mean()
    assert left_x < right_x  # RAS: the patient's left at smaller axis-0 indices


def test_site_orientation_is_written_and_geometry_kept(tmp_path: Path) -> None:
    for site in (0, 1, 4):
        write_phantom_dataset(tmp_path / f"s{site}", "btcv", cases=1, size=SIZE, site=site, seed=3)
        image = nib.load(str(tmp_path / f"s{site}/RawData/Training/img/img0001.nii.gz"))
        assert "".join(nib.aff2axcodes(image.affine)) == layouts.get_site(site).orientation
    a = nib.as_closest_canonical(
        nib.load(str(tmp_path / "s0/RawData/Training/label/label0001.nii.gz"))
    )
    b = nib.as_closest_canonical(
        nib.load(str(tmp_path / "s1/RawData/Training/label/label0001.nii.gz"))
    )
    assert a.shape != b.shape  # other spacing, other grid
    assert np.allclose(np.diag(b.affine)[:3], layouts.get_site(1).spacing)


def test_refuses_non_empty_out_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(MedSegZooError, match="not empty"):
        write_phantom_dataset(out, "msd_spleen", cases=1, size=16)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_phantom_dataset(out, "msd_spleen", cases=1, size=16, overwrite=True)
    assert {p.name for p in out.iterdir()} == {layouts.MANIFEST_NAME, "Task09_Spleen"}
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_failure_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(ctx):  # writes one file, then fails
        (ctx.out / "partial.nii.gz").write_bytes(b"x")
        calls.append(ctx.out)
        raise RuntimeError("disk full")

    monkeypatch.setitem(LAYOUTS, "btcv", layouts.LayoutSpec("btcv", "btcv", broken))
    with pytest.raises(RuntimeError, match="disk full"):
        write_phantom_dataset(tmp_path / "d", "btcv", cases=1, size=16)
    assert calls and not calls[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="known layouts"):
        write_phantom_dataset(tmp_path / "a", "btcv2", cases=1)
    with pytest.raises(MedSegZooError, match="unlabeled"):
        write_phantom_dataset(tmp_path / "a", "abdomenatlas", cases=1, unlabeled=2)
    with pytest.raises(MedSegZooError, match="labeled case"):
        write_phantom_dataset(tmp_path / "a", "btcv", cases=0)
    assert not (tmp_path / "a").exists()
    assert "chaos" in list_phantom_layouts() and "msd" in list_phantom_layouts()


def test_same_seed_same_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_phantom_dataset(tmp_path / name, "chaos_ct", cases=1, size=16, site=1, seed=9)
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix in (".dcm", ".png"):
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_cli_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "la"
    code = main(
        [
            "phantoms",
            str(out),
            "--layout",
            "la",
            "--labeled",
            "5",
            "--unlabeled",
            "2",
            "--size",
            "16",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "wrote 7 la phantom case(s) (5 labeled)" in text and "generated in" in text
    train = (out / "train.list").read_text().split()
    test = (out / "test.list").read_text().split()
    assert (
        len(train) == 6 and len(test) == 1
    )  # 80/20 of the labeled cases, unlabeled appended to train
    manifest = json.loads((out / layouts.MANIFEST_NAME).read_text())
    labeled_ids = [
        r["case_id"] for r in manifest["records"] if r["labeled"] and r["split"] == "training"
    ]
    assert train[: len(labeled_ids)] == labeled_ids  # labeled cases first
    assert main(["phantoms", str(out), "--layout", "la"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            [
                "phantoms",
                str(tmp_path / "x"),
                "--layout",
                "kits19",
                "--cases",
                "1",
                "--no-tumors",
                "--size",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "x" / "data")
    label = nib.load(str(tmp_path / "x/data/case_00000/segmentation.nii.gz"))
    assert set(np.unique(np.asarray(label.dataobj))) == {0, 1}  # no tumour drawn
