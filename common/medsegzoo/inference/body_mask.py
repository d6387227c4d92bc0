"""A coarse body mask computed cheaply from the network's input, to skip windows outside it.

A CT or MR field of view holds air around the patient; a sliding-window inferer that runs
the network on windows holding nothing but air spends its time predicting background. The
mask here tells such windows apart, cheaply and conservatively:

1. the image is max-pooled onto a grid of ``cell``-voxel cells (a cell is "bright" when any
   voxel in it is above the threshold, so the coarse mask can only grow the fine one);
2. bright cells are thresholded at ``threshold`` (``"auto"``: 10 % of the way from the
   image's minimum, the air of an intensity-windowed CT or the background of an MR, to its
   99th percentile);
3. connected components smaller than ``min_component`` of the largest one are dropped (the
   body, and arms or a second leg, stay; noise specks and isolated voxels go);
4. holes are filled (in 3D and slice by slice along every axis: the lungs, the bowel gas);
5. the mask grows by ``margin`` cells.

A mask that keeps almost nothing (a bright cell share under ``min_fraction``: an image whose
intensities the threshold does not suit) is replaced by an all-true one: no window is
skipped. :class:`BodyMask` answers the question the inferer asks (does this window touch
the body?) on the coarse grid, without building the full-resolution mask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsegzoo.errors import MedSegZooError

__all__ = ["BodyMask", "auto_threshold", "compute_body_mask"]

# sample at most this many voxels for the percentile of the automatic threshold
_QUANTILE_SAMPLES = 1_000_000


@dataclasses.dataclass(frozen=True)
class BodyMask:
    """A body mask on a coarse grid of cells.

    Attributes:
        cells: boolean array, one value per cell (``ceil(shape / cell)`` per axis).
        cell: cell size in voxels per spatial axis.
        shape: the spatial shape of the image it was computed from.
        threshold: the intensity threshold used (None when the mask is all-true by fallback).
    """

    cells: np.ndarray
    cell: tuple[int, ...]
    shape: tuple[int, ...]
    threshold: float | None = None

    @classmethod
    def everything(cls, shape: Sequence[int], cell: Sequence[int] | int = 1) -> BodyMask:
        """A mask that covers the whole image (no window is ever skipped)."""
        cells = _as_cell(cell, len(shape))
        grid = tuple(math.ceil(s / c) for s, c in zip(shape, cells, strict=True))
        return cls(np.ones(grid, dtype=bool), cells, tuple(int(s) for s in shape), None)

    @property
    def fraction(self) -> float:
        """Share of the image's voxels inside the mask."""
        return float(self.dense().mean()) if self.cells.size else 0.0

    def intersects(self, window: Sequence[slice]) -> bool:
        """Whether a window (one slice per spatial axis, in image voxels) touches the body.

        Parts of the window outside the image (padding) are ignored; a window entirely
        outside the image does not touch it.
        """
        index = []
        for part, size, cell in zip(window, self.shape, self.cell, strict=True):
            start = 0 if part.start is None else max(int(part.start), 0)
            stop = size if part.stop is None else min(int(part.stop), size)
            if stop <= start:
                return False
            index.append(slice(start // cell, -(-stop // cell)))
        return bool(self.cells[tuple(index)].any())

    def bounding_box(self) -> tuple[slice, ...] | None:
        """The smallest box of whole cells holding the mask, in image voxels (None when it is empty)."""
        if not self.cells.any():
            return None
        box = []
        for axis, (size, cell) in enumerate(zip(self.shape, self.cell, strict=True)):
            other = tuple(a for a in range(self.cells.ndim) if a != axis)
            hits = np.flatnonzero(self.cells.any(axis=other))
            box.append(slice(int(hits[0]) * cell, min(int(hits[-1] + 1) * cell, size)))
        return tuple(box)

    def dense(self) -> np.ndarray:
        """The mask at the image's resolution (each cell repeated over its voxels)."""
        full = self.cells
        for axis, cell in enumerate(self.cell):
            full = np.repeat(full, cell, axis=axis)
        return full[tuple(slice(0, s) for s in self.shape)]


def _as_cell(cell: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    cells = (int(cell),) * ndim if isinstance(cell, (int, np.integer)) else tuple(int(c) for c in cell)
    if len(cells) != ndim or min(cells) < 1:
        raise MedSegZooError(f"body mask: cell must be a positive size per spatial axis ({ndim}), got {cell!r}")
    return cells


def auto_threshold(image: torch.Tensor) -> float:
    """10 % of the way from the image's minimum to its 99th percentile.

    On an intensity-windowed CT the minimum is air (and lung), so fat and every tissue lie
    above; on a z-scored MR the minimum is the background noise floor.
    """
    flat = image.detach().reshape(-1)
    low = float(flat.min())
    step = max(1, flat.numel() // _QUANTILE_SAMPLES)
    sample = flat[::step].float()
    high = float(torch.quantile(sample, 0.99))
    return low + 0.1 * (high - low)


def compute_body_mask(
    image: torch.Tensor | np.ndarray,
    threshold: float | str = "auto",
    cell: Sequence[int] | int = 4,
    margin: int = 1,
    min_component: float = 0.01,
    min_fraction: float = 0.01,
) -> BodyMask:
    """The body mask of one image (threshold + large components + filled holes + margin).

    Args:
        image: channel-first ``(C, *spatial)`` image, 1 to 3 spatial dimensions (several
            channels: their maximum counts).
        threshold: intensity above which a voxel is body, in the image's units (after the
            bundle's intensity normalisation), or ``"auto"`` (see :func:`auto_threshold`).
        cell: cell size in voxels (per axis or one for all).
        margin: cells added around the mask.
        min_component: components smaller than this share of the largest are dropped.
        min_fraction: below this share of bright cells the mask covers everything instead.

    Returns:
        The :class:`BodyMask`.

    Raises:
        MedSegZooError: a threshold that is neither a number nor ``"auto"``, a bad cell size,
            or an image that is not channel-first with 1 to 3 spatial dimensions.
    """
    from scipy import ndimage  # imported here: only inference with skipping needs it

    data = torch.as_tensor(image).detach()
    if not 2 <= data.ndim <= 4:
        raise MedSegZooError(f"body mask: a channel-first image (C, *spatial) with 1 to 3 spatial dimensions expected, got shape {tuple(data.shape)}")
    shape = tuple(int(s) for s in data.shape[1:])
    cells = _as_cell(cell, len(shape))
    if isinstance(threshold, str):
        if threshold.strip().lower() != "auto":
            raise MedSegZooError(f"body mask: threshold must be a number or 'auto', got {threshold!r}")
        value = auto_threshold(data)
    else:
        value = float(threshold)
    brightest = data.float().amax(dim=0, keepdim=True)[None]  # (1, 1, *spatial)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(shape)]
    pooled = pool(brightest, kernel_size=cells, stride=cells, ceil_mode=True)[0, 0]
    bright = (pooled > value).cpu().numpy()
    if bright.mean() < min_fraction:
        return BodyMask.everything(shape, cells)
    structure = ndimage.generate_binary_structure(bright.ndim, bright.ndim)
    labels, count = ndimage.label(bright, structure=structure)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= min_component * sizes.max()) + 1
        bright = np.isin(labels, keep)
    mask = ndimage.binary_fill_holes(bright)
    if mask.ndim == 3:
        for axis in range(3):
            for k in range(mask.shape[axis]):
                index = [slice(None)] * 3
                index[axis] = k
                plane = mask[tuple(index)]
                if plane.any() and not plane.all():
                    mask[tuple(index)] = ndimage.binary_fill_holes(plane)
    if margin > 0:
        mask = ndimage.binary_dilation(mask, structure=structure, iterations=int(margin))
    return BodyMask(np.ascontiguousarray(mask, dtype=bool), cells, shape, value)
