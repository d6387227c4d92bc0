"""Data-set fingerprint and plan, the nnU-Net way.

The STU-Net/nnU-Net recipe normalises CT with statistics of the *training set's foreground*
(clip to the 0.5 / 99.5 percentiles, then z-score with the foreground mean and SD) and plans the
target spacing, the patch size and the network's strides and kernels from the spacings and shapes
of the training cases. This module computes those statistics from a datalist and writes them to
JSON (the bundle's preprocessing step); the bundle configs read them back.

The plan follows nnU-Net v2's planner (``ExperimentPlanner`` in the nnU-Net copy of the STU-Net
repository): target spacing = median spacing, except a thick-slice axis that also has few voxels,
which takes the 10th percentile of its spacings; median shape of the cases resampled to it; patch,
strides and kernels from :func:`medsegzoo.planning.topology.plan_patch_size` (nnU-Net's 8 GB
feature-map estimate). Spacings and shapes are read in the RAS axis order the bundles train in, and
the planning itself runs in nnU-Net's axis order (reversed, coarsest axis first) so that ties break
as they do there.

Differences from nnU-Net v2 (documented in the STU-Net bundle docs):

- foreground intensities are sampled uniformly (``samples_per_case`` voxels per case, seeded)
  rather than nnU-Net's 10^8 / cases per case with replacement; percentiles agree to sampling error;
- shapes are those of the files, not of the images cropped to their non-zero box (for CT the box
  is practically the whole image).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medsegzoo.errors import DataValidationError
from medsegzoo.planning.topology import NNUNET_REFERENCE_GB, plan_patch_size
from medsegzoo.utils.atomic import atomic_write_json

__all__ = [
    "DatasetFingerprint",
    "compute_fingerprint",
    "load_fingerprint",
    "nnunet_target_spacing",
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
        median_spacing: per-axis median voxel spacing in mm (axes of the images reoriented to RAS,
            as the bundles load them).
        median_shape: per-axis median shape in voxels (same axes).
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


def _ras_spacing_and_shape(image: nib.spatialimages.SpatialImage) -> tuple[list[float], list[int]]:
    """Spacing and shape in the axis order of the image reoriented to RAS (what the bundles train on)."""
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    shape = [int(n) for n in image.shape[:3]]
    ras_axis = nib.orientations.io_orientation(image.affine)[:, 0].astype(int)  # voxel axis -> RAS axis
    spacing_ras, shape_ras = [0.0] * 3, [0] * 3
    for voxel_axis, axis in enumerate(ras_axis):
        spacing_ras[axis], shape_ras[axis] = zooms[voxel_axis], shape[voxel_axis]
    return spacing_ras, shape_ras


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
        spacing, shape = _ras_spacing_and_shape(image)
        spacings.append(spacing)
        shapes.append(shape)
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


def nnunet_target_spacing(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[float]],
    anisotropy_threshold: float = 3.0,
) -> list[float]:
    """nnU-Net v2's target spacing (``ExperimentPlanner.determine_fullres_target_spacing``).

    The median spacing per axis, except when the coarsest axis is both more than
    ``anisotropy_threshold`` times coarser than every other axis and has fewer than a third of
    their voxels: then it takes the 10th percentile of its spacings (no coarser than the other axes
    + 1e-5), so thick slices are not interpolated even more coarsely.

    Args:
        spacings: per case, spacing per axis.
        shapes: per case, shape per axis.
        anisotropy_threshold: nnU-Net's 3.
    """
    spacing_table = np.asarray(spacings, dtype=float)
    target = np.percentile(spacing_table, 50, axis=0)
    target_size = np.percentile(np.asarray(shapes, dtype=float), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    other_spacing = max(target[a] for a in others)
    anisotropic_spacing = target[worst] > anisotropy_threshold * other_spacing
    few_voxels = target_size[worst] * anisotropy_threshold < min(target_size[a] for a in others)
    if anisotropic_spacing and few_voxels:
        coarse = float(np.percentile(spacing_table[:, worst], 10))
        if coarse < other_spacing:  # never finer than the other axes
            coarse = max(other_spacing, coarse) + 1e-5
        target[worst] = coarse
    return [float(v) for v in target]


def plan_patch_and_spacing(
    fingerprint: DatasetFingerprint,
    num_labels: int = 2,
    gpu_memory_gb: float = NNUNET_REFERENCE_GB,
    max_patch_voxels: int | None = None,
    anisotropy_threshold: float = 3.0,
) -> dict[str, Any]:
    """Plan the target spacing, patch size, strides and kernels of a training set (nnU-Net v2).

    Args:
        fingerprint: statistics of the training set (per-case spacings and shapes in RAS order).
        num_labels: classes including background (nnU-Net's memory estimate counts them).
        gpu_memory_gb: GPU memory target of the patch size (nnU-Net's default 8).
        max_patch_voxels: a plain voxel budget for the patch instead of nnU-Net's estimate.
        anisotropy_threshold: nnU-Net's 3 (target spacing of thick-slice sets).

    Returns:
        ``{"spacing", "patch_size", "pool_kernel_sizes", "conv_kernel_sizes", "median_shape"}``
        in RAS axis order; ``pool_kernel_sizes`` lists every planned downsampling (a network with
        a fixed number of stages takes :func:`medsegzoo.planning.topology.fit_pool_kernel_sizes`).
    """
    spacings = np.asarray(fingerprint.spacings or [fingerprint.median_spacing], dtype=float)
    shapes = np.asarray(fingerprint.shapes or [fingerprint.median_shape], dtype=float)
    # nnU-Net reads arrays as (z, y, x): plan in that (reversed) order, then transpose as nnU-Net
    # does (coarsest axis first, the others in order), so ties between axes break as there
    spacings, shapes = spacings[:, ::-1], shapes[:, ::-1]
    target = nnunet_target_spacing(spacings, shapes, anisotropy_threshold)
    resampled = [[round(s / t * n) for s, t, n in zip(sp, target, sh)] for sp, sh in zip(spacings, shapes)]
    median_shape = np.median(np.asarray(resampled, dtype=float), axis=0)
    coarsest = int(np.argmax(target))
    forward = [coarsest] + [a for a in range(3) if a != coarsest]
    topology = plan_patch_size([target[a] for a in forward], [median_shape[a] for a in forward], num_labels,
                               gpu_memory_gb, max_patch_voxels)
    ras_axis = [2 - a for a in forward]  # the RAS axis of each planned axis

    def to_ras(values: Sequence[Any]) -> list[Any]:
        out: list[Any] = [None] * 3
        for planned, axis in enumerate(ras_axis):
            out[axis] = values[planned]
        return out

    return {
        "spacing": [float(v) for v in target[::-1]],
        "patch_size": [int(v) for v in to_ras(topology.patch_size)],
        "pool_kernel_sizes": [to_ras(p) for p in topology.pool_kernel_sizes],
        "conv_kernel_sizes": [to_ras(k) for k in topology.conv_kernel_sizes],
        "median_shape": [float(v) for v in median_shape[::-1]],
    }


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
