"""Post-processing of sigmoid-per-class outputs (Universal Model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medsegzoo.errors import DataValidationError
from medsegzoo.inference.postprocess import (
    UniversalPostprocess,
    UniversalPostprocessd,
    masks_to_label_map,
    postprocess_class_masks,
)

NAMES = ["liver", "kidney_right", "kidney_left", "liver_tumor", "kidney_tumor"]


def _box(shape: tuple[int, ...], *slices: slice) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[slices] = True
    return m


def test_largest_component_and_tumor_inside_parent() -> None:
    shape = (5, 24, 24, 24)
    masks = np.zeros(shape, dtype=bool)
    masks[0] = _box(shape[1:], slice(2, 10), slice(2, 10), slice(2, 10)) | _box(shape[1:], slice(20, 22), slice(20, 22), slice(20, 22))
    masks[3] = _box(shape[1:], slice(4, 6), slice(4, 6), slice(4, 6)) | _box(shape[1:], slice(18, 20), slice(2, 4), slice(2, 4))
    out = postprocess_class_masks(masks, NAMES, lesion_margin_voxels=1)
    assert out[0].sum() == 8**3  # the stray liver blob is gone
    assert out[3].sum() == 8 and out[3][4:6, 4:6, 4:6].all()  # tumor outside the liver is gone


def test_kidneys_split_left_right_by_components() -> None:
    shape = (24, 12, 12)
    masks = np.zeros((5, *shape), dtype=bool)
    # both kidneys predicted as "right" (channel 1): one at small x, one at large x, plus a speck
    masks[1] = _box(shape, slice(2, 6), slice(2, 8), slice(2, 8)) | _box(shape, slice(16, 20), slice(2, 8), slice(2, 8))
    masks[2, 10, 10, 10] = True
    out = postprocess_class_masks(masks, NAMES)
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
