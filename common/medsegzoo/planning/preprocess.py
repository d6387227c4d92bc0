"""The preprocessing step of the STU-Net bundle: fingerprint a training split and write its plan.

One JSON file holds what the training and inference configs read back: the CT normalisation
statistics (foreground 0.5 / 99.5 percentiles, mean, SD) and the plan (target spacing, patch size,
pooling strides and convolution kernels) derived the nnU-Net way (:func:`plan_patch_and_spacing`).
Configs call :func:`ensure_plan` so that a training run computes the file when it does not exist
yet and reuses it otherwise (the same statistics for every resumed run and for inference), and
:func:`planned_pool_kernel_sizes` / :func:`planned_conv_kernel_sizes` for the network's strides
and kernels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsegzoo.data.datalist import load_split
from medsegzoo.errors import DataValidationError
from medsegzoo.planning.fingerprint import (
    compute_fingerprint,
    plan_patch_and_spacing,
    save_fingerprint,
)
from medsegzoo.planning.topology import (
    NNUNET_REFERENCE_GB,
    fit_conv_kernel_sizes,
    fit_pool_kernel_sizes,
)

__all__ = ["ensure_plan", "plan_training_set", "planned_conv_kernel_sizes", "planned_pool_kernel_sizes", "read_plan"]


def plan_training_set(
    datalist: str | os.PathLike,
    out_file: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    split: str = "training",
    modality: str = "CT",
    num_labels: int = 2,
    gpu_memory_gb: float = NNUNET_REFERENCE_GB,
    max_patch_voxels: int | None = None,
    samples_per_case: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fingerprint the labeled cases of one split and write fingerprint + plan atomically.

    Args:
        datalist: medsegzoo/MONAI datalist JSON.
        out_file: JSON file to write.
        dataset_dir: folder the datalist's relative paths start from.
        split: datalist key of the cases to fingerprint.
        modality: "CT" or "MR" (MR and mixed CT+MR use per-image z-score; the statistics are
            then informational).
        num_labels: classes including background (nnU-Net's patch-size estimate counts them).
        gpu_memory_gb: GPU memory target of nnU-Net's patch-size estimate (its default 8 GB, what
            A-Eval's "automatically configured" patch sizes were planned with).
        max_patch_voxels: a plain voxel budget for the patch instead of nnU-Net's estimate.
        samples_per_case: foreground voxels sampled per case for the intensity statistics.
        seed: seed of the sampling.

    Returns:
        The written payload: fingerprint fields plus ``"plan"`` (``spacing``, ``patch_size``,
        ``pool_kernel_sizes``, ``conv_kernel_sizes``, ``median_shape``).

    Raises:
        DataValidationError: the split has no labeled case, or a case is unusable (names the file).
    """
    cases = [c for c in load_split(datalist, split, base_dir=dataset_dir) if "label" in c]
    if not cases:
        raise DataValidationError(
            f"{datalist}: split {split!r} has no case with a 'label' map to fingerprint "
            "(per-class-mask layouts must be converted to label maps first)"
        )
    fingerprint = compute_fingerprint(cases, None, modality, samples_per_case, seed)
    plan = plan_patch_and_spacing(fingerprint, num_labels, gpu_memory_gb, max_patch_voxels)
    save_fingerprint(fingerprint, out_file, plan=plan)
    return read_plan(out_file, full=True)


def read_plan(path: str | os.PathLike, full: bool = False) -> dict[str, Any]:
    """Read the plan (``spacing``, ``patch_size``, strides, kernels) written by :func:`plan_training_set`.

    Args:
        path: the JSON file.
        full: return the whole payload (fingerprint fields and ``plan``) instead.

    Raises:
        DataValidationError: missing file or no plan in it (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no data-set plan; run the bundle's preprocessing step first")
    payload = json.loads(path.read_text(encoding="utf-8"))
    if "plan" not in payload:
        raise DataValidationError(f"{path}: fingerprint without a 'plan' entry; rerun the preprocessing step")
    return payload if full else dict(payload["plan"])


def ensure_plan(
    out_file: str | os.PathLike,
    datalist: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    recompute: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Read the fingerprint and plan at ``out_file``, computing them first when the file is missing.

    Args:
        out_file: fingerprint JSON.
        datalist: datalist to fingerprint when the file is missing.
        dataset_dir: base folder of the datalist's paths.
        recompute: recompute even when the file exists.
        **kwargs: passed to :func:`plan_training_set`.

    Returns:
        The payload of :func:`read_plan` with ``full=True`` (statistics and ``"plan"``).
    """
    if recompute or not Path(out_file).is_file():
        return plan_training_set(datalist, out_file, dataset_dir, **kwargs)
    return read_plan(out_file, full=True)



def _planned(plan: Mapping[str, Any] | str | os.PathLike, key: str) -> list[list[int]] | None:
    """``plan[key]`` of a payload or a fingerprint file; None when there is no plan or no such entry."""
    if not isinstance(plan, Mapping):
        path = Path(plan)
        if not path.is_file():
            return None
        plan = json.loads(path.read_text(encoding="utf-8"))
    entries = plan.get("plan", plan)
    return entries.get(key) if isinstance(entries, Mapping) else None


def planned_pool_kernel_sizes(plan: Mapping[str, Any] | str | os.PathLike, num_pools: int = 5) -> list[list[int]]:
    """The plan's pooling strides for a network with ``num_pools`` downsamplings.

    The first ``num_pools`` planned strides, padded with ``[1, 1, 1]`` (as the official STU-Net
    trainers adapt an nnU-Net plan). Without a plan (a network built before any preprocessing, as
    the model zoo's checks do) or with a plan written before strides were planned, the strides are
    2 on every axis, which is also what such older models were trained with.

    Args:
        plan: the payload of :func:`read_plan` (``full=True`` or not), or the fingerprint file.
        num_pools: downsamplings of the network (STU-Net: 5).
    """
    pools = _planned(plan, "pool_kernel_sizes")
    return fit_pool_kernel_sizes(pools, num_pools) if pools else [[2, 2, 2] for _ in range(num_pools)]


def planned_conv_kernel_sizes(plan: Mapping[str, Any] | str | os.PathLike, num_stages: int = 6) -> list[list[int]]:
    """The plan's per-stage convolution kernels for a network with ``num_stages`` stages.

    nnU-Net's planned kernels (1-wide on a coarse axis), cut to ``num_stages`` or padded with 3x3x3;
    3x3x3 everywhere without a plan. (STU-Net's paper and official trainers use 3x3x3 in every
    stage whatever the plan; the bundle makes these planned kernels an option.)
    """
    kernels = _planned(plan, "conv_kernel_sizes")
    return fit_conv_kernel_sizes(kernels, num_stages) if kernels else [[3, 3, 3] for _ in range(num_stages)]
