"""nnU-Net's resampling: grid mapping, per-label interpolation, the separate coarse axis, inversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from scipy import ndimage

from medsegzoo.transforms import ResampleToSpacing, ResampleToSpacingd
from medsegzoo.transforms.resampling import resample_to_shape, separate_axis


def _meta(array: np.ndarray, spacing: tuple[float, float, float]) -> MetaTensor:
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.as_tensor(array), affine=affine)


def test_grid_maps_corner_to_corner_as_skimage_resize() -> None:
    # output voxel o samples input (o + 0.5) * in / out - 0.5, the edge value beyond (mode "edge")
    rng = np.random.default_rng(0)
    volume = rng.random((1, 10, 12, 7)).astype(np.float32)
    out = resample_to_shape(volume, (15, 6, 9), order=1)
    axes = [(np.arange(n) + 0.5) * (o / n) - 0.5 for n, o in zip((15, 6, 9), volume.shape[1:])]
    reference = ndimage.map_coordinates(volume[0], np.meshgrid(*axes, indexing="ij"), order=1, mode="nearest")
    np.testing.assert_allclose(out[0], reference, atol=1e-6)


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("shape", [(17, 50, 23), (80, 20, 30), (40, 37, 9)])
def test_separable_zoom_equals_scipys_3d_zoom(order: int, shape: tuple[int, int, int]) -> None:
    # the fast path (one sparse 1-D map per axis) against scipy's own 3-D zoom
    from medsegzoo.transforms.resampling import _zoom

    rng = np.random.default_rng(order)
    volume = rng.standard_normal((40, 37, 23)).astype(np.float32)
    factors = [n / o for n, o in zip(shape, volume.shape)]
    reference = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)
    out = _zoom(volume, shape, order)
    assert out.shape == shape and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, reference, rtol=0, atol=2e-6 if order else 0)
    if order == 0:  # integer label maps take the same voxels
        labels = rng.integers(0, 5, volume.shape).astype(np.uint8)
        np.testing.assert_array_equal(_zoom(labels, shape, 0), ndimage.zoom(labels, factors, order=0, mode="nearest", grid_mode=True))


def test_cubic_output_is_clipped_to_the_input_range() -> None:
    step = np.zeros((1, 8, 8, 8), np.float32)
    step[0, 4:] = 100.0
    out = resample_to_shape(step, (19, 8, 8), order=3)
    raw = ndimage.zoom(step[0], (19 / 8, 1, 1), order=3, mode="nearest", grid_mode=True)
    assert raw.min() < 0 or raw.max() > 100  # cubic overshoot ...
    assert out.min() == 0.0 and out.max() == 100.0  # ... clipped, as skimage does


def test_labels_interpolated_label_by_label_later_labels_win() -> None:
    # [0, 1, 1, 0, 2, 2] -> 3 voxels sample positions 0.5, 2.5, 4.5: the masks of 0 and 1 are both
    # 0.5 at the first two, 1 wins (later); 2 at the last
    labels = np.array([0, 1, 1, 0, 2, 2], np.float32).reshape(1, 6, 1, 1)
    out = resample_to_shape(labels, (3, 1, 1), is_label=True, order=1)
    assert out.ravel().tolist() == [1.0, 1.0, 2.0]


def test_thick_slices_are_resampled_alone_with_nearest_neighbours() -> None:
    assert separate_axis((0.8, 0.8, 5.0), (0.8, 0.8, 2.5)) == 2  # the input is anisotropic
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 1.0, 4.0)) == 2  # the target is
    assert separate_axis((1.0, 4.0, 4.0), (1.0, 1.0, 1.0)) is None  # two coarse axes: no separate axis
    assert separate_axis((1.0, 1.0, 2.0), (1.5, 1.5, 1.5)) is None
    rng = np.random.default_rng(1)
    image = _meta(rng.random((1, 8, 8, 4)).astype(np.float32), (0.8, 0.8, 5.0))
    out = ResampleToSpacing((0.8, 0.8, 2.5))(image)
    assert out.shape == (1, 8, 8, 8)
    # every slice is a copy of one input slice (nearest neighbour, no blending): 0,0,1,1,2,2,3,3
    for k in range(8):
        np.testing.assert_array_equal(out[0, :, :, k].numpy(), image[0, :, :, k // 2].numpy())


def test_unchanged_shape_is_no_resampling() -> None:
    image = _meta(np.random.default_rng(2).random((1, 6, 6, 6)).astype(np.float32), (1.0, 1.0, 1.0))
    out = ResampleToSpacing((1.02, 1.0, 1.0))(image)  # round(6 x 1 / 1.02) = 6
    assert torch.equal(out.as_tensor(), image.as_tensor())
    assert torch.equal(out.affine, image.affine)


def test_affine_keeps_the_physical_extent_and_inverse_restores_the_grid() -> None:
    rng = np.random.default_rng(3)
    image = _meta(rng.normal(size=(1, 40, 40, 8)).astype(np.float32), (0.8, 0.8, 5.0))
    label = _meta(np.zeros((1, 40, 40, 8), np.float32), (0.8, 0.8, 5.0))
    label[0, 10:30, 12:25, 2:6] = 2
    pre = Compose([ResampleToSpacingd(["image", "label"], (1.6, 1.6, 2.5), is_label=[False, True])])
    data = pre({"image": image, "label": label})
    assert data["image"].shape == data["label"].shape == (1, 20, 20, 16)
    np.testing.assert_allclose(np.sqrt((data["image"].affine[:3, :3].numpy() ** 2).sum(0)), [1.6, 1.6, 2.5])
    corner = torch.tensor([-0.5, -0.5, -0.5, 1.0], dtype=torch.float64)  # the grid's outer corner
    torch.testing.assert_close(data["image"].affine @ corner, image.affine @ corner)
    assert set(np.unique(data["label"].numpy()).tolist()) == {0.0, 2.0}
    # probabilities back to the 40 x 40 x 8 grid (linear, nnU-Net's export) with Invertd
    probs = torch.softmax(torch.randn(3, 20, 20, 16), 0)
    pred = MetaTensor(probs, affine=data["image"].affine, applied_operations=data["image"].applied_operations)
    back = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)({"pred": pred, "image": data["image"]})
    assert back["pred"].shape == (3, 40, 40, 8)
    torch.testing.assert_close(back["pred"].affine, image.affine)
    torch.testing.assert_close(back["pred"].sum(0), torch.ones(40, 40, 8), atol=1e-5, rtol=0)  # linear keeps sums
    expected = resample_to_shape(probs.numpy(), (40, 40, 8), order=1, axis=2)
    np.testing.assert_allclose(back["pred"].numpy(), expected, atol=1e-6)


def test_needs_an_affine() -> None:
    with pytest.raises(Exception, match="MetaTensor"):
        ResampleToSpacing((1.0, 1.0, 1.0))(torch.zeros(1, 4, 4, 4))
