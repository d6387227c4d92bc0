"""Class probabilities back to the image grid and their argmax, in one pass and a slab at a time.

The stock MONAI tail of a segmentation bundle is ``Invertd`` (class probabilities resampled
back to the image grid with linear interpolation) followed by ``AsDiscreted(argmax=True)``. On
an abdominal CT (512 x 512 x 300 voxels, 6 classes) it holds a 1.9 GB float32 array of
probabilities, and on two CPU cores the ``torch.argmax`` over its channel axis alone takes longer
than the resampling: together they take as long as all sliding windows in bf16.

:class:`InvertArgmaxd` computes the *same label map*:

* the transforms recorded after the resampling (crops, pads) are inverted on the probabilities
  at the network's grid, as ``Invertd`` would;
* the resampling itself (MONAI ``Spacingd``, or :class:`~medsegzoo.transforms.ResampleToSpacingd`
  the nnU-Net way) is inverted *fused with the argmax*: linear interpolation along each axis
  of the image grid (separable, with the resampler's own coordinates and border rule), one
  output slice at a time, and :func:`first_argmax` of each slice. Only voxels whose
  interpolation corners disagree on the argmax are interpolated (elsewhere the corners' label
  is the exact answer: 10x faster on a CT where organs fill 4 % of the volume). Nothing of
  full size but the label map is ever held;
* the transforms recorded before the resampling (``Orientationd``) are inverted on the label
  map, with nearest-neighbour interpolation (they are flips and axis permutations).

The interpolation is the same weighted sum of the same neighbours as ``grid_sample`` /
``scipy.ndimage.zoom``; only the rounding of the last bit may differ, so a voxel can flip only
where two classes tie to float32 precision. tests/test_inverse_argmax.py checks agreement with
``Invertd`` + ``AsDiscreted`` on both resamplers. Anything this cannot do exactly (an oblique
resampling, another padding mode, no resampling in the chain) goes the stock way, inverting all
probabilities, followed by :func:`first_argmax`; the log says which path ran.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, InvertibleTransform, MapTransform, Spacingd
from monai.transforms.utils import convert_applied_interp_mode
from monai.utils import TraceKeys

from medsegzoo.errors import MedSegZooError
from medsegzoo.transforms.resampling import ResampleToSpacingd, _grid_affine, _spacing, _zoom, separate_axis

__all__ = ["AxisWeights", "InvertArgmaxd", "first_argmax", "resampled_argmax"]

logger = logging.getLogger(__name__)

# off-diagonal terms of the voxel-to-voxel transform below this count as zero (axis-aligned)
AXIS_ALIGNED_TOL = 1e-6


def first_argmax(probs: torch.Tensor) -> torch.Tensor:
    """Index of the largest channel at every voxel (the first one on ties, as ``torch.argmax``).

    One comparison pass per channel: on a CPU this is several times faster than
    ``torch.argmax(probs, dim=0)``, which reduces over the outermost (strided) axis.

    Args:
        probs: ``(C, *spatial)``.

    Returns:
        ``(*spatial)`` int64 indices.
    """
    best = probs[0].clone()
    index = torch.zeros(probs.shape[1:], dtype=torch.int64, device=probs.device)
    for channel in range(1, probs.shape[0]):
        larger = probs[channel] > best
        index.masked_fill_(larger, channel)
        torch.where(larger, probs[channel], best, out=best)
    return index


@dataclasses.dataclass(frozen=True)
class AxisWeights:
    """Linear interpolation along one axis: output ``i`` is ``(1 - w[i]) * in[lower[i]] + w[i] * in[upper[i]]``."""

    lower: torch.Tensor
    upper: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def linear(cls, coords: np.ndarray, size: int) -> AxisWeights:
        """Weights at input coordinates ``coords`` (voxel units), clamped to the border like ``padding_mode="border"``."""
        coords = np.clip(np.asarray(coords, dtype=np.float64), 0.0, size - 1)
        lower = np.minimum(np.floor(coords), max(size - 2, 0)).astype(np.int64)
        weight = coords - lower
        upper = np.minimum(lower + 1, size - 1)
        return cls(torch.as_tensor(lower), torch.as_tensor(upper), torch.as_tensor(weight, dtype=torch.float32))

    @classmethod
    def nearest(cls, indices: np.ndarray) -> AxisWeights:
        """The input voxel ``indices[i]`` at output ``i``."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return cls(index, index, torch.zeros(len(index), dtype=torch.float32))

    def __len__(self) -> int:
        return len(self.lower)


def _corner_labels(labels: torch.Tensor, ax: AxisWeights, ay: AxisWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output voxel of a slice: the label of its interpolation stencil's first corner, and
    whether all four corners of the stencil (lower/upper along x and y) carry that label."""
    rows_low, rows_up = labels.index_select(0, ax.lower), labels.index_select(0, ax.upper)
    first = rows_low.index_select(1, ay.lower)
    same = first == rows_up.index_select(1, ay.lower)
    same &= first == rows_low.index_select(1, ay.upper)
    same &= first == rows_up.index_select(1, ay.upper)
    return first, same


def resampled_argmax(probs: torch.Tensor, axes: Sequence[AxisWeights], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Argmax of ``probs`` linearly resampled with per-axis ``axes`` weights, one output slice at a time.

    Equal to resampling every channel to the full grid and then taking the argmax (up to the
    last bit of float32 rounding), with a working set of a few output slices.

    Only voxels near a class boundary are interpolated. Linear interpolation is a convex
    combination of the stencil's corners, and a channel that is the (first) largest at every
    corner stays the (first) largest in any convex combination of them; so where all eight
    corners have the same argmax at the network's grid, that is the voxel's label, exactly.
    The other voxels are interpolated with the same ``lerp`` operations in the same order as a
    dense x-then-y pass would do, so they get the same bits.

    Args:
        probs: ``(C, X, Y, Z)`` class probabilities (or logits: any monotone-free scores that
            are interpolated linearly before the argmax).
        axes: weights of the three spatial axes (output sizes ``len(axes[i])``).
        dtype: of the label map (uint8 up to 255 channels).

    Returns:
        ``(X', Y', Z')`` label map.
    """
    if probs.ndim != 4 or len(axes) != 3:
        raise MedSegZooError(f"resampled_argmax needs (C, X, Y, Z) and three axes, got {tuple(probs.shape)}")
    if probs.shape[0] - 1 > torch.iinfo(dtype).max:
        raise MedSegZooError(f"{probs.shape[0]} classes do not fit a {dtype} label map")
    ax, ay, az = axes
    slabs = probs.float().permute(3, 0, 1, 2).contiguous()  # (Z, C, X, Y): one input slice is contiguous
    grid_labels = torch.stack([first_argmax(slab) for slab in slabs]).to(dtype)  # (Z, X, Y) at the network's grid
    out = torch.empty((len(az), len(ax), len(ay)), dtype=dtype)
    wx = ax.weight.view(1, -1, 1).expand(1, len(ax), len(ay))
    wy = ay.weight.view(1, 1, -1).expand(1, len(ax), len(ay))
    previous: tuple[int, int, float] | None = None
    for k in range(len(az)):
        z0, z1, w = int(az.lower[k]), int(az.upper[k]), float(az.weight[k])
        if (z0, z1, w) != previous:  # consecutive output slices often read the same input slice
            labels, same = _corner_labels(grid_labels[z0], ax, ay)
            if w != 0.0:
                other, same_other = _corner_labels(grid_labels[z1], ax, ay)
                same &= same_other & (other == labels)
            xs, ys = torch.nonzero(~same, as_tuple=True)
            if len(xs):
                mixed = slabs[z0] if w == 0.0 else torch.lerp(slabs[z0], slabs[z1], az.weight[k])
                x0, x1, y0, y1 = ax.lower[xs], ax.upper[xs], ay.lower[ys], ay.upper[ys]
                at_y0 = torch.lerp(mixed[:, x0, y0], mixed[:, x1, y0], wx[0, xs, ys])
                at_y1 = torch.lerp(mixed[:, x0, y1], mixed[:, x1, y1], wx[0, xs, ys])
                labels[xs, ys] = first_argmax(torch.lerp(at_y0, at_y1, wy[0, xs, ys])).to(dtype)
            previous = (z0, z1, w)
        out[k] = labels
    return out.permute(1, 2, 0)


def _spacingd_axes(op: Mapping[str, Any], current_shape: Sequence[int],
                   current_affine: torch.Tensor) -> list[AxisWeights] | None:
    """Weights that invert a MONAI ``Spacingd`` record (``SpatialResample`` to its ``src_affine``), or None."""
    extra = op[TraceKeys.EXTRA_INFO]
    if extra.get("padding_mode") not in ("border", None) or str(extra.get("mode")) not in ("bilinear", "1"):
        return None
    size = [int(s) for s in op[TraceKeys.ORIG_SIZE]]
    if len(size) != 3:
        return None
    low = np.asarray(current_affine, dtype=np.float64)
    high = np.asarray(extra["src_affine"], dtype=np.float64)
    # voxel of the image grid -> voxel of the network grid (SpatialResample's own xform, inverse direction)
    xform = np.linalg.solve(low, high)
    linear = xform[:3, :3]
    if np.abs(linear - np.diag(np.diag(linear))).max() > AXIS_ALIGNED_TOL:
        return None
    return [AxisWeights.linear(xform[d, d] * np.arange(size[d]) + xform[d, 3], n)
            for d, n in enumerate(current_shape)]


def _resample_to_spacing_axes(op: Mapping[str, Any], current_shape: Sequence[int],
                              current_affine: torch.Tensor, resampler: Any) -> list[AxisWeights] | None:
    """Weights that invert a :class:`ResampleToSpacing` record (scipy zoom coordinates), or None."""
    extra = op[TraceKeys.EXTRA_INFO]
    if extra["mode"] == "nearest" or int(extra["mode"]) not in (0, 1):
        return None
    size = [int(s) for s in op[TraceKeys.ORIG_SIZE]]
    if len(size) != 3:
        return None
    order = int(extra["mode"])
    axis = separate_axis(_spacing(current_affine), extra["spacing"], resampler.anisotropy_threshold)
    axes = []
    for d, (n_in, n_out) in enumerate(zip(current_shape, size)):
        axis_order = resampler.order_z if d == axis else order
        ramp = np.arange(n_in, dtype=np.float64)
        # the resampler's own 1-D zoom of a ramp gives its coordinates (and its border rule) exactly
        coords = _zoom(ramp, (n_out,), axis_order) if n_in != n_out else ramp
        if axis_order == 0:
            axes.append(AxisWeights.nearest(np.rint(coords)))
        elif axis_order == 1:
            axes.append(AxisWeights.linear(coords, n_in))
        else:
            return None
    return axes


class InvertArgmaxd(MapTransform):
    """``Invertd`` of class probabilities followed by ``AsDiscreted(argmax=True)``, computed slab by slab.

    See the module docstring. The result is the label map on the image grid, channel first
    (``(1, *spatial)``, uint8, a ``MetaTensor`` with the image's affine), as the stock pair gives
    (which gives float32).

    Args:
        keys: the probabilities (``pred``).
        transform: the preprocessing whose recorded operations are inverted.
        orig_keys: the key the preprocessing recorded its operations on (``image``).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, transform: Compose, orig_keys: KeysCollection = "image",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.orig_keys = list(orig_keys) if isinstance(orig_keys, (list, tuple)) else [orig_keys] * len(self.keys)
        flat = transform.flatten().transforms if isinstance(transform, Compose) else [transform]
        self.invertibles = [t for t in flat if isinstance(t, InvertibleTransform)]
        self.fused_paths = 0
        self.stock_paths = 0

    def _inverse(self, transform: InvertibleTransform, value: MetaTensor, key: Hashable) -> MetaTensor:
        return transform.inverse({key: value})[key]

    def _stock(self, value: MetaTensor, key: Hashable, remaining: Sequence[InvertibleTransform], why: str) -> MetaTensor:
        self.stock_paths += 1
        logger.info("InvertArgmaxd: all probabilities inverted at full size (%s)", why)
        for transform in reversed(remaining):
            value = self._inverse(transform, value, key)
        labels = first_argmax(value.as_tensor() if isinstance(value, MetaTensor) else value)
        out = MetaTensor(labels[None].to(torch.uint8), meta=value.meta, applied_operations=value.applied_operations)
        return out

    def invert(self, pred: torch.Tensor, reference: MetaTensor, key: Hashable) -> MetaTensor:
        """The label map of ``pred`` on the grid ``reference`` (the preprocessed image) was resampled from."""
        value = pred.detach()
        value = value if isinstance(value, MetaTensor) else MetaTensor(value)
        value.applied_operations = deepcopy(reference.applied_operations)
        value.meta = deepcopy(reference.meta)
        if value.shape[0] - 1 > 255:
            return self._stock(value, key, self.invertibles, "more than 256 classes")
        resamplers = [i for i, t in enumerate(self.invertibles) if isinstance(t, (Spacingd, ResampleToSpacingd))]
        if len(resamplers) != 1:
            return self._stock(value, key, self.invertibles, f"{len(resamplers)} resampling transforms in the chain")
        index = resamplers[0]
        for transform in reversed(self.invertibles[index + 1:]):
            value = self._inverse(transform, value, key)
        resampler = self.invertibles[index]
        op = value.applied_operations[-1]
        shape = [int(s) for s in value.shape[1:]]
        if isinstance(resampler, Spacingd):
            axes = _spacingd_axes(op, shape, value.affine)
        else:
            axes = _resample_to_spacing_axes(op, shape, value.affine, resampler.resampler)
        if axes is None:
            return self._stock(value, key, self.invertibles[: index + 1], f"{op[TraceKeys.CLASS_NAME]} not axis-aligned linear")
        value.applied_operations.pop()
        labels = resampled_argmax(value.as_tensor(), axes)[None]
        if isinstance(resampler, Spacingd):
            affine = torch.as_tensor(op[TraceKeys.EXTRA_INFO]["src_affine"], dtype=torch.float64)
        else:
            affine = value.affine.to(torch.float64) @ _grid_affine(shape, [len(a) for a in axes])
        out = MetaTensor(labels, meta=value.meta, applied_operations=value.applied_operations)
        out.affine = affine
        # what precedes the resampling (orientation) applies to the label map as to labels
        out.applied_operations = convert_applied_interp_mode(out.applied_operations, mode="nearest", align_corners=None)
        for transform in reversed(self.invertibles[:index]):
            out = self._inverse(transform, out, key)
        self.fused_paths += 1
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, orig_key in self.key_iterator(d, self.orig_keys):
            reference = d.get(orig_key)
            if not isinstance(reference, MetaTensor):
                raise MedSegZooError(f"InvertArgmaxd: '{orig_key}' is not a MetaTensor carrying its preprocessing "
                                     "(load it with LoadImaged and keep it in the batch)")
            d[key] = self.invert(d[key], reference, orig_key)
        return d
