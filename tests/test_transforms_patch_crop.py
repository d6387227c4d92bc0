"""nnU-Net's patch crop: bounds beyond the image, foreground centring, padding."""

from __future__ import annotations

import numpy as np
import torch

from medsegzoo.transforms import RandPatchCrop, RandPatchCropd


def test_bounds_leave_room_for_the_final_patch_at_the_border() -> None:
    crop = RandPatchCrop((6, 6, 6), final_size=(4, 4, 4))
    # room (6 - 4) / 2 = 1 on each side: starts -1 .. 10 + 1 - 6 = 5
    assert crop.bounds((10, 10, 10)) == ([-1, -1, -1], [5, 5, 5])
    # an image smaller than the crop: padded by 6 - 3 = 3, one voxel before and two after
    assert crop.bounds((3, 10, 10)) == ([-1, -1, -1], [-1, 5, 5])


def test_random_starts_cover_the_bounds_uniformly() -> None:
    crop = RandPatchCrop((6, 6, 6), final_size=(4, 4, 4))
    crop.set_random_state(0)
    starts = []
    for _ in range(700):
        crop.randomize((10, 10, 10))
        starts.append(crop.start[0])
    counts = np.bincount(np.asarray(starts) + 1)
    assert len(counts) == 7 and counts.min() > 60  # every start in -1..5, about 100 each


def test_forced_crop_is_centred_on_a_foreground_voxel_and_padded() -> None:
    image = torch.arange(10 * 10 * 10, dtype=torch.float32).reshape(1, 10, 10, 10) + 1
    label = torch.zeros(1, 10, 10, 10)
    label[0, 9, 2, 5] = 3  # one voxel of class 3 near the upper border of axis 0
    indices = [np.flatnonzero(label[0].numpy() == c) for c in range(4)]
    crop = RandPatchCropd(["image", "label"], spatial_size=(4, 4, 4), pad_value=[0.0, 0.0])
    out = crop({"image": image, "label": label, "label_cls_indices": indices, "force_fg": True})
    # start = voxel - 2 = (7, 0, 3); only the lower bound is clipped, so axis 0 reaches one voxel
    # beyond the image, which is padded
    assert crop.cropper.start == [7, 0, 3]
    assert out["label"][0, 2, 2, 2] == 3 and out["label"].sum() == 3
    assert torch.equal(out["image"][0, :3], image[0, 7:10, 0:4, 3:7])
    assert (out["image"][0, 3] == 0).all()


def test_unforced_or_empty_case_is_a_random_crop_and_the_cache_is_not_written() -> None:
    image = torch.rand(1, 12, 12, 12)
    before = image.clone()
    label = torch.zeros(1, 12, 12, 12)
    crop = RandPatchCropd(["image", "label"], spatial_size=(4, 4, 4))
    crop.set_random_state(1)
    empty = [np.array([], dtype=int)] * 3
    out = crop({"image": image, "label": label, "label_cls_indices": empty, "force_fg": True})
    start = crop.cropper.start
    assert all(0 <= s <= 8 for s in start)  # no room beyond the image without a final size
    assert torch.equal(out["image"], image[:, start[0]:start[0] + 4, start[1]:start[1] + 4, start[2]:start[2] + 4])
    out["image"] += 1
    assert torch.equal(image, before)
