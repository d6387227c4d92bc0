"""MONAI transforms shared by the bundles (array / dictionary pairs).

* intensity presets of the methods: :func:`intensity_preset` ("tct_ct", "universal_ct",
  "mr_zscore", "nnunet_ct")
* label conversion and validation: :class:`ConvertLabels` / :class:`ConvertLabelsd`,
  :class:`ValidateLabels` / :class:`ValidateLabelsd`
* partial labels: :class:`LabeledClassesMask` / :class:`LabeledClassesMaskd`;
  :class:`ForegroundUnion` / :class:`ForegroundUniond` (patch sampling on a multi-hot label)
"""

from __future__ import annotations

from medsegzoo.transforms.intensity import INTENSITY_PRESETS, intensity_preset
from medsegzoo.transforms.labels import (
    ConvertLabels,
    ConvertLabelsd,
    ValidateLabels,
    ValidateLabelsd,
)
from medsegzoo.transforms.partial import (
    ForegroundUnion,
    ForegroundUniond,
    LabeledClassesMask,
    LabeledClassesMaskd,
)

__all__ = [
    "INTENSITY_PRESETS",
    "ConvertLabels",
    "ConvertLabelsd",
    "ForegroundUnion",
    "ForegroundUniond",
    "LabeledClassesMask",
    "LabeledClassesMaskd",
    "ValidateLabels",
    "ValidateLabelsd",
    "intensity_preset",
]
