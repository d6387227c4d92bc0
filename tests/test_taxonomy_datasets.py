"""Native label maps and method label systems against REFERENCE.md tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsegzoo.errors import UnknownNameError
from medsegzoo.taxonomy import (
    get_dataset,
    get_label_system,
    labeled_classes,
    list_datasets,
    list_label_systems,
)
from medsegzoo.taxonomy.systems import UNIVERSAL_REFERENCE_LABELED

# REFERENCE.md section 3: A-Eval 8 classes and their native index per data set
AEVAL_TABLE = {
    "liver": {"flare22": 1, "amos": 6, "word": 1, "totalsegmentator_stunet": 40, "btcv": 6},
    "kidney_right": {"flare22": 2, "amos": 2, "word": 4, "totalsegmentator_stunet": 39, "btcv": 2},
    "spleen": {"flare22": 3, "amos": 1, "word": 2, "totalsegmentator_stunet": 77, "btcv": 1},
    "pancreas": {"flare22": 4, "amos": 10, "word": 8, "totalsegmentator_stunet": 46, "btcv": 11},
    "gallbladder": {"flare22": 9, "amos": 4, "word": 6, "totalsegmentator_stunet": 15, "btcv": 4},
    "esophagus": {"flare22": 10, "amos": 5, "word": 7, "totalsegmentator_stunet": 11, "btcv": 5},
    "stomach": {"flare22": 11, "amos": 7, "word": 5, "totalsegmentator_stunet": 78, "btcv": 7},
    "kidney_left": {"flare22": 13, "amos": 3, "word": 3, "totalsegmentator_stunet": 38, "btcv": 3},
}
AEVAL10_ADRENALS = {"flare22": (7, 8), "amos": (11, 12), "btcv": (12, 13)}

UNIVERSAL32_REFERENCE = (
    "spleen kidney_right kidney_left gallbladder esophagus liver stomach aorta postcava "
    "portal_vein_and_splenic_vein pancreas adrenal_gland_right adrenal_gland_left duodenum "
    "hepatic_vessel lung_right lung_left colon intestine rectum bladder prostate_uterus "
    "femur_head_left femur_head_right celiac_trunk kidney_tumor liver_tumor pancreas_tumor "
    "hepatic_vessel_tumor lung_tumor colon_tumor kidney_cyst"
).split()


@pytest.mark.parametrize("organ", sorted(AEVAL_TABLE))
def test_aeval_table_indices(organ: str) -> None:
    for dataset, index in AEVAL_TABLE[organ].items():
        spec = get_dataset(dataset)
        assert spec.labels[index] == organ, (dataset, index)
        assert spec.index_of(organ) == index


def test_aeval10_adrenal_indices_and_system_order() -> None:
    for dataset, (right, left) in AEVAL10_ADRENALS.items():
        spec = get_dataset(dataset)
        assert spec.labels[right] == "adrenal_gland_right"
        assert spec.labels[left] == "adrenal_gland_left"
    aeval8 = get_label_system("aeval8").classes
    assert aeval8 == tuple(AEVAL_TABLE)  # the REFERENCE table's row order
    assert get_label_system("aeval10").classes == aeval8 + (
        "adrenal_gland_right",
        "adrenal_gland_left",
    )


def test_issue_examples_and_full_tables() -> None:
    assert get_dataset("BTCV").labels[11] == "pancreas"
    assert get_dataset("AMOS").labels[10] == "pancreas"
    assert get_dataset("FLARE22").labels[13] == "kidney_left"
    assert get_dataset("WORD").labels[5] == "stomach"
    assert len(get_dataset("btcv").labels) == 13
    assert len(get_dataset("amos").labels) == 15
    assert get_dataset("amos").labels[15] == "prostate_uterus"
    assert len(get_dataset("word").labels) == 16
    assert get_dataset("word").labels[12] == "adrenal_gland"
    assert get_dataset("word").labels[16] == "femur_head_right"
    assert len(get_dataset("flare22").labels) == 13
    assert get_dataset("flare22").labels[6] == "postcava"


def test_totalsegmentator_orders() -> None:
    v2 = get_dataset("totalsegmentator")
    assert len(v2.labels) == 117
    assert [v2.labels[i] for i in (1, 2, 3, 5, 7, 63, 117)] == [
        "spleen",
        "kidney_right",
        "kidney_left",
        "liver",
        "pancreas",
        "postcava",
        "costal_cartilages",
    ]
    assert v2.label_style == "per_class_masks"
    assert v2.mask_files["postcava"] == "inferior_vena_cava"
    assert v2.mask_files["vertebrae_c1"] == "vertebrae_C1"
    stunet = get_dataset("totalsegmentator_stunet")
    assert len(stunet.labels) == 104
    # string sort: rib_left_10 before rib_left_2, vertebrae_C before L before T
    assert stunet.labels[1] == "adrenal_gland_left"
    assert stunet.labels[50] == "rib_left_10" and stunet.labels[53] == "rib_left_2"
    assert stunet.labels[37] == "postcava" and stunet.labels[80] == "bladder"
    assert stunet.labels[81] == "vertebrae_c1" and stunet.labels[104] == "vertebrae_t9"


def test_abdomenatlas_stems() -> None:
    atlas = get_dataset("abdomenatlas")
    assert atlas.label_style == "per_class_masks"
    assert set(atlas.labels.values()) == set(get_label_system("touchstone9").classes)
    assert atlas.mask_files["gallbladder"] == "gall_bladder"
    assert atlas.mask_files["postcava"] == "postcava"
    assert len(get_dataset("abdomenatlas1_1").labels) == 25


def test_small_datasets() -> None:
    assert get_dataset("msd_liver").labels == {1: "liver", 2: "liver_tumor"}
    assert get_dataset("msd_pancreas").labels == {1: "pancreas", 2: "pancreas_tumor"}
    assert get_dataset("msd_hepatic_vessel").labels == {
        1: "hepatic_vessel",
        2: "hepatic_vessel_tumor",
    }
    assert get_dataset("Task09_Spleen").labels == {1: "spleen"}
    assert get_dataset("msd_lung").labels == {1: "lung_tumor"}
    assert get_dataset("msd_colon").labels == {1: "colon_tumor"}
    assert get_dataset("msd_heart").labels == {1: "left_atrium"}
    assert get_dataset("kits19").labels == {1: "kidney", 2: "kidney_tumor"}
    assert get_dataset("kits19").merges == ("kidney",)
    assert get_dataset("lits").labels == {1: "liver", 2: "liver_tumor"}
    assert get_dataset("chaos").labels == {
        63: "liver",
        126: "kidney_right",
        189: "kidney_left",
        252: "spleen",
    }
    assert get_dataset("chaos").modality == "MR"
    assert get_dataset("ct-org").labels == {
        1: "liver",
        2: "bladder",
        3: "lung",
        4: "kidney",
        5: "bone",
        6: "brain",
    }
    assert set(get_dataset("ct_org").merges) == {"lung", "kidney"}
    assert get_dataset("AbdomenCT-1K").labels == {
        1: "liver",
        2: "kidney",
        3: "spleen",
        4: "pancreas",
    }
    assert get_dataset("pancreas_ct").labels == {1: "pancreas"}
    assert get_dataset("la").labels == {1: "left_atrium"} and get_dataset("la").value_aliases == {
        255: 1
    }
    assert get_dataset("brats2019").labels == {
        1: "necrotic_tumor_core",
        2: "peritumoral_edema",
        4: "enhancing_tumor",
    }
    assert get_dataset("word").merges == ("adrenal_gland",)
    assert get_dataset("btcv").merges == ()


def test_method_systems() -> None:
    assert get_label_system("universal32").classes == tuple(UNIVERSAL32_REFERENCE)
    assert get_label_system("universal32").index_of("pancreas") == 11
    assert get_label_system("touchstone9").classes == (
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "liver",
        "stomach",
        "aorta",
        "postcava",
        "pancreas",
    )
    assert get_label_system("tct5").classes == (
        "kidney_left",
        "kidney_right",
        "liver",
        "pancreas",
        "spleen",
    )
    assert {"universal32", "aeval8", "aeval10", "touchstone9", "tct5"} <= set(list_label_systems())
    # a data set is a label system too, with its native (possibly gapped) values
    brats = get_label_system("brats2019")
    assert brats.values == (1, 2, 4)
    assert brats.index_of("enhancing_tumor") == 4


def test_every_dataset_has_modality_and_consistent_masks() -> None:
    for name in list_datasets():
        spec = get_dataset(name)
        assert spec.modality in ("CT", "MR")
        assert 0 not in spec.labels
        if spec.label_style == "per_class_masks":
            assert set(spec.mask_files) == set(spec.labels.values())


def test_universal_labeled_classes_match_reference_table() -> None:
    universal = get_label_system("universal32").classes
    for dataset, indices in UNIVERSAL_REFERENCE_LABELED.items():
        reference = [universal[i - 1] for i in indices]
        assert labeled_classes(dataset, "universal32", convention="reference") == reference
        derived = labeled_classes(dataset, "universal32")
        if dataset == "btcv":  # the table counts duodenum, which BTCV's 13 labels lack
            assert derived == [c for c in reference if c != "duodenum"]
        else:
            assert derived == reference, dataset


def test_labeled_classes_other_systems() -> None:
    assert labeled_classes("kits19", "tct5") == ["kidney_left", "kidney_right"]
    assert labeled_classes("msd_pancreas", "tct5") == ["pancreas"]
    assert labeled_classes("chaos", "tct4_mr") == ["kidney_left", "kidney_right", "liver", "spleen"]
    assert labeled_classes("word", "aeval10") == list(get_label_system("aeval10").classes)
    assert labeled_classes("msd_colon", "aeval8") == []  # colon tumor never becomes a partial organ
    assert labeled_classes("totalsegmentator", "universal32")[-1] == "kidney_cyst"


@pytest.mark.parametrize("getter", [get_dataset, get_label_system])
def test_unknown_dataset_or_system_lists_known_names(getter: object) -> None:
    with pytest.raises(UnknownNameError) as err:
        getter("not_a_dataset")
    assert "not_a_dataset" in str(err.value) and "btcv" in str(err.value)


def test_docs_list_every_dataset_and_system() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "taxonomy.md").read_text()
    for name in (*list_datasets(), *list_label_systems()):
        assert f"`{name}`" in doc, name
