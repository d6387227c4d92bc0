"""Readers against hand-built folder trees in each public layout as distributed.

The trees follow the real downloads (file names, folders, split and metadata files), with
6x6x5 volumes; the phantom round trip is in test_data_readers_phantoms.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_test_utils import SHAPE, label_map, write_nifti, write_pair
from medsegzoo.cli import main
from medsegzoo.data.readers import build_datalist, get_reader, list_layouts, write_datalist
from medsegzoo.data.validation import validate_datalist
from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError


def _entries(datalist, key):
    return {e["case_id"]: e for e in datalist[key]}


def _counts(datalist):
    return {
        k: len(datalist[k])
        for k in ("training", "validation", "test", "unlabeled", "unlabeled_test")
    }


def _msd(root: Path, task="Task07_Pancreas", name="Pancreas", labels=None, n=3):
    labels = labels or {"0": "background", "1": "pancreas", "2": "cancer"}
    folder = root / task
    for i in range(n):
        write_pair(
            folder / "imagesTr" / f"pancreas_{i:03d}.nii.gz",
            folder / "labelsTr" / f"pancreas_{i:03d}.nii.gz",
            (1, 2),
        )
    write_nifti(folder / "imagesTs" / "pancreas_100.nii.gz")
    (folder / "imagesTr" / "._pancreas_000.nii.gz").write_bytes(b"\x00" * 200)  # AppleDouble junk
    training = [
        {
            "image": f"./imagesTr/pancreas_{i:03d}.nii.gz",
            "label": f"./labelsTr/pancreas_{i:03d}.nii.gz",
        }
        for i in range(n)
    ]
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "name": name,
                "labels": labels,
                "training": training,
                "test": ["./imagesTs/pancreas_100.nii.gz"],
            }
        )
    )
    return folder


def test_msd(tmp_path):
    _msd(tmp_path)
    datalist = build_datalist("msd", tmp_path)
    assert datalist["label_system"] == "msd_pancreas" and datalist["layout"] == "msd"
    assert _counts(datalist) == {
        "training": 3,
        "validation": 0,
        "test": 0,
        "unlabeled": 0,
        "unlabeled_test": 1,
    }
    entry = _entries(datalist, "training")["pancreas_001"]
    assert entry["image"] == "Task07_Pancreas/imagesTr/pancreas_001.nii.gz"
    assert entry["label"] == "Task07_Pancreas/labelsTr/pancreas_001.nii.gz"
    assert entry["labeled_classes"] == ["pancreas", "pancreas_tumor"]
    assert entry["modality"] == "CT"
    assert datalist["unlabeled_test"][0]["labeled_classes"] == []
    validate_datalist(datalist, tmp_path)


def test_msd_errors(tmp_path):
    _msd(tmp_path, labels={"0": "background", "1": "pancreas"})
    with pytest.raises(
        LayoutError, match=r"dataset.json: lists 1 foreground labels .* msd_pancreas has 2"
    ):
        build_datalist("msd", tmp_path)
    _msd(tmp_path)
    with pytest.raises(LayoutError, match="no msd_spleen case"):
        build_datalist("msd_spleen", tmp_path)
    (tmp_path / "Task07_Pancreas" / "labelsTr" / "pancreas_002.nii.gz").unlink()
    with pytest.raises(
        DataValidationError, match=r"case pancreas_002 has no label \(expected .*labelsTr/pancreas_002.nii.gz\)"
    ):
        build_datalist("msd_pancreas", tmp_path)


def test_btcv_synapse_and_monai_forms(tmp_path):
    raw = tmp_path / "Abdomen" / "RawData"
    for i in (1, 2):
        write_pair(
            raw / "Training" / "img" / f"img{i:04d}.nii.gz",
            raw / "Training" / "label" / f"label{i:04d}.nii.gz",
            (1, 13),
        )
    write_nifti(raw / "Testing" / "img" / "img0061.nii.gz")
    datalist = build_datalist("btcv", tmp_path)
    assert sorted(_entries(datalist, "training")) == ["btcv_0001", "btcv_0002"]
    assert datalist["unlabeled_test"][0]["case_id"] == "btcv_0061"
    assert len(_entries(datalist, "training")["btcv_0001"]["labeled_classes"]) == 13

    monai = tmp_path / "monai"
    for i in (1, 2, 3):
        write_pair(
            monai / "imagesTr" / f"img{i:04d}.nii.gz", monai / "labelsTr" / f"label{i:04d}.nii.gz"
        )
    split = {
        "training": [{"image": "imagesTr/img0001.nii.gz", "label": "labelsTr/label0001.nii.gz"}],
        "validation": [{"image": "imagesTr/img0003.nii.gz", "label": "labelsTr/label0003.nii.gz"}],
    }
    (monai / "dataset_0.json").write_text(json.dumps(split))
    datalist = build_datalist("btcv", monai)
    assert sorted(_entries(datalist, "training")) == ["btcv_0001", "btcv_0002"]
    assert sorted(_entries(datalist, "validation")) == ["btcv_0003"]


def test_amos_splits_modalities_and_metadata(tmp_path):
    amos = tmp_path / "amos22"
    write_pair(
        amos / "imagesTr" / "amos_0001.nii.gz", amos / "labelsTr" / "amos_0001.nii.gz", (1, 15)
    )
    write_pair(amos / "imagesTr" / "amos_0507.nii.gz", amos / "labelsTr" / "amos_0507.nii.gz", (6,))
    write_pair(amos / "imagesVa" / "amos_0008.nii.gz", amos / "labelsVa" / "amos_0008.nii.gz")
    write_nifti(amos / "imagesTs" / "amos_0600.nii.gz")
    (amos / "dataset.json").write_text(json.dumps({"name": "AMOS", "training": []}))
    (tmp_path / "labeled_data_meta_0000_0599.csv").write_text(
        "amos_id,Patient's Sex,Patient's Age,Manufacturer,Manufacturer's Model Name,Site\n"
        "1,F,046Y,SIEMENS,SOMATOM Force,Site A\n507,M,061Y,Philips,Ingenia,Site B\n"
    )
    datalist = build_datalist("amos", tmp_path)
    assert datalist["label_system"] == "amos"  # CT and MR share one map
    training = _entries(datalist, "training")
    assert training["amos_0001"]["dataset"] == "amos" and training["amos_0001"]["modality"] == "CT"
    assert (
        training["amos_0507"]["dataset"] == "amos_mr" and training["amos_0507"]["modality"] == "MR"
    )
    assert {
        k: training["amos_0001"][k] for k in ("sex", "age", "manufacturer", "scanner", "site")
    } == {
        "sex": "F",
        "age": 46,
        "manufacturer": "SIEMENS",
        "scanner": "SOMATOM Force",
        "site": "Site A",
    }
    assert list(_entries(datalist, "validation")) == ["amos_0008"]
    assert list(_entries(datalist, "unlabeled_test")) == ["amos_0600"]
    mr_only = build_datalist("amos_mr", tmp_path / "amos22")
    assert [e["case_id"] for e in mr_only["training"]] == ["amos_0507"] and mr_only[
        "label_system"
    ] == "amos_mr"


def test_word(tmp_path):
    word = tmp_path / "WORD-V0.1.0"
    write_pair(
        word / "imagesTr" / "word_0002.nii.gz", word / "labelsTr" / "word_0002.nii.gz", (5, 16)
    )
    write_pair(word / "imagesVal" / "word_0001.nii.gz", word / "labelsVal" / "word_0001.nii.gz")
    write_nifti(word / "imagesTs" / "word_0010.nii.gz")
    datalist = build_datalist("word", tmp_path)
    assert _counts(datalist) == {
        "training": 1,
        "validation": 1,
        "test": 0,
        "unlabeled": 0,
        "unlabeled_test": 1,
    }
    assert datalist["training"][0]["labeled_classes"][4] == "stomach"  # WORD 5 = stomach
    (word / "labelsTr" / "word_0003.nii.gz").write_bytes(b"")
    with pytest.raises(
        LayoutError, match=r"labelsTr: label files without a matching image .*: word_0003.nii.gz"
    ):
        build_datalist("word", tmp_path)


def test_flare22_labeled_unlabeled_and_validation(tmp_path):
    labeled = tmp_path / "Training" / "FLARE22_LabeledCase50"
    for i in (1, 2):
        write_pair(
            labeled / "images" / f"FLARE22_Tr_{i:04d}_0000.nii.gz",
            labeled / "labels" / f"FLARE22_Tr_{i:04d}.nii.gz",
            (13,),
        )
    write_nifti(tmp_path / "Training" / "FLARE22_UnlabeledCase1-1000" / "Case_00001_0000.nii.gz")
    write_nifti(tmp_path / "Validation" / "FLARETs_0001_0000.nii.gz")
    datalist = build_datalist("flare22", tmp_path)
    assert sorted(_entries(datalist, "training")) == ["FLARE22_Tr_0001", "FLARE22_Tr_0002"]
    assert list(_entries(datalist, "unlabeled")) == ["flare22_Case_00001"]
    assert list(_entries(datalist, "unlabeled_test")) == ["FLARETs_0001"]
    assert (
        datalist["training"][0]["labeled_classes"][-1] == "kidney_left"
    )  # FLARE22 13 = left kidney


def _totalseg_case(root: Path, case: str, stems: tuple[str, ...]):
    write_nifti(root / case / "ct.nii.gz")
    for stem in stems:
        write_nifti(root / case / "segmentations" / f"{stem}.nii.gz", label_map((1,)))


def test_totalsegmentator_masks_metadata_and_official_split(tmp_path):
    root = tmp_path / "Totalsegmentator_dataset_v201"
    for case in ("s0001", "s0002", "s0003"):
        _totalseg_case(root, case, ("liver", "inferior_vena_cava", "kidney_cyst_left"))
    (root / "meta.csv").write_text(
        "\ufeffimage_id;age;gender;institute;study_type;split;manufacturer;scanner_model;kvp;pathology;pathology_location\n"
        "s0001;64;f;A;ct abdomen;train;siemens;SOMATOM;120;tumor;liver\n"
        "s0002;33;m;B;ct thorax;val;ge;Revolution;100;;\n"
        "s0003;;m;C;ct;test;philips;iCT;120;;\n",
        encoding="utf-8",
    )
    datalist = build_datalist("totalsegmentator", tmp_path)
    assert datalist["label_system"] == "totalsegmentator"
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [1, 1, 1]
    entry = datalist["training"][0]
    # native (official v2) order, canonical names, one mask file per class
    assert entry["labeled_classes"] == ["liver", "kidney_cyst_left", "postcava"]
    assert (
        entry["masks"]["postcava"]
        == "Totalsegmentator_dataset_v201/s0001/segmentations/inferior_vena_cava.nii.gz"
    )
    assert "label" not in entry
    assert (entry["age"], entry["sex"], entry["site"], entry["manufacturer"], entry["scanner"]) == (
        64,
        "F",
        "A",
        "siemens",
        "SOMATOM",
    )
    assert "age" not in datalist["test"][0]
    validate_datalist(datalist, tmp_path)


def test_totalsegmentator_v1_names_and_unknown_masks(tmp_path):
    _totalseg_case(tmp_path, "s0001", ("liver", "heart_myocardium"))  # heart_myocardium: v1 only
    assert build_datalist("totalsegmentator", tmp_path)["label_system"] == "totalsegmentator_stunet"
    _totalseg_case(tmp_path, "s0002", ("left_big_toe",))
    with pytest.raises(
        LayoutError, match=r"mask files \['left_big_toe'\] are not classes of totalsegmentator"
    ):
        build_datalist("totalsegmentator", tmp_path)


def test_abdomenatlas(tmp_path):
    for case in ("BDMAP_00000001", "BDMAP_00000002"):
        _totalseg_case(
            tmp_path / "AbdomenAtlas1.0Mini", case, ("gall_bladder", "postcava", "liver")
        )
    write_nifti(
        tmp_path / "AbdomenAtlas1.0Mini" / "BDMAP_00000001" / "combined_labels.nii.gz",
        label_map((2,)),
    )
    datalist = build_datalist("abdomenatlas", tmp_path)
    assert datalist["label_system"] == "abdomenatlas"
    entry = datalist["training"][0]
    assert entry["case_id"] == "BDMAP_00000001"
    assert sorted(entry["masks"]) == ["gallbladder", "liver", "postcava"]
    assert entry["masks"]["gallbladder"].endswith("segmentations/gall_bladder.nii.gz")
    _totalseg_case(tmp_path / "AbdomenAtlas1.0Mini", "BDMAP_00000003", ("colon",))
    assert build_datalist("abdomenatlas", tmp_path)["label_system"] == "abdomenatlas1_1"


def test_kits19_with_clinical_table(tmp_path):
    data = tmp_path / "kits19" / "data"
    write_pair(
        data / "case_00000" / "imaging.nii.gz", data / "case_00000" / "segmentation.nii.gz", (1, 2)
    )
    write_nifti(data / "case_00210" / "imaging.nii.gz")
    (data / "kits.json").write_text(
        json.dumps([{"case_id": "case_00000", "age_at_nephrectomy": 49, "gender": "male"}])
    )
    datalist = build_datalist("kits19", tmp_path / "kits19")
    entry = datalist["training"][0]
    assert (entry["case_id"], entry["labeled_classes"], entry["age"], entry["sex"]) == (
        "case_00000",
        ["kidney", "kidney_tumor"],
        49,
        "M",
    )
    assert entry["image"] == "data/case_00000/imaging.nii.gz"
    assert list(_entries(datalist, "unlabeled_test")) == ["case_00210"]


def test_lits_and_ct_org_numbered_files(tmp_path):
    lits = tmp_path / "lits"
    write_nifti(lits / "Training Batch 1" / "volume-0.nii")
    write_nifti(lits / "Training Batch 1" / "segmentation-0.nii", label_map((1, 2)))
    write_pair(
        lits / "Training Batch 2" / "volume-28.nii",
        lits / "Training Batch 2" / "segmentation-28.nii",
    )
    write_nifti(lits / "LITS-Challenge-Test-Data" / "test-volume-3.nii")
    datalist = build_datalist("lits", lits)
    assert sorted(_entries(datalist, "training")) == ["lits_0", "lits_28"]
    assert list(_entries(datalist, "unlabeled_test")) == ["lits_test_3"]
    assert datalist["training"][0]["label"] == "Training Batch 1/segmentation-0.nii"

    org = tmp_path / "ct_org" / "OrganSegmentations"
    for n in (0, 20, 21):
        write_pair(org / f"volume-{n}.nii.gz", org / f"labels-{n}.nii.gz", (1, 6))
    datalist = build_datalist("ct_org", tmp_path / "ct_org")
    assert sorted(_entries(datalist, "test")) == [
        "ct_org_0",
        "ct_org_20",
    ]  # the data set's test cases 0-20
    assert list(_entries(datalist, "training")) == ["ct_org_21"]
    assert datalist["training"][0]["labeled_classes"] == [
        "liver",
        "bladder",
        "lung",
        "kidney",
        "bone",
        "brain",
    ]
    with pytest.raises(LayoutError, match="does not look like a LiTS download"):
        build_datalist("lits", tmp_path / "ct_org")


def test_abdomenct1k(tmp_path):
    write_nifti(tmp_path / "AbdomenCT-1K-ImagePart1" / "Case_00001_0000.nii.gz")
    write_nifti(tmp_path / "AbdomenCT-1K-ImagePart1" / "Case_00002_0000.nii.gz")
    write_nifti(tmp_path / "Mask" / "Case_00001.nii.gz", label_map((1, 2, 3, 4)))
    datalist = build_datalist("abdomenct1k", tmp_path)
    assert datalist["training"][0]["case_id"] == "abdomenct1k_00001"
    assert datalist["training"][0]["labeled_classes"] == ["liver", "kidney", "spleen", "pancreas"]
    assert list(_entries(datalist, "unlabeled")) == ["abdomenct1k_00002"]


def _la(tmp_path):
    data = tmp_path / "data"
    inner = data / "2018LA_Seg_Training Set"
    for name in ("0RZDK210BSMWAA6467LU", "1D7CUD1955YZPGK8XHJX", "23X6SY44VT9KFHR7S7OC"):
        (inner / name).mkdir(parents=True)
        with h5py.File(inner / name / "mri_norm2.h5", "w") as handle:
            handle["image"] = np.ones(SHAPE, np.float32)
            handle["label"] = label_map((1,))
    (data / "train.list").write_text("0RZDK210BSMWAA6467LU\n1D7CUD1955YZPGK8XHJX\n")
    (data / "test.list").write_text("23X6SY44VT9KFHR7S7OC\n")
    return data


def test_la_h5_and_official_lists(tmp_path):
    data = _la(tmp_path)
    for root in (data, data / "2018LA_Seg_Training Set"):  # the lists are found from either folder
        datalist = build_datalist("la", root)
        assert sorted(_entries(datalist, "training")) == [
            "0RZDK210BSMWAA6467LU",
            "1D7CUD1955YZPGK8XHJX",
        ]
        assert list(_entries(datalist, "test")) == ["23X6SY44VT9KFHR7S7OC"]
        entry = datalist["test"][0]
        assert entry["image"] == entry["label"] and entry["image"].endswith("mri_norm2.h5")
        assert (entry["labeled_classes"], entry["modality"], entry["spacing"]) == (
            ["left_atrium"],
            "MR",
            [0.625] * 3,
        )
        validate_datalist(datalist, root)


def test_brats2019(tmp_path):
    training = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    for grade, case in (("HGG", "BraTS19_2013_10_1"), ("LGG", "BraTS19_TCIA09_141_1")):
        folder = training / grade / case
        for modality in ("t1", "t1ce", "t2"):
            write_nifti(folder / f"{case}_{modality}.nii.gz")
        write_pair(folder / f"{case}_flair.nii.gz", folder / f"{case}_seg.nii.gz", (1, 2, 4))
    write_nifti(
        tmp_path
        / "MICCAI_BraTS_2019_Data_Validation"
        / "BraTS19_CBICA_AAM_1"
        / "BraTS19_CBICA_AAM_1_flair.nii.gz"
    )
    datalist = build_datalist("brats2019", tmp_path)
    entries = _entries(datalist, "training")
    assert (
        entries["BraTS19_2013_10_1"]["grade"] == "HGG"
        and entries["BraTS19_TCIA09_141_1"]["grade"] == "LGG"
    )
    assert entries["BraTS19_2013_10_1"]["image"].endswith("_flair.nii.gz")
    assert entries["BraTS19_2013_10_1"]["labeled_classes"] == [
        "necrotic_tumor_core",
        "peritumoral_edema",
        "enhancing_tumor",
    ]
    assert list(_entries(datalist, "unlabeled_test")) == ["BraTS19_CBICA_AAM_1"]
    validate_datalist(datalist, tmp_path)


def test_splits_random_fractions_and_files(tmp_path):
    _msd(tmp_path, n=10)
    official = build_datalist("msd", tmp_path)
    carved = build_datalist("msd", tmp_path, val_fraction=0.2, test_fraction=0.1, seed=1)
    assert _counts(official)["training"] == 10
    assert (len(carved["training"]), len(carved["validation"]), len(carved["test"])) == (7, 2, 1)
    assert carved == build_datalist("msd", tmp_path, val_fraction=0.2, test_fraction=0.1, seed=1)
    by_fractions = build_datalist("msd", tmp_path, split="0.6/0.2/0.2", seed=1)
    assert (
        len(by_fractions["training"]),
        len(by_fractions["validation"]),
        len(by_fractions["test"]),
    ) == (6, 2, 2)
    with pytest.raises(DataValidationError, match="must add up to 1"):
        build_datalist("msd", tmp_path, split="0.6/0.2/0.1")

    split_file = tmp_path / "split.json"
    split_file.write_text(
        json.dumps(
            {
                "train": ["pancreas_000", "pancreas_001"],
                "val": ["pancreas_002"],
                "unlabeled": ["pancreas_003"],
            }
        )
    )
    mapped = build_datalist("msd", tmp_path, split=split_file)
    assert [e["case_id"] for e in mapped["validation"]] == ["pancreas_002"]
    unlabeled = _entries(mapped, "unlabeled")["pancreas_003"]
    assert "label" not in unlabeled and unlabeled["labeled_classes"] == []
    assert mapped["excluded_cases"] == [f"pancreas_{i:03d}" for i in range(4, 10)]

    (tmp_path / "train.list").write_text("pancreas_000\npancreas_001\n")
    (tmp_path / "test.list").write_text("pancreas_009\n")
    listed = build_datalist(
        "msd", tmp_path, split=f"training={tmp_path / 'train.list'},test={tmp_path / 'test.list'}"
    )
    assert [e["case_id"] for e in listed["test"]] == ["pancreas_009"]
    (tmp_path / "test.list").write_text("pancreas_999\n")
    with pytest.raises(
        LayoutError, match="split names 1 case this folder does not hold: pancreas_999"
    ):
        build_datalist(
            "msd",
            tmp_path,
            split=f"training={tmp_path / 'train.list'},test={tmp_path / 'test.list'}",
        )


def test_unknown_layout_and_wrong_folders(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown layout 'btvc'; known layouts: msd, btcv"):
        get_reader("btvc")
    assert get_reader("chaos_mr")[1] == "chaos_mr" and get_reader("KiTS19")[0].name == "kits19"
    assert len(list_layouts()) == 15
    write_nifti(tmp_path / "a.nii.gz")
    (tmp_path / "b").mkdir()
    with pytest.raises(LayoutError) as info:
        build_datalist("kits19", tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: does not look like a KiTS19 download; expected data/case_XXXXX/imaging.nii.gz + "
        "data/case_XXXXX/segmentation.nii.gz; found: b/, a.nii.gz"
    )
    with pytest.raises(LayoutError, match="data set folder does not exist"):
        build_datalist("kits19", tmp_path / "nowhere")


def test_write_datalist_and_cli_summary(tmp_path, capsys):
    _msd(tmp_path)
    path = write_datalist(build_datalist("msd", tmp_path), tmp_path / "lists" / "msd.json")
    assert json.loads(path.read_text())["training"][0]["case_id"] == "pancreas_000"
    assert (
        main(
            [
                "datalist",
                "msd_pancreas",
                str(tmp_path),
                "--out",
                str(tmp_path / "cli.json"),
                "--validate",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cases: training 3, unlabeled_test 1" in out and "pancreas, pancreas_tumor" in out
    assert main(["datalist", "--list-layouts"]) == 0
    assert "totalsegmentator" in capsys.readouterr().out
    assert main(["datalist", "msd"]) == 2


def _chaos_series(
    folder: Path, png_folder: Path | None, *, reverse: bool, dicom_name, png_name, modality="MR"
):
    """A DICOM series whose slice k holds 10*k (+ a marker), and PNGs numbered like its files."""
    from medsegzoo.data.io import save_dicom_series
    from PIL import Image

    image = np.zeros((6, 4, 5), np.float32)  # (x, y, z): 6 columns, 4 rows, 5 slices
    label = np.zeros(image.shape, np.uint8)
    for k in range(image.shape[2]):
        image[:, :, k] = 10 * k + (1000 if modality == "CT" else 0)
        image[k, 1, k] += 5  # a marker that moves with the slice: x = k, y = 1
        label[k, 1, k] = 63 * (1 + k % 4)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # LP in-plane like axial DICOM
    save_dicom_series(
        folder, image, affine, modality=modality, file_name=dicom_name, reverse_names=reverse
    )
    if png_folder is not None:
        png_folder.mkdir(parents=True, exist_ok=True)
        n = image.shape[2]
        for k in range(n):
            Image.fromarray(np.ascontiguousarray(label[:, :, k].T)).save(
                png_folder / png_name(n - 1 - k if reverse else k)
            )
    return image, label


def test_chaos_dicom_series_with_png_ground_truth(tmp_path):
    from medsegzoo.data.formats import read_volume

    mr = tmp_path / "CHAOS_Train_Sets" / "Train_Sets" / "MR" / "3"
    _chaos_series(
        mr / "T2SPIR" / "DICOM_anon",
        mr / "T2SPIR" / "Ground",
        reverse=False,
        dicom_name=lambda k: f"IMG-0002-{k + 1:05d}.dcm",
        png_name=lambda k: f"IMG-0002-{k + 1:05d}.png",
    )
    for phase in ("InPhase", "OutPhase"):
        _chaos_series(
            mr / "T1DUAL" / "DICOM_anon" / phase,
            mr / "T1DUAL" / "Ground" if phase == "InPhase" else None,
            reverse=False,
            dicom_name=lambda k: f"IMG-0004-{k + 1:05d}.dcm",
            png_name=lambda k: f"IMG-0004-{k + 1:05d}.png",
        )
    ct = tmp_path / "CHAOS_Train_Sets" / "Train_Sets" / "CT" / "1"
    _chaos_series(
        ct / "DICOM_anon",
        None,
        reverse=True,
        modality="CT",
        dicom_name=lambda k: f"i{k:04d},0000b.dcm",
        png_name=lambda k: f"liver_GT_{k:03d}.png",
    )
    write_nifti(tmp_path / "unused.nii.gz")  # stray files do not disturb the reader
    # every Train_Sets case has Ground: CT case 1 without it lost its label
    with pytest.raises(DataValidationError, match=r"DICOM_anon: case chaos_ct_1 has no label \(expected .*CT/1/Ground\)"):
        build_datalist("chaos", tmp_path)
    datalist = build_datalist("chaos", tmp_path, allow_unlabeled=True)
    assert datalist["missing_labels"] == ["chaos_ct_1"]
    # CT and MR label maps differ: no single label system; each entry names its data set
    assert datalist["label_system"] is None and datalist["datasets"] == ["chaos_mr", "chaos_ct"]
    entries = _entries(datalist, "training")
    assert sorted(entries) == ["chaos_mr_3_t1dual_in", "chaos_mr_3_t1dual_out", "chaos_mr_3_t2spir"]
    assert entries["chaos_mr_3_t1dual_out"]["label"] == entries["chaos_mr_3_t1dual_in"]["label"]
    assert entries["chaos_mr_3_t1dual_in"]["sequence"] == "T1DUAL in-phase"
    assert (
        entries["chaos_mr_3_t2spir"]["image"]
        == "CHAOS_Train_Sets/Train_Sets/MR/3/T2SPIR/DICOM_anon"
    )
    assert list(_entries(datalist, "unlabeled_test")) == ["chaos_ct_1"]
    validate_datalist(datalist, tmp_path)

    # the PNG slices land on the slices of their DICOM files, in-plane axes included
    entry = entries["chaos_mr_3_t2spir"]
    image = read_volume(tmp_path / entry["image"])
    label = read_volume(
        tmp_path / entry["label"], field="label", reference=tmp_path / entry["image"]
    )
    _assert_aligned(image, label)


def _assert_aligned(image, label):
    """The label's marker voxel sits on the image's marker voxel in every slice."""
    assert label.shape == image.shape == (6, 4, 5)
    assert np.allclose(label.affine, image.affine)
    for z in range(5):
        marker = np.argwhere(image.array[:, :, z] % 10 == 5)
        assert (
            len(marker) == 1 and marker.tolist() == np.argwhere(label.array[:, :, z] > 0).tolist()
        )


def test_chaos_png_count_mismatch_names_the_folder(tmp_path):
    from medsegzoo.data.formats import read_png_stack, read_volume

    series, ground = tmp_path / "DICOM_anon", tmp_path / "Ground"
    _chaos_series(
        series,
        ground,
        reverse=True,
        dicom_name=lambda k: f"{k:03d}.dcm",
        png_name=lambda k: f"{k:03d}.png",
    )
    # CT numbering: files (and PNGs) numbered from the last slice to the first
    _assert_aligned(read_volume(series), read_png_stack(ground, series))
    (ground / "000.png").unlink()
    with pytest.raises(
        DataValidationError, match=r"Ground: 4 PNG slices but its DICOM series .* has 5 files"
    ):
        read_png_stack(ground, series)


def test_data_preparation_page_documents_every_layout():
    page = (Path(__file__).resolve().parents[1] / "docs" / "data_preparation.md").read_text(
        encoding="utf-8"
    )
    for layout in list_layouts():
        assert f"### `{layout}`" in page, layout
