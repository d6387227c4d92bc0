"""Post-processing of sigmoid-per-class outputs (Universal Model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.errors import DataValidationError
from medsegzoo.inference import postprocess as pp
from medsegzoo.inference.postprocess import (
    EXTENDED_LESION_PARENTS,
    PAIRED_ORGANS_WITH_KIDNEYS,
    UniversalPostprocess,
    UniversalPostprocessd,
    channel_thresholds,
    masks_to_label_map,
    postprocess_class_masks,
)

NAMES = ["liver", "kidney_right", "kidney_left", "liver_tumor", "kidney_tumor"]
UNIVERSAL_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "clip_universal_segmentation"


def _box(shape: tuple[int, ...], *slices: slice) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[slices] = True
    return m


def test_largest_component_and_tumor_inside_parent() -> None:
    shape = (5, 24, 24, 24)
    masks = np.zeros(shape, dtype=bool)
    masks[0] = _box(shape[1:], slice(2, 10), slice(2, 10), slice(2, 10)) | _box(shape[1:], slice(20, 22), slice(20, 22), slice(20, 22))
    masks[3] = _box(shape[1:], slice(4, 6), slice(4, 6), slice(4, 6)) | _box(shape[1:], slice(18, 20), slice(2, 4), slice(2, 4))
    out = postprocess_class_masks(masks, NAMES)
    assert out[0].sum() == 8**3  # the stray liver blob is gone
    assert out[3].sum() == 8 and out[3][4:6, 4:6, 4:6].all()  # tumor outside the liver is gone
    old = postprocess_class_masks(masks, NAMES, parent_region="dilate", parent_source="cleaned", lesion_margin_voxels=1)
    np.testing.assert_array_equal(old[3], out[3])


VESSELS = ["hepatic_vessel", "portal_vein_and_splenic_vein", "pancreas", "pancreas_tumor"]


def test_hepatic_vessel_keeps_two_separate_components() -> None:
    shape = (4, 16, 16, 16)
    masks = np.zeros(shape, dtype=bool)
    masks[0] = _box(shape[1:], slice(1, 4), slice(1, 4), slice(1, 12)) | _box(shape[1:], slice(10, 12), slice(10, 12), slice(1, 12))
    out = postprocess_class_masks(masks, VESSELS)
    np.testing.assert_array_equal(out[0], masks[0])  # official: left as it is
    only_largest = postprocess_class_masks(masks, VESSELS, keep_all_components=())
    assert only_largest[0].sum() == 3 * 3 * 11 and not only_largest[0][10:12].any()


def test_portal_vein_cut_below_the_pancreas() -> None:
    # RAS: the last axis runs inferior -> superior; pancreas on slices 6-9
    shape = (4, 12, 12, 16)
    masks = np.zeros(shape, dtype=bool)
    masks[1] = _box(shape[1:], slice(2, 4), slice(2, 4), slice(0, 16)) | _box(shape[1:], slice(8, 10), slice(8, 10), slice(12, 14))
    masks[2] = _box(shape[1:], slice(4, 8), slice(4, 8), slice(6, 10))
    out = postprocess_class_masks(masks, VESSELS)
    assert not out[1][..., :6].any()  # everything below the pancreas's lowest slice is gone
    np.testing.assert_array_equal(out[1][..., 6:], masks[1][..., 6:])  # the rest stays, both components
    # an affine whose third axis runs downward: "below" is now the high-index side
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    down = postprocess_class_masks(masks, VESSELS, affine=flip)
    assert not down[1][..., 10:].any() and down[1][..., :10].sum() == masks[1][..., :10].sum()
    untouched = postprocess_class_masks(masks, VESSELS, cut_below={})
    np.testing.assert_array_equal(untouched[1], masks[1])
    no_pancreas = masks.copy()
    no_pancreas[2] = False
    np.testing.assert_array_equal(postprocess_class_masks(no_pancreas, VESSELS)[1], masks[1])


def test_pancreas_tumor_outside_the_pancreas_kept_by_default() -> None:
    shape = (4, 16, 16, 16)
    masks = np.zeros(shape, dtype=bool)
    masks[2] = _box(shape[1:], slice(2, 6), slice(2, 6), slice(2, 6))
    masks[3] = _box(shape[1:], slice(12, 14), slice(12, 14), slice(12, 14))  # far from the pancreas
    assert postprocess_class_masks(masks, VESSELS)[3].sum() == 8  # official: pancreas tumor not filtered
    assert not postprocess_class_masks(masks, VESSELS, lesion_parents=EXTENDED_LESION_PARENTS)[3].any()


def test_parent_region_closing_then_one_cube_dilation() -> None:
    shape = (5, 20, 20, 20)
    masks = np.zeros(shape, dtype=bool)
    masks[0] = _box(shape[1:], slice(4, 10), slice(4, 10), slice(4, 10))
    masks[3, 11, 11, 11] = True  # diagonal, Chebyshev distance 2 from the liver corner (9, 9, 9)
    masks[3, 12, 9, 9] = True  # distance 3
    out = postprocess_class_masks(masks, NAMES)
    assert out[3, 11, 11, 11] and not out[3, 12, 9, 9]
    # three 6-neighbour dilations reach (12, 9, 9) but not the diagonal voxel (6 steps away)
    old = postprocess_class_masks(masks, NAMES, parent_region="dilate", lesion_margin_voxels=3)
    assert old[3, 12, 9, 9] and not old[3, 11, 11, 11]


def test_parent_region_in_bounding_box_equals_whole_array() -> None:
    rng = np.random.default_rng(5)
    cube = np.ones((5, 5, 5), dtype=bool)
    for _ in range(3):
        blob = ndimage.binary_dilation(rng.random((14, 15, 16)) > 0.985, iterations=1)
        blob[0, 3:9, 3:9] = True  # touches the array border, where the zero border value acts
        expected = ndimage.binary_dilation(ndimage.binary_closing(blob, structure=cube), structure=cube)
        np.testing.assert_array_equal(pp._parent_region(blob, "close_dilate", 5, 0), expected)
        six = ndimage.generate_binary_structure(3, 1)
        np.testing.assert_array_equal(pp._parent_region(blob, "dilate", 5, 2), ndimage.binary_dilation(blob, six, iterations=2))


def test_kidney_tumor_parent_from_raw_masks_keeps_two_largest_components() -> None:
    shape = (5, 24, 12, 12)
    masks = np.zeros(shape, dtype=bool)
    masks[1] = _box(shape[1:], slice(2, 8), slice(2, 8), slice(2, 8)) | _box(shape[1:], slice(12, 15), slice(2, 6), slice(2, 6))  # big A, medium B
    masks[2] = _box(shape[1:], slice(19, 21), slice(2, 4), slice(2, 4))  # small C, the left kidney's only component
    masks[4, 13, 7, 3] = True  # next to B
    masks[4, 20, 5, 3] = True  # next to C
    out = postprocess_class_masks(masks, NAMES)
    # official merge_and_top_organ: union of the raw kidneys, two largest components = A and B
    assert out[4, 13, 7, 3] and not out[4, 20, 5, 3]
    cleaned = postprocess_class_masks(masks, NAMES, parent_source="cleaned")  # A (right's largest) and C
    assert cleaned[4, 20, 5, 3] and not cleaned[4, 13, 7, 3]


def test_lungs_as_one_component_are_dropped_by_default() -> None:
    names = ["lung_right", "lung_left"]
    shape = (2, 16, 8, 8)
    masks = np.zeros(shape, dtype=bool)
    masks[0] = _box(shape[1:], slice(2, 14), slice(2, 6), slice(2, 6))  # one blob across both sides
    out = postprocess_class_masks(masks, names)
    assert not out.any()  # the official lung step finds no second component and empties both
    side = postprocess_class_masks(masks, names, pair_single_component="side")
    assert side.sum() == masks.sum()
    two = masks.copy()
    two[0, 7:9] = False  # now two components: left (small x) and right
    split = postprocess_class_masks(two, names)
    assert split[1][2:7, 2:6, 2:6].all() and split[0][9:14, 2:6, 2:6].all() and not split[1][9:].any()
    with pytest.raises(DataValidationError, match="pair_single_component"):
        postprocess_class_masks(masks, names, pair_single_component="keep")


def test_per_class_thresholds() -> None:
    assert channel_thresholds(NAMES).tolist() == [0.5] * 5  # official THRESHOLD_DIC: 0.5 everywhere
    assert channel_thresholds(NAMES, 0.4, {"liver tumour": 0.6}).tolist() == [0.4, 0.4, 0.4, 0.6, 0.4]
    prob = torch.zeros((5, 10, 10, 10))
    prob[0, 0] = 0.5  # not above 0.5: background, as the official strict ">"
    prob[0, 2:8, 2:8, 2:8] = 0.51
    prob[3, 4, 4, 4] = 0.55
    prob[3, 5, 5, 5] = 0.65
    masks = UniversalPostprocess(NAMES, output="masks", from_logits=False, class_thresholds={"liver_tumor": 0.6})(prob)
    assert int(masks[0].sum()) == 6**3 and not masks[0, 0].any()
    assert masks[3, 5, 5, 5] and not masks[3, 4, 4, 4]
    default = UniversalPostprocess(NAMES, output="masks", from_logits=False)(prob)
    assert default[3, 4, 4, 4] and default[3, 5, 5, 5]


def test_kidney_keeps_its_largest_component_by_default() -> None:
    # official organ_post_process: each kidney on its own, largest component only
    shape = (24, 12, 12)
    masks = np.zeros((5, *shape), dtype=bool)
    masks[1] = _box(shape, slice(2, 6), slice(2, 8), slice(2, 8)) | _box(shape, slice(16, 18), slice(2, 8), slice(2, 8))
    masks[2, 10, 10, 10] = True
    out = postprocess_class_masks(masks, NAMES)
    assert out[1].sum() == 4 * 6 * 6 and out[1][2:6, 2:8, 2:8].all() and not out[1][16:].any()
    assert out[2].sum() == 1 and out[2, 10, 10, 10]  # the left kidney is not touched by the right one


def test_kidneys_split_left_right_by_components_as_an_option() -> None:
    shape = (24, 12, 12)
    masks = np.zeros((5, *shape), dtype=bool)
    # both kidneys predicted as "right" (channel 1): one at small x, one at large x, plus a speck
    masks[1] = _box(shape, slice(2, 6), slice(2, 8), slice(2, 8)) | _box(shape, slice(16, 20), slice(2, 8), slice(2, 8))
    masks[2, 10, 10, 10] = True
    out = postprocess_class_masks(masks, NAMES, split_pairs=PAIRED_ORGANS_WITH_KIDNEYS)
    # RAS: smaller x is the patient's left
    assert out[2][2:6].sum() == 4 * 6 * 6 and out[2][16:].sum() == 0
    assert out[1][16:20].sum() == 4 * 6 * 6 and out[1][:6].sum() == 0
    assert not out[2, 10, 10, 10]  # third, smallest component dropped


def test_label_map_values_and_overlaps() -> None:
    masks = np.zeros((5, 4, 4, 4), dtype=bool)
    masks[0, :2] = True
    masks[1, 1:3] = True  # overlaps the liver on x == 1
    masks[3, 0, 0, 0] = True
    prob = np.zeros((5, 4, 4, 4))
    prob[0] = 0.6
    prob[1] = 0.9
    label = masks_to_label_map(masks, NAMES, "universal32", prob)
    assert label.dtype == np.uint8
    assert label[0, 1, 1] == 6 and label[1, 1, 1] == 2 and label[2, 0, 0] == 2  # liver 6, right kidney 2
    assert label[0, 0, 0] == 27 and label[3, 0, 0] == 0  # liver tumor 27 over the liver
    with pytest.raises(DataValidationError, match="not in label system"):
        masks_to_label_map(masks[:1], ["brain_tumor"], "universal32")


def test_transform_from_logits_keeps_meta_and_both_outputs() -> None:
    logits = torch.full((5, 8, 8, 8), -5.0)
    logits[0, 1:5, 1:5, 1:5] = 5.0
    pred = MetaTensor(logits, affine=torch.eye(4) * 2)
    label = UniversalPostprocess(NAMES)(pred)
    assert isinstance(label, MetaTensor) and label.shape == (1, 8, 8, 8)
    assert int(label.sum()) == 6 * 64 and torch.equal(label.affine, pred.affine)
    d = UniversalPostprocessd("pred", class_names=NAMES, output="both")({"pred": pred})
    assert d["pred"].shape == (1, 8, 8, 8) and d["pred_masks"].shape == (5, 8, 8, 8)
    assert int(d["pred_masks"][0].sum()) == 64
    with pytest.raises(DataValidationError, match="output channels"):
        UniversalPostprocess(NAMES[:2])(pred)


def _bundle_postprocess(overrides: dict[str, Any]) -> UniversalPostprocess:
    """The UniversalPostprocess that the universal bundle's inference.json builds."""
    parser = parse_bundle(BundleRun(UNIVERSAL_BUNDLE, ["inference.json"], overrides))
    step = parser.get_parsed_content("postprocessing").transforms[0]
    assert isinstance(step, UniversalPostprocessd)
    return step.post


def test_bundle_post_keys_are_the_official_defaults() -> None:
    post = _bundle_postprocess({})
    # the config spells the defaults out for users to edit; they must be the package's official ones
    assert post.threshold == 0.5 and np.all(post.thresholds == 0.5)
    expected = {
        "largest_component": True,
        "split_pairs": [tuple(p) for p in pp.DEFAULT_PAIRED_ORGANS],
        "pair_single_component": "drop",
        "keep_all_components": pp.DEFAULT_KEEP_ALL_COMPONENTS,
        "cut_below": pp.DEFAULT_CUT_BELOW,
        "lesion_parents": {k: list(v) for k, v in pp.DEFAULT_LESION_PARENTS.items()},
        "parent_source": "raw",
        "parent_region": "close_dilate",
        "parent_cube": 5,
        "lesion_margin_voxels": 3,
    }
    assert post.clean_up == expected
    assert post.clean_up == {**UniversalPostprocess(class_names=["liver"]).clean_up,
                             "lesion_parents": expected["lesion_parents"], "cut_below": expected["cut_below"]}


def test_bundle_post_keys_switch_to_our_earlier_rules() -> None:
    earlier = {
        "post_split_pairs": [list(p) for p in PAIRED_ORGANS_WITH_KIDNEYS],
        "post_pair_single_component": "side",
        "post_keep_all_components": [],
        "post_cut_below": {},
        "post_lesion_parents": {k: list(v) for k, v in EXTENDED_LESION_PARENTS.items()},
        "post_parent_source": "cleaned",
        "post_parent_region": "dilate",
        "post_class_thresholds": {"pancreas_tumor": 0.6},
    }
    post = _bundle_postprocess(earlier)
    assert post.clean_up["split_pairs"] == list(PAIRED_ORGANS_WITH_KIDNEYS)
    assert post.clean_up["lesion_parents"]["pancreas_tumor"] == ["pancreas"]
    assert (post.clean_up["parent_source"], post.clean_up["parent_region"]) == ("cleaned", "dilate")
    assert post.clean_up["keep_all_components"] == () and post.clean_up["cut_below"] == {}
    assert post.thresholds[post.class_names.index("pancreas_tumor")] == 0.6
    with pytest.raises(RuntimeError) as err:  # MONAI wraps the error of the component it builds
        _bundle_postprocess({"post_parent_region": "grow"})
    assert isinstance(err.value.__cause__, DataValidationError) and "parent_region" in str(err.value.__cause__)
