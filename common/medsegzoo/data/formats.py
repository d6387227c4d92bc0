"""Read the geometry (and optionally the voxels) of every volume format a datalist can name.

Validation needs shapes and affines of thousands of files before any work starts, so NIfTI
files are read header-first (nibabel reads only the header until the voxels are asked for).
The public layouts also distribute volumes that are not NIfTI:

* DICOM series folders (CHAOS, Pancreas-CT): read through :func:`medsegzoo.data.io.load_volume`
  (ITK/GDCM), the one DICOM reader of the package.
* HDF5 files (the LA release used by semi-supervised methods: ``mri_norm2.h5`` with datasets
  ``image`` and ``label``): the dataset named after the datalist field is read; these files
  carry no geometry, so the affine is the identity (voxel units).
* PNG slice folders (CHAOS ground truth): one PNG per slice of the matching DICOM series;
  their geometry is that of the series (see :func:`read_png_stack`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsegzoo.errors import DataValidationError

__all__ = ["Volume", "is_nifti", "read_png_stack", "read_volume"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
H5_SUFFIXES = (".h5", ".hdf5")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass
class Volume:
    """Geometry and (optionally) voxels of one volume.

    Attributes:
        shape: array shape as stored (NIfTI: x, y, z[, channels]).
        affine: 4x4 voxel-to-world matrix (identity when the format has none).
        array: the voxels, or None when only the header was read.
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    array: np.ndarray | None = None


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _is_h5(path: Path) -> bool:
    return path.name.lower().endswith(H5_SUFFIXES)


def _png_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")
    )


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM files of a series folder: ``.dcm``-like names, or extension-less files (TCIA)."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(p for p in files if p.suffix.lower() in DICOM_SUFFIXES or p.suffix == "")


def read_volume(
    path: str | os.PathLike,
    *,
    field: str = "image",
    voxels: bool = True,
    reference: str | os.PathLike | None = None,
) -> Volume:
    """Read a volume's geometry and, if asked, its voxels.

    Args:
        path: NIfTI file, HDF5 file, DICOM series folder or PNG slice folder.
        field: datalist field the path came from; names the HDF5 dataset to read
            (``image`` / ``label``).
        voxels: read the voxel array too (headers only otherwise, where the format allows).
        reference: DICOM series the PNG slices belong to (PNG folders only).

    Returns:
        The :class:`Volume`.

    Raises:
        DataValidationError: the file cannot be read as a volume (message names it and why).
    """
    path = Path(path)
    try:
        if path.is_dir():
            if _png_files(path):
                return read_png_stack(path, reference)
            return _read_with_io(path)
        if is_nifti(path):
            return _read_nifti(path, voxels)
        if _is_h5(path):
            return _read_h5(path, field, voxels)
        return _read_with_io(path)
    except DataValidationError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one message naming the file
        raise DataValidationError(
            f"{path}: cannot be read as a volume ({type(err).__name__}: {err})"
        ) from None


def _read_nifti(path: Path, voxels: bool) -> Volume:
    import nibabel as nib

    image = nib.load(str(path))
    array = np.asanyarray(image.dataobj) if voxels else None
    return Volume(
        shape=tuple(int(s) for s in image.shape),
        affine=np.asarray(image.affine, float),
        array=array,
    )


def _read_h5(path: Path, field: str, voxels: bool) -> Volume:
    import h5py

    with h5py.File(path, "r") as handle:
        if field not in handle:
            keys = ", ".join(sorted(handle.keys())) or "none"
            raise DataValidationError(
                f"{path}: HDF5 file has no dataset {field!r} (datasets: {keys})"
            )
        data = handle[field]
        array = np.asarray(data[()]) if voxels else None
        return Volume(shape=tuple(int(s) for s in data.shape), affine=np.eye(4), array=array)


def _read_with_io(path: Path) -> Volume:
    """DICOM series and any other ITK format, through the package's image I/O module."""
    from medsegzoo.data.io import load_volume

    array, affine, _ = load_volume(path)
    array = np.asarray(array)
    return Volume(
        shape=tuple(int(s) for s in array.shape), affine=np.asarray(affine, float), array=array
    )


def read_png_stack(folder: str | os.PathLike, reference: str | os.PathLike | None = None) -> Volume:
    """Stack a folder of 2D PNG slices into a volume aligned with its DICOM series.

    CHAOS distributes its ground truth as one PNG per slice, numbered in the order of the
    series' DICOM file names. The series is read with ITK, which sorts slices by position, so
    the PNGs are placed by the position of their DICOM file, not by their own number: PNG ``i``
    belongs to the ``i``-th DICOM file in name order. A PNG row is the DICOM row (y) and a
    PNG column the DICOM column (x); arrays follow :func:`medsegzoo.data.io.load_volume`'s
    (x, y, z) order.

    Args:
        folder: folder of PNG slices.
        reference: the DICOM series folder of the same scan (needed for the geometry and the
            slice order).

    Returns:
        The label volume with the series' affine.

    Raises:
        DataValidationError: no reference series, or slice counts/sizes that do not match it.
    """
    from PIL import Image

    folder = Path(folder)
    pngs = _png_files(folder)
    if reference is None:
        raise DataValidationError(
            f"{folder}: PNG slice folder needs its DICOM series (the case's image) for its geometry"
        )
    reference = Path(reference)
    series = _read_with_io(reference)
    dicoms = _dicom_files(reference)
    if len(pngs) != len(dicoms):
        raise DataValidationError(
            f"{folder}: {len(pngs)} PNG slices but its DICOM series {reference} has {len(dicoms)} files"
        )
    order = _slice_order(dicoms, series.affine)
    slices = [np.asarray(Image.open(p)) for p in pngs]
    if slices and any(s.ndim != 2 for s in slices):
        bad = next(p for p, s in zip(pngs, slices, strict=True) if s.ndim != 2)
        raise DataValidationError(f"{bad}: PNG slice is not a single-channel (grey) image")
    stacked = np.stack([slices[i].T for i in order], axis=-1) if slices else np.zeros((0, 0, 0))
    if stacked.shape != series.shape[:3]:
        raise DataValidationError(
            f"{folder}: PNG stack has shape {stacked.shape} but its DICOM series {reference} has {series.shape[:3]}"
        )
    return Volume(shape=tuple(stacked.shape), affine=series.affine, array=stacked)


def _slice_order(dicoms: list[Path], affine: np.ndarray) -> list[int]:
    """Indices of ``dicoms`` (name order) sorted by position along the series' slice axis."""
    import itk

    normal = affine[:3, 2] / (np.linalg.norm(affine[:3, 2]) or 1.0)
    positions = []
    for path in dicoms:
        image = itk.imread(str(path))
        # ITK origins are LPS; the affine from load_volume may be RAS: compare in one frame
        # by projecting onto the normal's absolute direction (the sign cancels in the sort
        # when both are consistent, checked below).
        positions.append(np.asarray(image.GetOrigin(), float))
    projected = [float(np.dot(p, _lps_normal(normal))) for p in positions]
    order = sorted(range(len(dicoms)), key=lambda i: projected[i])
    # the series' first voxel plane is at the affine's origin: start from the file nearest it
    first = _to_lps(affine[:3, 3])
    if np.linalg.norm(positions[order[0]] - first) > np.linalg.norm(positions[order[-1]] - first):
        order.reverse()
    return order


def _to_lps(point: np.ndarray) -> np.ndarray:
    """RAS -> LPS (the same operation both ways)."""
    return np.asarray(point, float) * np.array([-1.0, -1.0, 1.0])


def _lps_normal(normal: np.ndarray) -> np.ndarray:
    return _to_lps(normal)
