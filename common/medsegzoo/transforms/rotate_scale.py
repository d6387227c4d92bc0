"""nnU-Net's spatial augmentation: rotation and isotropic scaling with separate probabilities.

nnU-Net v2 (``nnUNetTrainer.get_training_transforms``: batchgenerators' ``SpatialTransform`` with
``p_rot_per_sample`` 0.2, ``p_scale_per_sample`` 0.2, ``independent_scale_for_each_axis`` False,
``random_crop`` False) crops a patch *larger* than the network's (``initial patch size``, room for
the rotation), then, per sample:

* rotates with probability 0.2 (each axis's angle uniform in +-30 degrees; for a very anisotropic
  patch, "dummy 2D": only in-plane, +-180 degrees about the coarse axis);
* scales with probability 0.2, independently of the rotation, by one factor for all axes
  (in-plane only in dummy 2D): below 1 (zoom in, 0.7-1) or above 1 (zoom out, 1-1.4) with equal
  chance;
* samples the network's patch at the centre in one interpolation (third order for images, label
  maps label by label with linear interpolation, zeros outside), or simply cuts the centre when
  neither was drawn.

MONAI's ``RandAffine`` draws every parameter under one probability and scales each axis by its
own factor; this transform draws the nnU-Net way and resamples with MONAI's ``AffineGrid`` and
``Resample`` (``mode`` 3 uses scipy's spline interpolation, as batchgenerators does).
:func:`nnunet_spatial_augmentation` gives the angles, the scaled axes and the initial patch size
for a plan, as nnU-Net's ``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` does.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import AffineGrid, MapTransform, RandomizableTransform, Resample
from monai.utils import ensure_tuple_rep

__all__ = ["RandRotateScale", "RandRotateScaled", "initial_patch_size", "nnunet_spatial_augmentation"]

NNUNET_ROTATION = math.radians(30.0)
NNUNET_DUMMY_2D_ROTATION = math.pi
# nnU-Net decides on dummy-2D augmentation with its anisotropy threshold
ANISOTROPY_THRESHOLD = 3.0
# nnU-Net sizes the initial patch for a scale range of (0.85, 1.25), not the (0.7, 1.4) it draws from
PATCH_SIZE_SCALE_RANGE = (0.85, 1.25)


def _rotated_extent(size: Sequence[float], axis: int, angle: float) -> np.ndarray:
    """|size vector rotated about ``axis``| (batchgenerators' ``rotate_coords_3d`` with one angle)."""
    c, s = math.cos(angle), math.sin(angle)
    matrices = {
        0: np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        1: np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        2: np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }
    # a row vector times the matrix, as batchgenerators rotates coordinates
    return np.abs(np.asarray(size, dtype=float) @ matrices[axis])


def initial_patch_size(
    patch_size: Sequence[int],
    rotate_range: Sequence[Sequence[float]],
    scale_range: Sequence[float] = PATCH_SIZE_SCALE_RANGE,
) -> list[int]:
    """The patch to crop before rotating and scaling so that the network's patch stays inside it.

    nnU-Net's ``get_patch_size``: the patch's extent vector rotated by the largest angle about each
    axis in turn (at most 90 degrees), the element-wise maximum, divided by the smallest scale.

    Args:
        patch_size: the network's patch.
        rotate_range: per axis ``(low, high)`` angle in radians (rotation about that axis).
        scale_range: the range whose minimum enlarges the patch (nnU-Net uses (0.85, 1.25)).
    """
    extent = np.asarray(patch_size, dtype=float)
    for axis, (low, high) in enumerate(rotate_range):
        angle = min(math.pi / 2, max(abs(low), abs(high)))
        extent = np.maximum(extent, _rotated_extent(patch_size, axis, angle))
    return [int(v) for v in extent / min(scale_range)]


def nnunet_spatial_augmentation(
    patch_size: Sequence[int], spacing: Sequence[float], anisotropy_threshold: float = ANISOTROPY_THRESHOLD
) -> dict[str, Any]:
    """Rotation ranges, scaled axes and initial patch size nnU-Net uses for a plan.

    The coarse axis is the one with the largest spacing (nnU-Net's first axis after its transpose).
    When the patch is more than ``anisotropy_threshold`` times longer in-plane than along it, nnU-Net
    augments in 2D: rotation only about the coarse axis (+-180 degrees), scaling only in-plane, and the
    initial patch keeps the network's size on the coarse axis.

    Returns:
        ``{"dummy_2d", "rotate_range", "scale_axes", "initial_patch_size"}`` in the axes of ``patch_size``.
    """
    coarse = int(np.argmax(spacing))
    dummy_2d = max(patch_size) / patch_size[coarse] > anisotropy_threshold
    if dummy_2d:
        rotate_range = [[-NNUNET_DUMMY_2D_ROTATION, NNUNET_DUMMY_2D_ROTATION] if a == coarse else [0.0, 0.0]
                        for a in range(len(patch_size))]
        scale_axes = [a for a in range(len(patch_size)) if a != coarse]
    else:
        rotate_range = [[-NNUNET_ROTATION, NNUNET_ROTATION] for _ in patch_size]
        scale_axes = list(range(len(patch_size)))
    initial = initial_patch_size(patch_size, rotate_range)
    if dummy_2d:
        initial[coarse] = int(patch_size[coarse])
    return {"dummy_2d": bool(dummy_2d), "rotate_range": rotate_range, "scale_axes": scale_axes,
            "initial_patch_size": initial}


class RandRotateScale(RandomizableTransform):
    """Rotate and/or scale (separate probabilities), then take the centred ``spatial_size`` patch.

    Args:
        spatial_size: the output (network) patch; the input is the larger initial patch.
        rotate_range: per axis ``(low, high)`` angle in radians of the rotation about that axis.
        scale_range: ``(low, high)`` of the isotropic factor (> 1 zooms out, as nnU-Net's).
        prob_rotate: probability of a rotation (nnU-Net 0.2).
        prob_scale: probability of a scaling, drawn independently (nnU-Net 0.2).
        scale_axes: the axes the factor applies to (all; the in-plane ones in dummy 2D).
        mode: interpolation of intensities: spline order (nnU-Net 3) or a torch mode name.
        label_order: 1 interpolates label maps label by label (nnU-Net), 0 takes the nearest label.
    """

    def __init__(
        self,
        spatial_size: Sequence[int],
        rotate_range: Sequence[Sequence[float]] = ((-NNUNET_ROTATION, NNUNET_ROTATION),) * 3,
        scale_range: Sequence[float] = (0.7, 1.4),
        prob_rotate: float = 0.2,
        prob_scale: float = 0.2,
        scale_axes: Sequence[int] | None = None,
        mode: int | str = 3,
        label_order: int = 1,
    ) -> None:
        # the probabilities are drawn in randomize(); prob=1 keeps MONAI's flag out of the way
        RandomizableTransform.__init__(self, prob=1.0)
        self.spatial_size = [int(s) for s in spatial_size]
        self.rotate_range = [tuple(float(v) for v in r) for r in rotate_range]
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.prob_rotate = prob_rotate
        self.prob_scale = prob_scale
        self.scale_axes = list(range(len(self.spatial_size))) if scale_axes is None else [int(a) for a in scale_axes]
        self.mode = mode
        self.label_order = label_order
        self.angles = [0.0] * len(self.spatial_size)
        self.scale = 1.0
        self.resampler = Resample()

    def _draw_scale(self) -> float:
        low, high = self.scale_range
        # batchgenerators: half the draws zoom in (low..1), half zoom out (1..high)
        if self.R.uniform() < 0.5 and low < 1:
            return float(self.R.uniform(low, 1.0))
        return float(self.R.uniform(max(low, 1.0), high))

    def randomize(self, data: Any = None) -> None:
        rotate = self.R.uniform() < self.prob_rotate
        scale = self.R.uniform() < self.prob_scale
        self._do_transform = bool(rotate or scale)
        self.angles = [float(self.R.uniform(low, high)) if rotate else 0.0 for low, high in self.rotate_range]
        self.scale = self._draw_scale() if scale else 1.0

    def _grid(self) -> torch.Tensor:
        factors = [self.scale if a in self.scale_axes else 1.0 for a in range(len(self.spatial_size))]
        grid, _ = AffineGrid(rotate_params=self.angles, scale_params=factors)(spatial_size=self.spatial_size)
        return grid

    def _centre(self, img: torch.Tensor) -> torch.Tensor:
        starts = [(n - s) // 2 for n, s in zip(img.shape[1:], self.spatial_size)]
        if min(starts) < 0:
            raise ValueError(f"input {list(img.shape[1:])} is smaller than the patch {self.spatial_size}")
        index = (slice(None), *(slice(b, b + s) for b, s in zip(starts, self.spatial_size)))
        return img[index].clone()

    def apply(self, img: torch.Tensor, is_label: bool = False, grid: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the drawn parameters to one image (or label map)."""
        img = torch.as_tensor(img)
        if not self._do_transform:
            return self._centre(img)
        grid = self._grid() if grid is None else grid
        if not is_label:
            padding = "constant" if isinstance(self.mode, int) else "zeros"  # scipy vs torch names of zero fill
            return torch.as_tensor(self.resampler(img.float(), grid=grid, mode=self.mode, padding_mode=padding))
        if self.label_order == 0:
            return torch.as_tensor(self.resampler(img, grid=grid, mode="nearest", padding_mode="zeros"))
        out = torch.zeros((img.shape[0], *self.spatial_size), dtype=img.dtype)
        for value in torch.unique(img):  # ascending: a later label wins where two reach 0.5
            mask = self.resampler((img == value).float(), grid=grid, mode="bilinear", padding_mode="zeros")
            out[torch.as_tensor(mask) >= 0.5] = value
        return out

    def __call__(self, img: torch.Tensor, is_label: bool = False, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        return self.apply(img, is_label)


class RandRotateScaled(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandRotateScale` (one draw for all keys).

    Args:
        keys: keys to transform (``image``, ``label``).
        is_label: per key (or one for all): label maps use ``label_order``.
        spatial_size, rotate_range, scale_range, prob_rotate, prob_scale, scale_axes, mode,
            label_order: as :class:`RandRotateScale`.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        is_label: bool | Sequence[bool] = False,
        rotate_range: Sequence[Sequence[float]] = ((-NNUNET_ROTATION, NNUNET_ROTATION),) * 3,
        scale_range: Sequence[float] = (0.7, 1.4),
        prob_rotate: float = 0.2,
        prob_scale: float = 0.2,
        scale_axes: Sequence[int] | None = None,
        mode: int | str = 3,
        label_order: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.is_label = ensure_tuple_rep(is_label, len(self.keys))
        self.rotate_scale = RandRotateScale(spatial_size, rotate_range, scale_range, prob_rotate, prob_scale,
                                            scale_axes, mode, label_order)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandRotateScaled:
        super().set_random_state(seed, state)
        self.rotate_scale.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.rotate_scale.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        grid = self.rotate_scale._grid() if self.rotate_scale._do_transform else None
        for key, is_label in self.key_iterator(d, self.is_label):
            d[key] = self.rotate_scale.apply(d[key], is_label, grid)
        return d
