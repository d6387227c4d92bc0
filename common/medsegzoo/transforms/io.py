"""Writing predictions: one label map per case, optionally one mask per class, atomically.

:class:`SavePrediction` / :class:`SavePredictiond` replace MONAI's ``SaveImaged`` at the end of
every bundle's inference post-processing, for two reasons:

* the file name comes from :func:`medsegzoo.data.predictions.prediction_path` (the case id),
  the same function the scorer reads with, instead of the input image's file name, which
  several public layouts repeat for every case (``imaging.nii.gz``, ``ct.nii.gz``);
* files are written through a temporary file and a rename, so a killed inference never
  leaves a truncated prediction that a later evaluation would read.

The label map is written on the grid its MetaTensor carries (after ``Invertd``: the input
image's own shape, affine and orientation), as uint8 (uint16 above 255 classes).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from medsegzoo.data.predictions import class_mask_path, prediction_path
from medsegzoo.errors import DataValidationError
from medsegzoo.utils.atomic import atomic_path

__all__ = ["SavePrediction", "SavePredictiond", "write_label_map"]


def _affine_of(label: Any) -> np.ndarray:
    meta = getattr(label, "meta", None) or {}
    affine = meta.get("affine")
    if affine is None:
        affine = getattr(label, "affine", None)
    if affine is None:
        return np.eye(4)
    return np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)


def write_label_map(path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray) -> Path:
    """Write an integer label map as NIfTI atomically (uint8, or uint16 above 255)."""
    array = np.asarray(labels)
    dtype = np.uint8 if array.size == 0 or int(array.max(initial=0)) <= 255 else np.uint16
    image = nib.Nifti1Image(array.astype(dtype, copy=False), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)


class SavePrediction(Transform):
    """Write a label-map prediction ``(1, *spatial)`` or ``(*spatial)`` for one case.

    Args:
        output_dir: folder of the predictions.
        class_names: names of values 1..N; needed for ``save_class_masks``.
        save_class_masks: also write ``<case_id>/segmentations/<class>.nii.gz`` per class.
        save_label_map: write the label map (False: only the masks).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        save_class_masks: bool = False,
        save_label_map: bool = True,
    ) -> None:
        if save_class_masks and not class_names:
            raise DataValidationError("SavePrediction: save_class_masks needs class_names (the label system's classes)")
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names or [])
        self.save_class_masks = save_class_masks
        self.save_label_map = save_label_map

    def __call__(self, label: Any, case_id: str) -> list[Path]:
        """Write the files of ``case_id``; return their paths."""
        array = np.asarray(torch.as_tensor(label).detach().cpu())
        if array.ndim == 4:
            if array.shape[0] != 1:
                raise DataValidationError(
                    f"case {case_id!r}: a prediction to save must be one label map (1, H, W, D), got {array.shape}"
                )
            array = array[0]
        if not np.issubdtype(array.dtype, np.integer):  # an integer map is written as it is (no full-size copies)
            array = np.rint(array).astype(np.int64)
        affine = _affine_of(label)
        written = []
        if self.save_label_map:
            written.append(write_label_map(prediction_path(self.output_dir, case_id), array, affine))
        if self.save_class_masks:
            for value, name in enumerate(self.class_names, start=1):
                path = class_mask_path(self.output_dir, case_id, name)
                written.append(write_label_map(path, (array == value).astype(np.uint8), affine))
        return written


class SavePredictiond(MapTransform):
    """Dictionary version of :class:`SavePrediction`: the case id comes from ``id_key``.

    Args:
        keys: key of the label map (usually ``"pred"``).
        output_dir: folder of the predictions.
        id_key: entry field holding the case id (every medsegzoo datalist entry has one).
        class_names: names of values 1..N (for the masks).
        save_class_masks: also write one mask per class.
        save_label_map: write the label map.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        id_key: str = "case_id",
        class_names: Sequence[str] | None = None,
        save_class_masks: bool = False,
        save_label_map: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.id_key = id_key
        self.saver = SavePrediction(output_dir, class_names, save_class_masks, save_label_map)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        case_id = d.get(self.id_key)
        if case_id is None or str(case_id) == "":
            raise DataValidationError(
                f"SavePredictiond: the sample has no {self.id_key!r} (the datalist entry's case id names the prediction file)"
            )
        for key in self.key_iterator(d):
            self.saver(d[key], str(case_id))
        return d
