"""nnU-Net's foreground oversampling: the last third of every batch is forced to contain foreground.

nnU-Net (v1 and v2, ``oversample_foreground_percent`` 0.33, ``_oversample_last_XX_percent``) fills
a batch of B patches slot by slot; slot ``i`` must contain foreground when
``i >= round(B * (1 - 0.33))`` and is a uniformly random crop otherwise. At B = 2 that is the
second patch only (round(1.34) = 1); at B = 3 the third; at B = 4 the fourth. The cases of a batch
are drawn uniformly with replacement.

A PyTorch data loader builds each sample on its own, so the slot has to travel with the index:
:class:`ForegroundOversamplingBatchSampler` yields ``(case index, forced)`` pairs per batch, and
:class:`OversampledDataset` puts the flag into the sample (``force_fg``) before its random
transforms, where :class:`medsegzoo.transforms.patch_crop.RandPatchCropd` honours it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from monai.transforms import apply_transform
from torch.utils.data import Dataset, Sampler

__all__ = ["ForegroundOversamplingBatchSampler", "OversampledDataset", "forces_foreground"]

NNUNET_OVERSAMPLE_FOREGROUND_PERCENT = 0.33


def forces_foreground(slot: int, batch_size: int, percent: float = NNUNET_OVERSAMPLE_FOREGROUND_PERCENT) -> bool:
    """Whether slot ``slot`` of a batch of ``batch_size`` must contain foreground (nnU-Net's rule).

    Python's ``round`` (halves to even), as nnU-Net computes it.
    """
    return not slot < round(batch_size * (1 - percent))


class ForegroundOversamplingBatchSampler(Sampler[list[tuple[int, bool]]]):
    """Batches of ``(index, forced)`` pairs: indices from ``sampler``, flags by batch slot.

    Args:
        sampler: the case indices, e.g. ``RandomSampler(dataset, replacement=True,
            num_samples=iterations * batch_size)`` (nnU-Net draws cases with replacement) or a
            ``DistributedSampler``.
        batch_size: patches per batch (per process).
        oversample_foreground_percent: nnU-Net's 0.33.
        drop_last: drop a last incomplete batch (its slots keep the full batch's flags otherwise).
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        oversample_foreground_percent: float = NNUNET_OVERSAMPLE_FOREGROUND_PERCENT,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.percent = oversample_foreground_percent
        self.drop_last = drop_last
        self.flags = [forces_foreground(slot, batch_size, oversample_foreground_percent) for slot in range(batch_size)]

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to a ``DistributedSampler`` (a new shuffle per epoch)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        batch: list[tuple[int, bool]] = []
        for index in self.sampler:
            batch.append((int(index), self.flags[len(batch)]))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        count = len(self.sampler)  # type: ignore[arg-type]
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


class OversampledDataset(Dataset):
    """Samples of ``data`` (e.g. a ``CacheDataset`` of the deterministic preprocessing) with their
    slot's flag, passed through the random ``transform``.

    Args:
        data: an indexable dataset of dictionaries.
        transform: the random part of the pipeline (starting with the patch crop).
        force_key: the key the flag is stored under.
    """

    def __init__(self, data: Sequence[Mapping[str, Any]], transform: Callable[..., Any], force_key: str = "force_fg") -> None:
        self.data = data
        self.transform = transform
        self.force_key = force_key

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | tuple[int, bool]) -> Any:
        index, forced = key if isinstance(key, tuple) else (key, False)
        # a shallow copy: the cached arrays are never written (the crop makes new ones)
        sample = dict(self.data[index])
        sample[self.force_key] = bool(forced)
        return apply_transform(self.transform, sample)
