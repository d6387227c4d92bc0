"""nnU-Net's patch sampling: a random crop, or one centred on a foreground voxel when forced.

nnU-Net v2's data loader (``nnUNetDataLoaderBase.get_bbox`` and ``nnUNetDataLoader3D``) crops each
training patch from the preprocessed case:

* the crop (the *initial* patch, larger than the network's for the rotation) may reach beyond the
  image by half of ``initial - final`` on every side (and by more when the image is smaller than
  the patch), so that the final patch can reach the image border; what lies outside is padded
  with zeros (images) and background (labels);
* a sample *not* forced to contain foreground takes a uniformly random position in that range;
* a forced sample picks one of the foreground classes present in the case uniformly, one of its
  voxels uniformly, and centres the crop on it (only the lower bound is clipped, as nnU-Net does);
  a case without foreground falls back to a random crop.

Which samples are forced is decided per batch slot (``oversample_foreground_percent``, see
:mod:`medsegzoo.transforms.oversampling`), so the flag comes with the data (``force_key``). The
voxel locations come from MONAI's ``ClassesToIndicesd`` (run once, in the cached part of the
pipeline, as nnU-Net stores ``class_locations`` at preprocessing). MONAI's
``RandCropByPosNegLabeld`` and ``RandCropByLabelClassesd`` draw foreground with a probability
per sample and keep the crop inside the image, hence this transform.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple_rep

__all__ = ["RandPatchCrop", "RandPatchCropd"]


class RandPatchCrop(RandomizableTransform):
    """Crop ``spatial_size`` at a random or foreground-centred position, padding what lies outside.

    Args:
        spatial_size: the crop (nnU-Net's initial patch).
        final_size: the network's patch (default ``spatial_size``); the crop may reach
            ``(spatial_size - final_size) / 2`` beyond the image on every side.
    """

    def __init__(self, spatial_size: Sequence[int], final_size: Sequence[int] | None = None) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.spatial_size = [int(s) for s in spatial_size]
        self.final_size = self.spatial_size if final_size is None else [int(s) for s in final_size]
        self.start: list[int] = [0] * len(self.spatial_size)

    def bounds(self, shape: Sequence[int]) -> tuple[list[int], list[int]]:
        """Lowest and highest crop start per axis (nnU-Net's ``lbs`` / ``ubs``)."""
        lows, highs = [], []
        for n, crop, final in zip(shape, self.spatial_size, self.final_size):
            pad = max(crop - final, crop - int(n))  # room for the final patch at the border, or a small image
            lows.append(-(pad // 2))
            highs.append(int(n) + pad // 2 + pad % 2 - crop)
        return lows, highs

    def randomize(
        self,
        shape: Sequence[int] | None = None,
        force_foreground: bool = False,
        class_indices: Sequence[Any] | None = None,
    ) -> None:
        """Draw the crop start for an image of spatial ``shape``.

        Args:
            shape: spatial shape of the image.
            force_foreground: centre the crop on a foreground voxel.
            class_indices: flat voxel indices per class (``ClassesToIndicesd``; entry 0, the
                background, is not a candidate).
        """
        if shape is None:
            raise ValueError("RandPatchCrop.randomize needs the image shape")
        lows, highs = self.bounds(shape)
        candidates = []
        if force_foreground and class_indices is not None:
            candidates = [np.asarray(ix).ravel() for ix in list(class_indices)[1:]]
            candidates = [ix for ix in candidates if ix.size > 0]
        if not candidates:
            self.start = [int(self.R.randint(lo, hi + 1)) for lo, hi in zip(lows, highs)]
            return
        chosen = candidates[int(self.R.randint(len(candidates)))]
        voxel = np.unravel_index(int(chosen[int(self.R.randint(chosen.size))]), tuple(int(n) for n in shape))
        self.start = [max(lo, int(v) - crop // 2) for lo, v, crop in zip(lows, voxel, self.spatial_size)]

    def __call__(self, img: torch.Tensor, pad_value: float = 0.0) -> torch.Tensor:
        """Cut the drawn crop from ``img`` (channel first) and pad it with ``pad_value``; a new tensor."""
        img = torch.as_tensor(img)
        shape = img.shape[1:]
        valid = [(max(0, b), min(int(n), b + s)) for b, n, s in zip(self.start, shape, self.spatial_size)]
        index = (slice(None), *(slice(lo, hi) for lo, hi in valid))
        out = torch.full((img.shape[0], *self.spatial_size), float(pad_value), dtype=img.dtype)
        target = (slice(None), *(slice(lo - b, hi - b) for (lo, hi), b in zip(valid, self.start)))
        out[target] = img[index]
        return out


class RandPatchCropd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandPatchCrop`: one crop for all keys.

    Args:
        keys: keys to crop (``image``, ``label``).
        spatial_size, final_size: as :class:`RandPatchCrop`.
        indices_key: the per-class voxel indices (MONAI ``ClassesToIndicesd``'s output).
        force_key: the flag that forces foreground (set by
            :class:`medsegzoo.transforms.oversampling.OversampledDataset`; absent: not forced).
        pad_value: per key (or one for all) value of what lies outside the image.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        final_size: Sequence[int] | None = None,
        indices_key: str = "label_cls_indices",
        force_key: str = "force_fg",
        pad_value: float | Sequence[float] = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.cropper = RandPatchCrop(spatial_size, final_size)
        self.indices_key = indices_key
        self.force_key = force_key
        self.pad_value = ensure_tuple_rep(pad_value, len(self.keys))

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandPatchCropd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        self.cropper.randomize(d[first].shape[1:], bool(d.get(self.force_key, False)), d.get(self.indices_key))
        for key, pad in self.key_iterator(d, self.pad_value):
            d[key] = self.cropper(d[key], pad)
        return d
