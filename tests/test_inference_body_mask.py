"""The coarse body mask: threshold, large components, filled holes, margin, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegzoo.errors import MedSegZooError
from medsegzoo.inference.body_mask import BodyMask, auto_threshold, compute_body_mask


def torso(shape: tuple[int, int, int] = (64, 56, 40), seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """A windowed-CT-like image: air 0, an elliptic body ~0.5 with a lung of air inside, a speck far out.

    Returns:
        ``(image (1, *shape), body (ellipse incl. lung), lung)``.
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    body = ((x - 32) / 22.0) ** 2 + ((y - 28) / 14.0) ** 2 <= 1.0
    lung = ((x - 24) / 6.0) ** 2 + ((y - 28) / 5.0) ** 2 + ((z - 20) / 8.0) ** 2 <= 1.0
    image = np.where(body, 0.5 + 0.05 * rng.standard_normal(shape), 0.0)
    image[lung] = 0.0
    image[2, 2, 2] = 0.9  # one bright voxel in the air (noise, a marker)
    return torch.as_tensor(image[None], dtype=torch.float32), body, lung


def test_mask_covers_the_body_and_fills_the_lung() -> None:
    image, body, lung = torso()
    mask = compute_body_mask(image, cell=4, margin=0)
    dense = mask.dense()
    assert dense.shape == body.shape
    assert dense[body].all()  # every body voxel, the lung (air inside the body) included
    assert dense[lung].all()
    assert not dense[:4, :4, :4].any()  # the isolated speck is not body
    assert not dense[0, :, :].any() and not dense[:, -1, :].any()  # air at the borders
    assert 0.3 < mask.fraction < 0.8


def test_windows_in_the_air_do_not_touch_the_body() -> None:
    image, _, _ = torso()
    mask = compute_body_mask(image, cell=4, margin=0)
    assert not mask.intersects([slice(0, 8), slice(0, 8), slice(0, 40)])  # a corner column of air
    assert mask.intersects([slice(24, 40), slice(20, 36), slice(0, 8)])  # the middle of the torso
    assert not mask.intersects([slice(70, 90), slice(0, 8), slice(0, 8)])  # entirely outside the image
    # windows hanging over the border (MONAI's padding) count only their part inside the image
    assert mask.intersects([slice(-10, 40), slice(-5, 60), slice(0, 50)])


def test_margin_grows_the_mask() -> None:
    image, _, _ = torso()
    tight = compute_body_mask(image, cell=4, margin=0)
    loose = compute_body_mask(image, cell=4, margin=2)
    assert loose.cells.sum() > tight.cells.sum()
    assert (loose.cells | tight.cells == loose.cells).all()  # only grows


def test_threshold_auto_and_explicit() -> None:
    image, _, _ = torso()
    threshold = auto_threshold(image)
    assert 0.0 < threshold < 0.2  # 10 % of the way from air (0) to the tissue's 99th percentile
    assert compute_body_mask(image).threshold == pytest.approx(threshold)
    # a threshold above every tissue value finds no body: nothing may be skipped then
    none = compute_body_mask(image, threshold=5.0)
    assert none.threshold is None and none.cells.all()
    with pytest.raises(MedSegZooError, match="threshold must be a number or 'auto'"):
        compute_body_mask(image, threshold="otsu")


def test_an_image_without_air_is_all_body() -> None:
    image = torch.full((1, 20, 20, 12), 0.7)
    mask = compute_body_mask(image, cell=4)
    assert mask.cells.all()
    assert mask.intersects([slice(0, 4), slice(0, 4), slice(0, 4)])


def test_everything_and_bad_shapes() -> None:
    full = BodyMask.everything((10, 9, 7), cell=4)
    assert full.cells.shape == (3, 3, 2) and full.dense().shape == (10, 9, 7) and full.dense().all()
    with pytest.raises(MedSegZooError, match="channel-first image"):
        compute_body_mask(torch.zeros(2, 3, 4, 5, 6))
    with pytest.raises(MedSegZooError, match="cell must be a positive size"):
        compute_body_mask(torch.zeros(1, 8, 8, 8), cell=0)


def test_bounding_box_holds_the_mask_in_whole_cells() -> None:
    image, body, _ = torso()
    mask = compute_body_mask(image, cell=4, margin=0)
    box = mask.bounding_box()
    xs, ys = np.nonzero(body.any(axis=2))
    # the ellipse spans x 10..54 and y 14..42; the box rounds out to whole 4-voxel cells
    assert box[0].start <= xs.min() and box[0].stop > xs.max() and box[0].start % 4 == 0
    assert box[1].start <= ys.min() and box[1].stop > ys.max() and box[1].start % 4 == 0
    assert (box[0].start, box[0].stop, box[1].start, box[1].stop) == (8, 56, 12, 44)
    assert (box[2].start, box[2].stop) == (0, 40)  # the body runs through every slice
    assert BodyMask(np.zeros((2, 2, 2), dtype=bool), (4, 4, 4), (8, 8, 8)).bounding_box() is None
    assert BodyMask.everything((10, 9, 7), cell=4).bounding_box() == (slice(0, 10), slice(0, 9), slice(0, 7))
