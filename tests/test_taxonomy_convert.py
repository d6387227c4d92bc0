"""Label map conversions and left/right splitting on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.taxonomy import (
    conversion_plan,
    convert_label_map,
    convert_to_multi_hot,
    get_label_system,
    split_left_right,
    validate_label_values,
)


def two_blobs(shape: tuple[int, int, int] = (20, 8, 8)) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of a blob at small axis-0 indices and one at large indices."""
    low = np.zeros(shape, dtype=bool)
    high = np.zeros(shape, dtype=bool)
    low[2:6, 2:6, 2:6] = True
    high[13:18, 2:6, 2:6] = True
    return low, high


def test_btcv_to_aeval8_every_value() -> None:
    values = np.arange(14, dtype=np.uint8).reshape(1, 1, 14)
    out = convert_label_map(values, "btcv", "aeval8")
    # aeval8: 1 liver, 2 kidney_right, 3 spleen, 4 pancreas, 5 gallbladder, 6 esophagus,
    # 7 stomach, 8 kidney_left; aorta, IVC, portal vein and adrenals have no place -> 0
    expected = [0, 3, 2, 8, 5, 6, 1, 7, 0, 0, 0, 4, 0, 0]
    assert out.ravel().tolist() == expected
    assert out.dtype == np.uint8


def test_flare22_to_touchstone9_and_back_to_btcv() -> None:
    values = np.arange(14).reshape(14, 1, 1)
    out = convert_label_map(values, "flare22", "touchstone9")
    # flare22: 1 liver 2 kR 3 spleen 4 pancreas 5 aorta 6 IVC 7 rAG 8 lAG 9 gb 10 eso
    # 11 stomach 12 duodenum 13 kL; touchstone9: 1 spleen 2 kR 3 kL 4 gb 5 liver 6 stomach
    # 7 aorta 8 postcava 9 pancreas
    assert out.ravel().tolist() == [0, 5, 2, 1, 9, 7, 8, 0, 0, 4, 0, 6, 0, 3]
    back = convert_label_map(out, "touchstone9", "btcv")
    assert back.ravel().tolist() == [0, 6, 2, 1, 11, 8, 9, 0, 0, 4, 0, 7, 0, 3]


def test_identity_conversion_keeps_values() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 16, size=(6, 7, 8)).astype(np.int16)
    out = convert_label_map(label, "word", "word")
    np.testing.assert_array_equal(out, label)
    assert out.dtype == conversion_plan("word", "word").dtype
    assert not np.shares_memory(out, label)  # callers may edit the output in place
    label[0, 0, 0] = 17  # outside WORD's map: the identity's shortcut still checks the range
    with pytest.raises(DataValidationError, match="17"):
        convert_label_map(label, "word", "word")


def test_totalsegmentator_stunet_to_aeval8() -> None:
    values = np.array([0, 40, 39, 77, 46, 15, 11, 78, 38, 1, 104]).reshape(1, 1, -1)
    out = convert_label_map(values, "totalsegmentator_stunet", "aeval8")
    assert out.ravel().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0]


def test_kits_tumor_merges_into_kidney_then_splits() -> None:
    low, high = two_blobs()
    label = np.zeros(low.shape, dtype=np.uint8)
    label[low] = 1
    label[high] = 1
    label[3, 3, 3] = 2  # tumor inside the blob at small axis-0 index (left in RAS)
    out = convert_label_map(label, "kits19", "tct5")  # tct5: 1 kidney_left, 2 kidney_right
    assert np.all(out[low] == 1)
    assert np.all(out[high] == 2)
    assert np.all(out[~(low | high)] == 0)

    universal = get_label_system("universal32")
    out_u = convert_label_map(label, "kits19", "universal32")
    assert out_u[3, 3, 3] == universal.index_of("kidney_tumor") == 26
    assert np.all(out_u[low & (label == 1)] == universal.index_of("kidney_left"))
    assert np.all(out_u[high] == universal.index_of("kidney_right"))


def test_split_disabled_drops_merged_organ() -> None:
    low, high = two_blobs()
    label = (low | high).astype(np.uint8)
    assert not convert_label_map(label, "kits19", "tct5", split_left_right=False).any()


def test_tumors_merge_only_into_labeled_organs() -> None:
    label = np.array([0, 1, 2]).reshape(1, 1, 3)
    # MSD pancreas: tumor -> pancreas (tct5 value 4)
    assert convert_label_map(label, "msd_pancreas", "tct5").ravel().tolist() == [0, 4, 4]
    # LiTS to A-Eval: liver tumor -> liver (1)
    assert convert_label_map(label, "lits", "aeval8").ravel().tolist() == [0, 1, 1]
    # MSD hepatic vessel: no liver label in the source, so its tumors do not become liver
    assert convert_label_map(label, "msd_hepatic_vessel", "aeval8").ravel().tolist() == [0, 0, 0]
    # ... but they are liver tumors for a system that has liver_tumor
    assert convert_label_map(label, "msd_hepatic_vessel", "lits").ravel().tolist() == [0, 0, 2]
    colon = np.array([0, 1]).reshape(1, 1, 2)
    assert convert_label_map(colon, "msd_colon", "universal32").ravel().tolist() == [0, 31]
    assert not convert_label_map(colon, "msd_colon", "aeval8").any()


def test_word_adrenal_split_and_ct_org_lungs() -> None:
    low, high = two_blobs()
    word = np.zeros(low.shape, dtype=np.uint8)
    word[low | high] = 12
    out = convert_label_map(word, "word", "aeval10")
    assert np.all(out[low] == 10)  # adrenal_gland_left
    assert np.all(out[high] == 9)  # adrenal_gland_right
    ct_org = np.zeros(low.shape, dtype=np.uint8)
    ct_org[low | high] = 3
    out = convert_label_map(ct_org, "ct_org", "universal32")
    assert np.all(out[low] == 17) and np.all(out[high] == 16)  # lung_left / lung_right


def test_parts_merge_into_wholes() -> None:
    # TotalSegmentator v2 lobes -> lungs; kidneys -> one CT-ORG kidney label
    v2 = np.array([0, 10, 11, 12, 13, 14, 2, 3]).reshape(1, 1, -1)
    assert convert_label_map(v2, "totalsegmentator", "universal32").ravel().tolist() == [
        0,
        17,
        17,
        16,
        16,
        16,
        2,
        3,
    ]
    assert convert_label_map(v2, "totalsegmentator", "ct_org").ravel().tolist() == [
        0,
        3,
        3,
        3,
        3,
        3,
        4,
        4,
    ]
    brats = np.array([0, 1, 2, 4]).reshape(1, 1, 4)
    assert convert_label_map(brats, "brats2019", "brats_whole_tumor").ravel().tolist() == [
        0,
        1,
        1,
        1,
    ]
    # kidney_cyst_left: kidney_cyst in universal32, left kidney in tct5
    cyst = np.array([0, 23]).reshape(1, 1, 2)
    assert convert_label_map(cyst, "totalsegmentator", "universal32").ravel().tolist() == [0, 32]
    assert convert_label_map(cyst, "totalsegmentator", "tct5").ravel().tolist() == [0, 1]


def test_value_aliases_and_grey_values() -> None:
    la = np.array([0, 255, 1]).reshape(1, 1, 3)
    assert convert_label_map(la, "la", "la").ravel().tolist() == [0, 1, 1]
    chaos = np.array([0, 63, 126, 189, 252]).reshape(1, 1, 5)
    # tct4_mr: 1 kidney_left, 2 kidney_right, 3 liver, 4 spleen
    assert convert_label_map(chaos, "chaos", "tct4_mr").ravel().tolist() == [0, 3, 2, 1, 4]


def test_unknown_values_raise_naming_values_dataset_and_file() -> None:
    label = np.array([0, 1, 14, 99]).reshape(1, 2, 2)
    with pytest.raises(DataValidationError) as err:
        convert_label_map(label, "btcv", "aeval8", context="labelsTr/img0001.nii.gz")
    message = str(err.value)
    assert "[14, 99]" in message and "btcv" in message and "img0001.nii.gz" in message
    with pytest.raises(DataValidationError, match=r"\[3\]"):
        validate_label_values(np.array([0, 3, 4, 4]), "brats2019")  # BraTS has no label 3
    with pytest.raises(DataValidationError, match=r"\[-1\]"):
        validate_label_values(np.array([0, -1]), "btcv")
    validate_label_values(np.array([0, 1, 2, 4]), "brats2019")  # no error


def test_float_labels() -> None:
    label = np.array([0.0, 1.0, 2.0]).reshape(1, 1, 3).astype(np.float32)
    assert convert_label_map(label, "msd_liver", "lits").ravel().tolist() == [0, 1, 2]
    with pytest.raises(DataValidationError, match="non-integer"):
        convert_label_map(label + 0.5, "msd_liver", "lits")
    with pytest.raises(DataValidationError, match="NaN"):
        convert_label_map(np.array([np.nan, 1.0]), "msd_liver", "lits")


def test_unknown_source_or_target() -> None:
    with pytest.raises(UnknownNameError, match="nowhere"):
        convert_label_map(np.zeros(3, dtype=np.uint8), "nowhere", "aeval8")
    with pytest.raises(UnknownNameError, match="aeval9"):
        convert_label_map(np.zeros(3, dtype=np.uint8), "btcv", "aeval9")


def test_plan_is_a_lookup_table() -> None:
    plan = conversion_plan("amos", "aeval8")
    assert plan.splits == ()
    assert plan.lut[10] == 4 and plan.lut[6] == 1 and plan.lut[14] == 0
    assert plan.mapping["postcava"] is None


# --------------------------------------------------------------------------- splitting


def test_split_phantom_ras_identity() -> None:
    low, high = two_blobs()
    left, right = split_left_right(low | high)
    # RAS: axis 0 increases toward the patient's right, so the small-index blob is left
    np.testing.assert_array_equal(left, low)
    np.testing.assert_array_equal(right, high)


def test_split_follows_affine_orientation() -> None:
    low, high = two_blobs()
    las = np.diag([-1.0, 1.0, 1.0, 1.0])  # axis 0 now points to the patient's left
    left, right = split_left_right(low | high, affine=las)
    np.testing.assert_array_equal(left, high)
    np.testing.assert_array_equal(right, low)
    # a permuted affine: the left-right axis is array axis 2
    transposed = np.ascontiguousarray(np.transpose(low | high, (2, 1, 0)))
    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    left, _ = split_left_right(transposed, affine=swap)
    np.testing.assert_array_equal(left, np.transpose(low, (2, 1, 0)))


def test_split_fragments_and_single_component() -> None:
    low, high = two_blobs()
    fragment = np.zeros_like(low)
    fragment[8, 7, 7] = True  # nearer the low blob along axis 0
    left, right = split_left_right(low | high | fragment)
    assert left[8, 7, 7] and not right[8, 7, 7]
    assert left.sum() + right.sum() == (low | high | fragment).sum()
    # one kidney only: side decided by the volume centre (index 9.5 on axis 0)
    left, right = split_left_right(high)
    assert not left.any() and np.array_equal(right, high)
    left, right = split_left_right(np.zeros((4, 4, 4), dtype=bool))
    assert not left.any() and not right.any()


def test_multi_hot_organs_include_their_tumors() -> None:
    low, high = two_blobs()
    label = np.zeros(low.shape, dtype=np.uint8)
    label[low | high] = 1
    label[3, 3, 3] = 2  # tumor in the left kidney
    hot = convert_to_multi_hot(label, "kits19", "universal32")
    assert hot.shape == (32, *label.shape) and hot.dtype == bool
    kidney_right, kidney_left, kidney_tumor = hot[1], hot[2], hot[25]
    np.testing.assert_array_equal(kidney_left, low)  # includes the tumor voxel
    np.testing.assert_array_equal(kidney_right, high)
    assert kidney_tumor.sum() == 1 and kidney_tumor[3, 3, 3]
    assert hot.sum() == low.sum() + high.sum() + 1  # nothing else is set
    liver = np.array([0, 1, 2]).reshape(1, 1, 3)
    hot = convert_to_multi_hot(liver, "msd_liver", "universal32")
    assert hot[5].ravel().tolist() == [False, True, True]  # liver channel holds the tumor
    assert hot[26].ravel().tolist() == [False, False, True]  # liver tumor channel
    vessel = convert_to_multi_hot(liver, "msd_hepatic_vessel", "universal32")
    assert not vessel[5].any()  # no liver label in MSD hepatic vessel: tumors stay tumors
    assert vessel[28].ravel().tolist() == [False, False, True]


def test_is_lesion_follows_the_subtype_chain():
    from medsegzoo.taxonomy import get_label_system, is_lesion

    assert is_lesion("liver_tumor") and is_lesion("kidney_cyst") and is_lesion("pancreas_tumor")
    assert not is_lesion("liver") and not is_lesion("kidney_left") and not is_lesion("hepatic_vessel")
    lesions = [c for c in get_label_system("universal32").classes if is_lesion(c)]
    # the universal model's classes 26-32 (REFERENCE.md section 2)
    assert lesions == ["kidney_tumor", "liver_tumor", "pancreas_tumor", "hepatic_vessel_tumor", "lung_tumor",
                       "colon_tumor", "kidney_cyst"]
