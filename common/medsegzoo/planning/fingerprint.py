"""Data-set fingerprint and plan, the nnU-Net way (simplified, documented).

The STU-Net/nnU-Net recipe normalises CT with statistics of the *training set's foreground*
(clip to the 0.5 / 99.5 percentiles, then z-score with the foreground mean and SD) and picks the
target spacing and patch size from the median spacing and shape. This module computes those
statistics from a datalist and writes them to JSON (the bundle's preprocessing step); the bundle
configs read them back.

Differences from nnU-Net v2's planner (kept on purpose, documented in the STU-Net bundle docs):

- foreground intensities are sampled uniformly (``samples_per_case`` voxels per case, seeded)
  rather than nnU-Net's 10 000 per case with its own RNG; percentiles agree to sampling error;
- the patch size is the median resampled shape, shrunk axis by axis (largest physical extent
  first) until it fits ``max_patch_voxels`` and rounded down to the network's divisibility, instead
  of nnU-Net's GPU-memory estimate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from medsegzoo.errors import DataValidationError
from medsegzoo.utils.atomic import atomic_write_json

__all__ = [
    "DatasetFingerprint",
    "compute_fingerprint",
    "load_fingerprint",
    "plan_patch_and_spacing",
    "save_fingerprint",
]


@dataclass
class DatasetFingerprint:
    """Intensity and geometry statistics of a training set.

    Attributes:
        num_cases: cases that contributed.
        modality: "CT" or "MR" (MR is normalised per image; the statistics are informational).
        mean, std: foreground intensity mean and SD (after no transformation).
        percentile_00_5, percentile_99_5: foreground intensity percentiles (CT clipping range).
        median_spacing: per-axis median voxel spacing in mm (RAS axis order of the files).
        median_shape: per-axis median shape in voxels.
        spacings, shapes: per case, in datalist order.
    """

    num_cases: int
    modality: str
    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    median_spacing: list[float]
    median_shape: list[int]
    spacings: list[list[float]] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)

    def normalization_kwargs(self) -> dict[str, float]:
        """Arguments of the nnU-Net CT normalisation (clip range, mean, SD)."""
        return {
            "lower": self.percentile_00_5,
            "upper": self.percentile_99_5,
            "mean": self.mean,
            "std": self.std,
        }


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else base_dir / p


def compute_fingerprint(
    cases: Iterable[Mapping[str, object]],
    base_dir: str | Path | None = None,
    modality: str = "CT",
    samples_per_case: int = 10_000,
    seed: int = 0,
) -> DatasetFingerprint:
    """Compute the fingerprint of labeled cases (datalist entries with ``image`` and ``label``).

    Args:
        cases: datalist entries; ``image`` and ``label`` paths, relative to ``base_dir``.
        base_dir: folder the datalist's relative paths start from.
        modality: "CT" or "MR".
        samples_per_case: foreground voxels sampled per case for the intensity statistics.
        seed: seed of the sampling.

    Raises:
        DataValidationError: no case, a case without a label, a label without foreground, or an
            image/label shape mismatch (each message names the file).
    """
    rng = np.random.default_rng(seed)
    base = Path(base_dir) if base_dir is not None else None
    samples: list[np.ndarray] = []
    spacings: list[list[float]] = []
    shapes: list[list[int]] = []
    for case in cases:
        if "image" not in case or "label" not in case:
            raise DataValidationError(f"fingerprint needs labeled cases; entry {dict(case)} has no image/label")
        image_path = _resolve(str(case["image"]), base)
        label_path = _resolve(str(case["label"]), base)
        image = nib.load(str(image_path))
        label = nib.load(str(label_path))
        if image.shape[:3] != label.shape[:3]:
            raise DataValidationError(
                f"{label_path}: label shape {label.shape} differs from image {image_path} shape {image.shape}"
            )
        foreground = np.asarray(label.dataobj) > 0
        if not foreground.any():
            raise DataValidationError(f"{label_path}: label has no foreground voxel")
        values = np.asarray(image.dataobj, dtype=np.float32)[foreground]
        take = min(samples_per_case, values.size)
        samples.append(rng.choice(values, size=take, replace=False))
        spacings.append([float(s) for s in image.header.get_zooms()[:3]])
        shapes.append([int(s) for s in image.shape[:3]])
    if not samples:
        raise DataValidationError("fingerprint: the datalist has no labeled case")
    pooled = np.concatenate(samples).astype(np.float64)
    return DatasetFingerprint(
        num_cases=len(samples),
        modality=modality.upper(),
        mean=float(pooled.mean()),
        std=float(pooled.std()),
        percentile_00_5=float(np.percentile(pooled, 0.5)),
        percentile_99_5=float(np.percentile(pooled, 99.5)),
        median_spacing=[float(v) for v in np.median(np.asarray(spacings), axis=0)],
        median_shape=[int(v) for v in np.median(np.asarray(shapes), axis=0)],
        spacings=spacings,
        shapes=shapes,
    )


def plan_patch_and_spacing(
    fingerprint: DatasetFingerprint,
    divisible_by: Sequence[int] = (32, 32, 32),
    max_patch_voxels: int = 128**3,
    anisotropy_threshold: float = 3.0,
) -> dict[str, list[float] | list[int]]:
    """Derive the target spacing and patch size from a fingerprint.

    Target spacing is the median spacing, except that a very coarse axis (more than
    ``anisotropy_threshold`` times the finest) takes the 10th percentile of that axis's spacings,
    as nnU-Net does, to avoid interpolating thick slices even more coarsely.

    Args:
        fingerprint: statistics of the training set.
        divisible_by: the network's divisibility per axis (STU-Net: 2**5 = 32 with 5 pools of 2).
        max_patch_voxels: voxel budget of one patch (memory proxy).
        anisotropy_threshold: ratio of coarsest to finest median spacing that counts as anisotropic.

    Returns:
        ``{"spacing": [...], "patch_size": [...]}``.
    """
    spacing = np.asarray(fingerprint.median_spacing, dtype=float)
    coarse = int(np.argmax(spacing))
    if spacing[coarse] > anisotropy_threshold * spacing.min() and fingerprint.spacings:
        spacing[coarse] = float(np.percentile([s[coarse] for s in fingerprint.spacings], 10))
    extent_mm = np.asarray(fingerprint.median_shape) * np.asarray(fingerprint.median_spacing)
    shape = np.maximum(np.round(extent_mm / spacing), 1).astype(int)
    div = np.asarray(divisible_by, dtype=int)
    patch = np.maximum((shape // div) * div, div)
    # shrink the axis with the largest physical extent until the budget is met
    while math.prod(int(v) for v in patch) > max_patch_voxels and (patch > div).any():
        extents = np.where(patch > div, patch * spacing, -1.0)
        patch[int(np.argmax(extents))] -= div[int(np.argmax(extents))]
    return {"spacing": [float(v) for v in spacing], "patch_size": [int(v) for v in patch]}


def save_fingerprint(fingerprint: DatasetFingerprint, path: str | Path, plan: Mapping | None = None) -> Path:
    """Write the fingerprint (and optionally the plan) to JSON atomically."""
    payload = asdict(fingerprint)
    if plan is not None:
        payload["plan"] = dict(plan)
    return atomic_write_json(path, payload)


def load_fingerprint(path: str | Path) -> DatasetFingerprint:
    """Read a fingerprint written by :func:`save_fingerprint`.

    Raises:
        DataValidationError: the file is missing or lacks a field (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(
            f"{path}: no data-set fingerprint; run the bundle's preprocessing step first"
        )
    payload = json.loads(path.read_text())
    payload.pop("plan", None)
    try:
        return DatasetFingerprint(**payload)
    except TypeError as err:
        raise DataValidationError(f"{path}: not a medsegzoo fingerprint ({err})") from None
