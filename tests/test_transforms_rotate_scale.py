"""nnU-Net's rotation/scaling augmentation: probabilities, geometry, initial patch size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsegzoo.transforms import (
    RandRotateScale,
    RandRotateScaled,
    initial_patch_size,
    nnunet_spatial_augmentation,
)

NO_ROTATION = [(0.0, 0.0)] * 3


def test_initial_patch_size_of_nnunet_by_hand() -> None:
    # (128, 128, 128) rotated by 30 degrees about each axis: 128 (cos 30 + sin 30) = 174.85 on the
    # rotated axes, then / 0.85 (nnU-Net's smallest scale for this purpose) = 205.7
    assert initial_patch_size((128, 128, 128), [(-math.pi / 6, math.pi / 6)] * 3) == [205, 205, 205]
    # no rotation: only the scale margin
    assert initial_patch_size((40, 80, 100), NO_ROTATION) == [47, 94, 117]


def test_dummy_2d_augmentation_of_a_thick_slice_patch() -> None:
    params = nnunet_spatial_augmentation((192, 160, 40), spacing=(0.8, 0.8, 5.0))
    # 192 / 40 > 3: rotation only about the slice axis (+-180 degrees), in-plane scaling, and the
    # initial patch keeps 40 slices; in-plane the 90-degree bound swaps 192/160 -> 192, / 0.85 = 225
    assert params["dummy_2d"] is True
    assert params["rotate_range"] == [[0.0, 0.0], [0.0, 0.0], [-math.pi, math.pi]]
    assert params["scale_axes"] == [0, 1]
    assert params["initial_patch_size"] == [225, 225, 40]
    iso = nnunet_spatial_augmentation((128, 128, 96), spacing=(1.0, 1.0, 1.5))
    assert iso["dummy_2d"] is False and iso["scale_axes"] == [0, 1, 2]
    assert iso["rotate_range"] == [[-math.pi / 6, math.pi / 6]] * 3


def test_neither_drawn_cuts_the_centre() -> None:
    x = torch.rand(1, 20, 21, 22)
    out = RandRotateScale((12, 12, 12), prob_rotate=0.0, prob_scale=0.0)(x)
    assert torch.equal(out, x[:, 4:16, 4:16, 5:17])


def test_rotation_and_scaling_are_drawn_independently() -> None:
    t = RandRotateScale((8, 8, 8), prob_rotate=0.2, prob_scale=0.2)
    t.set_random_state(0)
    rotated, scaled, both, below_one = 0, 0, 0, 0
    n = 4000
    for _ in range(n):
        t.randomize()
        r, s = any(a != 0 for a in t.angles), t.scale != 1.0
        rotated, scaled, both = rotated + r, scaled + s, both + (r and s)
        below_one += s and t.scale < 1.0
        assert not s or 0.7 <= t.scale <= 1.4
        assert all(abs(a) <= math.pi / 6 for a in t.angles)
    assert rotated / n == pytest.approx(0.2, abs=0.02) and scaled / n == pytest.approx(0.2, abs=0.02)
    assert both / n == pytest.approx(0.04, abs=0.01)  # independent: 0.2 x 0.2
    assert below_one / scaled == pytest.approx(0.5, abs=0.05)  # half zoom in, half zoom out


def test_isotropic_zoom_out_halves_a_centred_cube() -> None:
    # a 16^3 cube centred in 32^3; factor 2 samples twice as far: it covers output voxels 4..11
    label = torch.zeros(1, 32, 32, 32)
    label[0, 8:24, 8:24, 8:24] = 1
    out = RandRotateScale((16, 16, 16), NO_ROTATION, (2.0, 2.0), prob_rotate=0, prob_scale=1)(label, is_label=True)
    expected = torch.zeros(1, 16, 16, 16)
    expected[0, 4:12, 4:12, 4:12] = 1
    assert torch.equal(out, expected)
    # in-plane only (dummy 2D): the slice axis keeps its 16 voxels
    flat = RandRotateScale((16, 16, 16), NO_ROTATION, (2.0, 2.0), prob_rotate=0, prob_scale=1, scale_axes=[0, 1])
    assert float(flat(label, is_label=True).sum()) == 8 * 8 * 16


def test_quarter_turn_equals_rot90_for_images_and_labels() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 12, 12, 12)
    labels = torch.randint(0, 4, (1, 12, 12, 12)).float()
    t = RandRotateScaled(["image", "label"], (12, 12, 12), is_label=[False, True],
                         rotate_range=[(0, 0), (0, 0), (math.pi / 2, math.pi / 2)], prob_rotate=1, prob_scale=0)
    out = t({"image": x, "label": labels})
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))  # the border samples outside by rounding
    torch.testing.assert_close(out["image"][inner], torch.rot90(x, 3, (1, 2))[inner], atol=1e-4, rtol=0)
    assert torch.equal(out["label"][inner], torch.rot90(labels, 3, (1, 2))[inner])
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_labels_are_interpolated_label_by_label() -> None:
    # a thin label between two others: per-label linear interpolation keeps whole labels only
    labels = torch.zeros(1, 16, 16, 16)
    labels[0, :, :8] = 1
    labels[0, :, 8:9] = 2
    labels[0, :, 9:] = 3
    t = RandRotateScale((16, 16, 16), [(0.3, 0.3)] * 3, (1.0, 1.0), prob_rotate=1, prob_scale=0)
    out = t(labels, is_label=True)
    assert set(np.unique(out.numpy()).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert (out == 2).sum() > 0  # the one-voxel label survives the rotation
