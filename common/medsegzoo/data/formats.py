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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsegzoo.data.io import NIFTI_SUFFIXES, dicom_series_files, is_nifti, load_volume, reading
from medsegzoo.errors import DataValidationError

__all__ = ["NIFTI_SUFFIXES", "Volume", "is_nifti", "read_png_stack", "read_volume"]

H5_SUFFIXES = (".h5", ".hdf5")


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


def _is_h5(path: Path) -> bool:
    return path.name.lower().endswith(H5_SUFFIXES)


def _png_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")
    )


def read_volume(
    path: str | os.PathLike,
    *,
    field: str = "image",
    voxels: bool = True,
    reference: str | os.PathLike | None = None,
    spacing: Sequence[float] | None = None,
) -> Volume:
    """Read a volume's geometry and, if asked, its voxels.

    Args:
        path: NIfTI file, HDF5 file, DICOM series folder or PNG slice folder.
        field: datalist field the path came from; names the HDF5 dataset to read
            (``image`` / ``label``).
        voxels: read the voxel array too (headers only otherwise, where the format allows).
        reference: DICOM series the PNG slices belong to (PNG folders only).
        spacing: voxel size in mm of formats that store no geometry (HDF5; the datalist entry's
            ``spacing``): their affine becomes ``diag(spacing)`` instead of the identity.

    Returns:
        The :class:`Volume`.

    Raises:
        DataValidationError: the file cannot be read as a volume (message names it and why).
    """
    path = Path(path)
    with reading(path):
        if path.is_dir():
            if _png_files(path):
                return read_png_stack(path, reference)
            return _read_with_io(path)
        if is_nifti(path):
            return _read_nifti(path, voxels)
        if _is_h5(path):
            volume = _read_h5(path, field, voxels)
            if spacing is not None:
                volume.affine[:3, :3] = np.diag([float(v) for v in spacing][:3])
            return volume
        return _read_with_io(path)


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

    array, affine, _ = load_volume(path)
    array = np.asarray(array)
    return Volume(
        shape=tuple(int(s) for s in array.shape), affine=np.asarray(affine, float), array=array
    )


def read_png_stack(folder: str | os.PathLike, reference: str | os.PathLike | None = None) -> Volume:
    """Stack a folder of 2D PNG slices into a volume on the grid of its DICOM series.

    CHAOS distributes its ground truth as one PNG per slice, numbered in the order of the
    series' DICOM file names (PNG ``i`` belongs to the ``i``-th DICOM file by name). The
    series is read with ITK, which orders slices by position, so each PNG is placed where
    ITK puts its DICOM file, not by its own number. A PNG row is the DICOM row (y) and a PNG
    column the DICOM column (x); the array is ``(x, y, z)`` like
    :func:`medsegzoo.data.io.load_volume`'s.

    Args:
        folder: folder of PNG slices.
        reference: the DICOM series folder of the same scan (the case's image).

    Returns:
        The label volume with the series' affine.

    Raises:
        DataValidationError: no reference series, or slice counts/sizes that do not match it.
    """
    from PIL import Image


    folder = Path(folder)
    if reference is None:
        raise DataValidationError(
            f"{folder}: PNG slice folder needs its DICOM series (the case's image) for its geometry"
        )
    reference = Path(reference)
    pngs = _png_files(folder)
    series = _read_with_io(reference)
    by_position = [Path(f).name for f in dicom_series_files(reference)]
    by_name = sorted(by_position)
    if len(pngs) != len(by_name):
        raise DataValidationError(
            f"{folder}: {len(pngs)} PNG slices but its DICOM series {reference} has {len(by_name)} files"
        )
    name_index = {name: i for i, name in enumerate(by_name)}
    slices = []
    for name in by_position:
        png = pngs[name_index[name]]
        pixels = np.asarray(Image.open(png))
        if pixels.ndim != 2:
            raise DataValidationError(f"{png}: PNG slice is not a single-channel (grey) image")
        slices.append(pixels.T)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1 or (slices and slices[0].shape != series.shape[:2]):
        raise DataValidationError(
            f"{folder}: PNG slices of size {sorted(shapes)} (x, y) do not match the DICOM series {reference} "
            f"({series.shape[:2]})"
        )
    stacked = np.stack(slices, axis=-1)
    return Volume(shape=tuple(stacked.shape), affine=series.affine, array=stacked)
