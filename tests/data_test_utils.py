"""Small file writers shared by the data tests (tiny NIfTI / HDF5 volumes)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (6, 6, 5)


def write_nifti(
    path: Path, array: np.ndarray | None = None, affine: np.ndarray | None = None
) -> Path:
    """Write ``array`` (default: a small float image) as NIfTI, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.linspace(-100, 100, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine), str(path))
    return path


def label_map(values: tuple[int, ...] = (1,), shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A uint8 label map holding each of ``values`` in one voxel row."""
    label = np.zeros(shape, np.uint8)
    for i, value in enumerate(values):
        label[i % shape[0], 0, 0] = value
    return label


def write_pair(image: Path, label: Path, values: tuple[int, ...] = (1,)) -> None:
    """An image and a label map on the same grid."""
    write_nifti(image)
    write_nifti(label, label_map(values))
