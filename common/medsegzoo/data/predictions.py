"""Where the prediction of a case is written, and read back: one rule for every bundle.

A prediction is ``<output_dir>/<case_id>.nii.gz``: a label map in the bundle's label system, on
the grid of the input image (same shape and affine). Case ids are unique within a datalist,
unlike image file names (KiTS19's ``case_xxxxx/imaging.nii.gz``, TotalSegmentator's
``sxxxx/ct.nii.gz``), so predictions of different cases never overwrite each other, and the
evaluation pairs a prediction with its ground truth by the same id (as nnU-Net names its
predictions by case identifier). Per-class masks, when asked for, go to
``<output_dir>/<case_id>/segmentations/<class>.nii.gz`` (the AbdomenAtlas / Touchstone layout
the evaluation also reads).

The inference writer (:class:`medsegzoo.transforms.io.SavePredictiond`) and the scorer
(:func:`medsegzoo.evaluation.scoring.score_predictions`) both call these functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsegzoo.errors import DataValidationError

__all__ = ["PREDICTION_SUFFIX", "case_id_of", "class_mask_path", "prediction_path"]

PREDICTION_SUFFIX = ".nii.gz"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def case_id_of(entry: Mapping[str, Any]) -> str:
    """The case id of a datalist entry (its ``case_id``).

    Raises:
        DataValidationError: the entry has no ``case_id``.
    """
    case_id = entry.get("case_id")
    if case_id is None or str(case_id) == "":
        raise DataValidationError(
            f"datalist entry {dict(entry).get('image', entry)!r} has no 'case_id'; medsegzoo datalists name every case"
        )
    return str(case_id)


def _file_name(case_id: str) -> str:
    name = _UNSAFE.sub("_", str(case_id)).strip("._")
    if not name:
        raise DataValidationError(f"case id {case_id!r} gives no usable file name")
    return name


def prediction_path(output_dir: str | os.PathLike, case_id: str) -> Path:
    """The label-map file of a case: ``<output_dir>/<case_id>.nii.gz`` (unsafe characters -> ``_``)."""
    return Path(output_dir) / f"{_file_name(case_id)}{PREDICTION_SUFFIX}"


def class_mask_path(output_dir: str | os.PathLike, case_id: str, class_name: str) -> Path:
    """The per-class mask file of a case: ``<output_dir>/<case_id>/segmentations/<class>.nii.gz``."""
    return Path(output_dir) / _file_name(case_id) / "segmentations" / f"{_file_name(class_name)}{PREDICTION_SUFFIX}"
