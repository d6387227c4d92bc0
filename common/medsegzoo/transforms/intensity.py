"""Intensity normalisation presets of the four methods, built from MONAI transforms.

==============  =================================================================
preset          what it does (REFERENCE.md)
==============  =================================================================
``tct_ct``      HU clipped to [-1024, 1024], scaled to [0, 1] (TCT, section 1)
``universal_ct`` HU clipped to [-175, 250], scaled to [0, 1] (Universal Model, section 2)
``mr_zscore``   per-image z-score over non-zero voxels, per channel (MR; TCSeg)
``zscore``      per-image z-score over all voxels, per channel (STU-Net/nnU-Net MR and CT+MR)
``nnunet_ct``   clip to the data set's foreground 0.5 / 99.5 percentiles, then z-score
                with the data set's foreground mean and SD (STU-Net / nnU-Net CT, section 3)
==============  =================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.transforms import (
    NormalizeIntensity,
    NormalizeIntensityd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    Transform,
)

from medsegzoo.errors import MedSegZooError, UnknownNameError

__all__ = ["INTENSITY_PRESETS", "intensity_preset"]

# fixed CT windows: (HU min, HU max), scaled to [0, 1] with clipping
_CT_WINDOWS: dict[str, tuple[float, float]] = {
    "tct_ct": (-1024.0, 1024.0),
    "universal_ct": (-175.0, 250.0),
}
INTENSITY_PRESETS: tuple[str, ...] = ("tct_ct", "universal_ct", "mr_zscore", "zscore", "nnunet_ct")

# names the data set statistics may come under (planning.DatasetFingerprint uses the first)
_STAT_ALIASES: dict[str, tuple[str, ...]] = {
    "lower": ("lower", "percentile_00_5"),
    "upper": ("upper", "percentile_99_5"),
    "mean": ("mean",),
    "std": ("std", "sd"),
}


def _stat(stats: dict[str, Any], name: str) -> float:
    for key in _STAT_ALIASES[name]:
        if key in stats and stats[key] is not None:
            return float(stats[key])
    raise MedSegZooError(
        f"intensity preset 'nnunet_ct' needs the data set statistic {name!r} "
        f"(accepted keys: {', '.join(_STAT_ALIASES[name])}); got {sorted(stats)}. "
        "Compute them with medsegzoo.planning (data set fingerprint)."
    )


def _scale_range(
    keys: Sequence[str] | str | None, a_min: float, a_max: float, b_min: float, b_max: float
) -> Transform:
    if keys is None:
        return ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=True)
    return ScaleIntensityRanged(
        keys=keys, a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=True
    )


def intensity_preset(
    name: str, *, keys: Sequence[str] | str | None = None, **stats: Any
) -> Transform:
    """Return the MONAI transform of a method's intensity normalisation.

    Args:
        name: "tct_ct", "universal_ct", "mr_zscore" or "nnunet_ct".
        keys: None for the array transform; image key(s) for the dictionary transform.
        **stats: for "nnunet_ct": ``lower`` / ``upper`` (or ``percentile_00_5`` /
            ``percentile_99_5``), ``mean`` and ``std`` of the training set's foreground
            intensities (``DatasetFingerprint.normalization_kwargs()``).

    Returns:
        A MONAI transform (array or dictionary form).

    Raises:
        UnknownNameError: unknown preset.
        MedSegZooError: "nnunet_ct" without its statistics, or with a non-positive SD or an
            empty clipping range.
    """
    if name in _CT_WINDOWS:
        low, high = _CT_WINDOWS[name]
        return _scale_range(keys, low, high, 0.0, 1.0)
    if name in ("mr_zscore", "zscore"):
        nonzero = name == "mr_zscore"
        if keys is None:
            return NormalizeIntensity(nonzero=nonzero, channel_wise=True)
        return NormalizeIntensityd(keys=keys, nonzero=nonzero, channel_wise=True)
    if name == "nnunet_ct":
        lower, upper = _stat(stats, "lower"), _stat(stats, "upper")
        mean, std = _stat(stats, "mean"), _stat(stats, "std")
        if not std > 0 or not upper > lower:
            raise MedSegZooError(
                f"intensity preset 'nnunet_ct': need std > 0 and upper > lower, got "
                f"std={std}, lower={lower}, upper={upper}"
            )
        # clip(x, lower, upper) followed by (x - mean) / std is one clipped linear map:
        # [lower, upper] -> [(lower - mean) / std, (upper - mean) / std]; a single MONAI
        # transform does it in one pass over the volume.
        return _scale_range(keys, lower, upper, (lower - mean) / std, (upper - mean) / std)
    raise UnknownNameError(
        f"unknown intensity preset {name!r}; known presets: {', '.join(INTENSITY_PRESETS)}"
    )
