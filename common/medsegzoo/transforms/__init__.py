"""MONAI transforms shared by the bundles (array / dictionary pairs).

* intensity presets of the methods: :func:`intensity_preset` ("tct_ct", "universal_ct",
  "mr_zscore", "nnunet_ct")
* label conversion and validation: :class:`ConvertLabels` / :class:`ConvertLabelsd`,
  :class:`ValidateLabels` / :class:`ValidateLabelsd`
* partial labels: :class:`LabeledClassesMask` / :class:`LabeledClassesMaskd`;
  :class:`ForegroundUnion` / :class:`ForegroundUniond` (patch sampling on a multi-hot label)
* back to the image grid: :class:`InvertArgmaxd` (``Invertd`` of class probabilities and their
  argmax in one pass, a slice at a time; the same label map, several times faster)
* nnU-Net's pipeline where MONAI has no equivalent: resampling to the planned spacing
  (:class:`ResampleToSpacing` / :class:`ResampleToSpacingd`), patch crops with forced foreground
  (:class:`RandPatchCrop` / :class:`RandPatchCropd`) and the per-batch-slot oversampling that
  forces them (:class:`ForegroundOversamplingBatchSampler`, :class:`OversampledDataset`),
  rotation and isotropic scaling with separate probabilities (:class:`RandRotateScale` /
  :class:`RandRotateScaled`, :func:`nnunet_spatial_augmentation`)
"""

from __future__ import annotations

from medsegzoo.transforms.intensity import INTENSITY_PRESETS, intensity_preset
from medsegzoo.transforms.inverse_argmax import InvertArgmaxd, first_argmax, resampled_argmax
from medsegzoo.transforms.labels import (
    ConvertLabels,
    ConvertLabelsd,
    ValidateLabels,
    ValidateLabelsd,
)
from medsegzoo.transforms.oversampling import (
    ForegroundOversamplingBatchSampler,
    OversampledDataset,
    forces_foreground,
)
from medsegzoo.transforms.partial import (
    ForegroundUnion,
    ForegroundUniond,
    LabeledClassesMask,
    LabeledClassesMaskd,
)
from medsegzoo.transforms.patch_crop import RandPatchCrop, RandPatchCropd
from medsegzoo.transforms.resampling import ResampleToSpacing, ResampleToSpacingd
from medsegzoo.transforms.rotate_scale import (
    RandRotateScale,
    RandRotateScaled,
    initial_patch_size,
    nnunet_spatial_augmentation,
)

__all__ = [
    "INTENSITY_PRESETS",
    "InvertArgmaxd",
    "ConvertLabels",
    "ConvertLabelsd",
    "ForegroundOversamplingBatchSampler",
    "ForegroundUnion",
    "ForegroundUniond",
    "LabeledClassesMask",
    "LabeledClassesMaskd",
    "OversampledDataset",
    "RandPatchCrop",
    "RandPatchCropd",
    "RandRotateScale",
    "RandRotateScaled",
    "ResampleToSpacing",
    "ResampleToSpacingd",
    "ValidateLabels",
    "ValidateLabelsd",
    "forces_foreground",
    "initial_patch_size",
    "first_argmax",
    "intensity_preset",
    "nnunet_spatial_augmentation",
    "resampled_argmax",
]
