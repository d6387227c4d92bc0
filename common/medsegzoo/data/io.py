"""Image I/O: NIfTI files (nibabel), DICOM series and other ITK formats (ITK), DICOM writing.

Conventions of every function here:

* Arrays are indexed ``(x, y, z)`` like nibabel's: for a DICOM series, ``x`` is the column
  index of a slice, ``y`` its row index and ``z`` the slice (ITK order, transposed from ITK's
  ``(z, y, x)`` NumPy view).
* Affines map voxel indices to **RAS+ world millimetres** (NIfTI's convention: ``+x`` toward
  the patient's right, ``+y`` anterior, ``+z`` superior). ITK and DICOM use LPS; the first
  two world axes are negated on the way in and out, so a NIfTI file and a DICOM series of the
  same scan get the same affine.
* Spacing is the voxel size in mm along the three array axes.

Writes are atomic (:func:`medsegzoo.utils.atomic_path`): a failed write leaves no file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medsegzoo.errors import DataValidationError
from medsegzoo.utils.atomic import atomic_path

__all__ = [
    "NIFTI_SUFFIXES",
    "dicom_series_files",
    "is_nifti",
    "load_volume",
    "reading",
    "save_dicom_series",
    "save_volume",
]

# LPS <-> RAS: negate the first two world axes (the same matrix both ways)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_CT_INTERCEPT = -1024.0  # stored CT values are HU + 1024, unsigned, as most scanners write them


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn any failure of a third-party reader into one :class:`DataValidationError` naming ``path``.

    Our own :class:`DataValidationError` passes through unchanged. Readers (nibabel, ITK,
    h5py, PIL) raise many unrelated types for a damaged file; the user needs the file name
    and the reason, not a traceback from inside a library.

    Raises:
        DataValidationError: whatever the block raised, with ``path`` and the reason.
    """
    try:
        yield
    except DataValidationError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one message naming the file
        raise DataValidationError(
            f"{path}: cannot be read as a volume ({type(err).__name__}: {err})"
        ) from None


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a volume and its geometry.

    Args:
        path: NIfTI file (``.nii``, ``.nii.gz``), a folder holding one DICOM series, or any
            file ITK reads (a single DICOM file, NRRD, MetaImage, ...).

    Returns:
        ``(array, affine, spacing)``: the voxels indexed ``(x, y, z)`` in their stored dtype
        (NIfTI scaling applied), the 4x4 voxel-to-RAS+ affine and the voxel size in mm.

    Raises:
        DataValidationError: missing file, a folder without exactly one DICOM series, or a
            file no reader understands (the message names the path and the reason).
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: does not exist")
    with reading(path):
        if path.is_file() and is_nifti(path):
            return _load_nifti(path)
        files = dicom_series_files(path) if path.is_dir() else [str(path)]
        return _load_itk(files)


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.load(str(path))
    array = np.asanyarray(image.dataobj)
    spacing = np.asarray(image.header.get_zooms()[: min(3, array.ndim)], float)
    return array, np.asarray(image.affine, float), spacing


def dicom_series_files(folder: str | os.PathLike) -> list[str]:
    """File names of the one DICOM series in ``folder``, sorted by slice position (GDCM).

    Raises:
        DataValidationError: no DICOM series, or more than one (names their UIDs).
    """
    import itk

    folder = Path(folder)
    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.SetGlobalWarningDisplay(False)
    names.SetDirectory(str(folder))
    uids = list(names.GetSeriesUIDs())
    if not uids:
        raise DataValidationError(f"{folder}: holds no DICOM series")
    if len(uids) > 1:
        raise DataValidationError(
            f"{folder}: holds {len(uids)} DICOM series ({', '.join(uids[:3])}); point at one series folder"
        )
    return [str(f) for f in names.GetFileNames(uids[0])]


def _load_itk(files: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import itk

    image = itk.imread(list(files) if len(files) > 1 else files[0])
    array = itk.array_from_image(image)  # (z, y, x) or (y, x)
    dim = image.GetImageDimension()
    if dim not in (2, 3) or array.ndim != dim:
        raise DataValidationError(
            f"{files[0]}: {dim}D image with {array.ndim}D voxels (multi-component?); expected a 2D/3D scalar image"
        )
    spacing = np.ones(3)
    origin = np.zeros(3)
    direction = np.eye(3)
    spacing[:dim] = np.asarray(image.GetSpacing(), float)
    origin[:dim] = np.asarray(image.GetOrigin(), float)
    direction[:dim, :dim] = itk.array_from_matrix(image.GetDirection())
    if dim == 2:
        array = array[None]  # one slice: (1, y, x)
        direction[:, 2] = np.cross(direction[:, 0], direction[:, 1])
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * spacing[None, :]
    affine_lps[:3, 3] = origin
    return np.ascontiguousarray(array.transpose(2, 1, 0)), _LPS_TO_RAS @ affine_lps, spacing


def save_volume(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type | None = None,
) -> Path:
    """Write a NIfTI file atomically, with its affine as both qform and sform (code 1, scanner).

    Args:
        path: ``.nii`` or ``.nii.gz`` file (folders are created).
        array: voxels indexed ``(x, y, z)``.
        affine: 4x4 voxel-to-RAS+ affine.
        dtype: stored dtype (default: the array's).

    Returns:
        The written path.

    Raises:
        DataValidationError: the name is not a NIfTI name, or the affine is not 4x4.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti(path):
        raise DataValidationError(f"{path}: save_volume writes NIfTI files (.nii or .nii.gz)")
    affine = np.asarray(affine, float)
    if affine.shape != (4, 4):
        raise DataValidationError(f"{path}: affine must be 4x4, got shape {affine.shape}")
    data = np.asarray(array if dtype is None else np.asarray(array).astype(dtype, copy=False))
    image = nib.Nifti1Image(data, affine)
    # both codes set: ITK-based tools read the qform, nibabel the sform
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def _uid(*parts: Any) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def save_dicom_series(
    folder: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    modality: str = "CT",
    uid_seed: str = "medsegzoo",
    metadata: Mapping[str, Any] | None = None,
    file_name: Callable[[int], str] = lambda k: f"{k + 1:04d}.dcm",
    reverse_names: bool = False,
) -> list[Path]:
    """Write a 3D volume as a DICOM series (one file per slice along axis 2).

    Written with pydicom rather than ITK's GDCM series writer: every slice's position,
    orientation and UIDs are set explicitly and deterministically (GDCM generates fresh UIDs
    and time stamps on every run, so the same phantom would not give the same bytes). ITK
    (:func:`load_volume`) reads the result back.

    Args:
        folder: output folder (created).
        array: voxels indexed ``(x, y, z)``: column, row, slice.
        affine: voxel-to-RAS+ affine; its first two columns must be orthogonal.
        modality: "CT" (values in HU, stored as unsigned ``HU + 1024`` with a rescale
            intercept of -1024) or "MR" (values rounded to unsigned 16-bit).
        uid_seed: text the study/series/instance UIDs derive from (same seed, same UIDs).
        metadata: optional ``patient_id``, ``age``, ``sex``, ``manufacturer``, ``scanner``,
            ``site`` (institution), ``series_description``.
        file_name: slice number (0-based, in the order of ``array``'s axis 2 or reversed) ->
            file name.
        reverse_names: number the files from the last slice to the first (scanners often
            number from head to feet).

    Returns:
        The written files, in slice order of ``array``.

    Raises:
        DataValidationError: not a 3D array, bad affine or modality.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    array = np.asarray(array)
    affine = np.asarray(affine, float)
    if array.ndim != 3 or affine.shape != (4, 4):
        raise DataValidationError(
            f"{folder}: a DICOM series needs a 3D array and a 4x4 affine, got {array.shape} / {affine.shape}"
        )
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise DataValidationError(f"{folder}: DICOM modality must be CT or MR, got {modality!r}")
    meta = dict(metadata or {})
    lps = _LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise DataValidationError(
            f"{folder}: the affine's first two axes are not orthogonal; DICOM cannot store it"
        )
    if modality == "CT":
        stored = np.clip(np.rint(array.astype(np.float64) - _CT_INTERCEPT), 0, 65535).astype(
            np.uint16
        )
        sop_class = _CT_IMAGE_STORAGE
    else:
        stored = np.clip(np.rint(array.astype(np.float64)), 0, 65535).astype(np.uint16)
        sop_class = _MR_IMAGE_STORAGE
    study_uid, series_uid, frame_uid = (
        _uid(uid_seed, part) for part in ("study", "series", "frame")
    )
    n = array.shape[2]
    paths = []
    for k in range(n):
        instance_uid = _uid(uid_seed, "instance", k)
        file_meta = FileMetaDataset()
        file_meta.MediaStorageSOPClassUID = sop_class
        file_meta.MediaStorageSOPInstanceUID = instance_uid
        file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = file_meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = instance_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.PatientName = str(meta.get("patient_id", "PHANTOM"))
        ds.PatientID = str(meta.get("patient_id", "PHANTOM"))
        if meta.get("sex") in ("M", "F"):
            ds.PatientSex = meta["sex"]
        if meta.get("age") is not None:
            ds.PatientAge = f"{int(meta['age']):03d}Y"
        ds.Manufacturer = str(meta.get("manufacturer", ""))
        ds.ManufacturerModelName = str(meta.get("scanner", ""))
        ds.InstitutionName = str(meta.get("site", ""))
        ds.SeriesDescription = str(meta.get("series_description", "synthetic phantom"))
        position = lps[:3, 3] + k * lps[:3, 2]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [
            f"{spacing[1]:.6f}",
            f"{spacing[0]:.6f}",
        ]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.SliceLocation = f"{position[2]:.6f}"
        ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if modality == "CT":
            ds.RescaleIntercept = f"{_CT_INTERCEPT:.0f}"
            ds.RescaleSlope = "1"
            ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows = y, columns = x
        number = n - 1 - k if reverse_names else k
        path = folder / file_name(number)
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths
