"""nnU-Net's foreground oversampling: the batch-slot rule, the sampler, and whole batches."""

from __future__ import annotations

import torch
from monai.data import DataLoader
from monai.transforms import ClassesToIndicesd, Compose, DeleteItemsd

from medsegzoo.transforms import (
    ForegroundOversamplingBatchSampler,
    OversampledDataset,
    RandPatchCropd,
    forces_foreground,
)


def test_the_slot_rule() -> None:
    flags = {b: [forces_foreground(i, b) for i in range(b)] for b in range(1, 7)}
    assert flags[1] == [False]  # round(0.67) = 1: a batch of one is never forced (nnU-Net's rule)
    assert flags[2] == [False, True]  # round(1.34) = 1: the second sample only
    assert flags[3] == [False, False, True]
    assert flags[4] == [False, False, False, True]  # round(2.68) = 3
    assert flags[5] == [False, False, False, True, True]  # round(3.35) = 3
    assert flags[6] == [False, False, False, False, True, True]  # round(4.02) = 4
    assert forces_foreground(0, 2, percent=1.0) and not forces_foreground(1, 2, percent=0.0)


def test_batch_sampler_pairs_indices_with_slot_flags() -> None:
    sampler = ForegroundOversamplingBatchSampler([4, 0, 3, 3, 1], batch_size=2)
    assert list(sampler) == [[(4, False), (0, True)], [(3, False), (3, True)], [(1, False)]]
    assert len(sampler) == 3
    dropping = ForegroundOversamplingBatchSampler([4, 0, 3, 3, 1], batch_size=2, drop_last=True)
    assert len(list(dropping)) == len(dropping) == 2


def _tiny_foreground_case(seed: int) -> dict[str, torch.Tensor]:
    # a 2^3 organ in a 48^3 volume: a random 8^3 crop rarely contains it
    image = torch.rand(1, 48, 48, 48, generator=torch.Generator().manual_seed(seed))
    label = torch.zeros(1, 48, 48, 48)
    label[0, 30:32, 5:7, 40:42] = 1 + seed % 2
    return {"image": image, "label": label}


def test_exactly_one_forced_foreground_sample_per_batch_of_two() -> None:
    cached = [ClassesToIndicesd("label", num_classes=3)(_tiny_foreground_case(s)) for s in range(3)]
    crop = RandPatchCropd(["image", "label"], spatial_size=(8, 8, 8), indices_key="label_cls_indices")
    dataset = OversampledDataset(cached, Compose([crop, DeleteItemsd("label_cls_indices")]))
    batches = DataLoader(dataset, batch_sampler=ForegroundOversamplingBatchSampler(
        torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=200,
                                       generator=torch.Generator().manual_seed(0)), batch_size=2))
    random_hits = 0
    for batch in batches:
        assert batch["force_fg"].tolist() == [False, True]
        assert batch["label"].shape == (2, 1, 8, 8, 8)
        assert batch["label"][1].sum() > 0  # the forced sample always holds the organ
        random_hits += int(batch["label"][0].sum() > 0)
    # the first sample is a uniform crop: it holds the organ in a few percent of the batches only
    assert random_hits < 20
