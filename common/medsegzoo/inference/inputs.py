"""What ``medsegzoo predict`` accepts as input: a NIfTI file, a folder of them, a DICOM series.

:func:`collect_inputs` turns the path a user gives into cases, checks each one before any
work starts (readable, 3D, one series per DICOM folder, unique case ids) and raises one
:class:`~medsegzoo.errors.DataValidationError` naming the file otherwise. A DICOM series is
read once with ITK (:func:`medsegzoo.data.io.load_volume`) and written as a NIfTI file into a
working folder, so that every bundle reads it with its own ``LoadImaged``; the label map is
then written on the series' grid (same affine, shape and orientation as ``load_volume``
reports for it).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsegzoo.data.io import (
    NIFTI_SUFFIXES,
    dicom_series_files,
    is_nifti,
    load_volume,
    reading,
    save_volume,
)
from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import DataValidationError

__all__ = ["PredictionInput", "case_id_for", "check_3d_shape", "collect_inputs"]


@dataclasses.dataclass(frozen=True)
class PredictionInput:
    """One case to predict.

    Attributes:
        case_id: names the outputs (``<case_id>.nii.gz``).
        source: what the user named (a NIfTI file or a DICOM series folder).
        image: the NIfTI file the bundle reads (``source`` itself, or the converted series).
        shape: the image's voxel grid.
        affine: its voxel-to-RAS+ affine (the output label map's).
    """

    case_id: str
    source: Path
    image: Path
    shape: tuple[int, ...]
    affine: np.ndarray

    @property
    def kind(self) -> str:
        """``"nifti"`` or ``"dicom"``."""
        return "dicom" if self.source.is_dir() else "nifti"


def case_id_for(path: str | os.PathLike) -> str:
    """The case id of an input: the file name without ``.nii``/``.nii.gz``, or the folder name."""
    name = Path(path).name
    lower = name.lower()
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_3d_shape(path: str | os.PathLike, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of a 3D image, or an error naming ``path`` (2D, one slice, 4D and more).

    Raises:
        DataValidationError: the image is not a 3D volume of at least 2 voxels per axis.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) > 3:
        raise DataValidationError(
            f"{path}: {len(shape)}D image (shape {shape}); predict needs one 3D volume (split time series or "
            "multi-channel images into 3D files)"
        )
    if len(shape) < 3 or min(shape) < 2:
        raise DataValidationError(
            f"{path}: 2D image (shape {shape}); predict needs a 3D volume (a NIfTI volume or a DICOM series "
            "of several slices)"
        )
    return shape


def _nifti_input(path: Path) -> PredictionInput:
    import nibabel as nib

    with reading(path):
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
        affine = np.asarray(image.affine, float)
    check_3d_shape(path, shape)
    return PredictionInput(case_id_for(path), path, path, shape, affine)


def _dicom_input(folder: Path, work_dir: Path) -> PredictionInput:
    array, affine, _ = load_volume(folder)
    shape = check_3d_shape(folder, array.shape)
    case_id = case_id_for(folder)
    converted = work_dir / "dicom" / f"{case_id}.nii.gz"
    save_volume(converted, array, affine)
    return PredictionInput(case_id, folder, converted, shape, np.asarray(affine, float))


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def collect_inputs(path: str | os.PathLike, work_dir: str | os.PathLike) -> list[PredictionInput]:
    """The cases of an input path, each checked (see the module docstring).

    Args:
        path: a NIfTI file, a folder of NIfTI files (not searched recursively; other files
            are ignored), or a folder holding one DICOM series.
        work_dir: folder for converted DICOM series (created when needed).

    Returns:
        The cases, sorted by file name.

    Raises:
        DataValidationError: a missing path, a file that is not NIfTI, a folder with neither
            NIfTI files nor a DICOM series (or an empty one), an image that does not read or
            is not 3D, two inputs with the same case id. The message names the file.
    """
    path = Path(path)
    work = Path(work_dir)
    if not path.exists():
        raise DataValidationError(f"{path}: does not exist")
    if path.is_file():
        if is_nifti(path):
            return [_nifti_input(path)]
        if _looks_like_dicom(path):
            raise DataValidationError(
                f"{path}: a single DICOM file; give the folder that holds the whole series"
            )
        raise DataValidationError(
            f"{path}: not an image predict reads; give a NIfTI file (.nii, .nii.gz), a folder of them, "
            "or a DICOM series folder"
        )
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DataValidationError(f"{path}: empty folder; it holds no NIfTI file and no DICOM series")
    niftis = [p for p in entries if p.is_file() and is_nifti(p)]
    if niftis:
        cases = [_nifti_input(p) for p in niftis]
    else:
        try:
            dicom_series_files(path)
        except DataValidationError as err:
            if "holds no DICOM series" in str(err):
                raise DataValidationError(
                    f"{path}: holds no NIfTI file (.nii, .nii.gz) and no DICOM series"
                ) from None
            raise
        cases = [_dicom_input(path, work)]
    outputs = {c.case_id: prediction_path(".", c.case_id).name for c in cases}
    repeated = sorted(name for name, n in Counter(outputs.values()).items() if n > 1)
    if repeated:
        names = [str(c.source) for c in cases if outputs[c.case_id] in repeated]
        raise DataValidationError(
            f"{path}: inputs {names} would write the same output file(s) {repeated}; rename one"
        )
    return cases
