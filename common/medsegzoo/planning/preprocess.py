"""The preprocessing step of the STU-Net bundle: fingerprint a training split and write its plan.

One JSON file holds what the training and inference configs read back: the CT normalisation
statistics (foreground 0.5 / 99.5 percentiles, mean, SD) and the plan (target spacing and patch
size) derived from the median spacing and shape (:func:`plan_patch_and_spacing`). Configs call
:func:`ensure_plan` so that a training run computes the file when it does not exist yet and
reuses it otherwise (the same statistics for every resumed run and for inference).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsegzoo.data.datalist import load_split
from medsegzoo.errors import DataValidationError
from medsegzoo.planning.fingerprint import (
    compute_fingerprint,
    plan_patch_and_spacing,
    save_fingerprint,
)

__all__ = ["ensure_plan", "plan_training_set", "read_plan"]


def plan_training_set(
    datalist: str | os.PathLike,
    out_file: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    split: str = "training",
    modality: str = "CT",
    divisible_by: Sequence[int] = (32, 32, 32),
    max_patch_voxels: int = 128**3,
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
        divisible_by: the network's divisibility per axis (STU-Net with five pools of 2: 32).
        max_patch_voxels: voxel budget of a patch (memory proxy; 128**3 suits a 24 GB GPU with
            STU-Net-B, smaller for L/H).
        samples_per_case: foreground voxels sampled per case for the intensity statistics.
        seed: seed of the sampling.

    Returns:
        The written payload: fingerprint fields plus ``"plan"`` (``spacing``, ``patch_size``).

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
    plan = plan_patch_and_spacing(fingerprint, divisible_by, max_patch_voxels)
    save_fingerprint(fingerprint, out_file, plan=plan)
    return read_plan(out_file, full=True)


def read_plan(path: str | os.PathLike, full: bool = False) -> dict[str, Any]:
    """Read the plan (``spacing``, ``patch_size``) written by :func:`plan_training_set`.

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

