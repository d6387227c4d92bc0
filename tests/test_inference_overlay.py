"""PNG overlay: slice choice, colours where the labels are, orientation, errors."""

from __future__ import annotations

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.inference.overlay import axial_centre_slice, save_overlay_png


def _write(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def test_axial_centre_slice():
    label = np.zeros((4, 4, 20), np.uint8)
    label[1, 1, 5:12] = 2
    label[2, 2, 15] = 1
    assert axial_centre_slice(label) == 10  # bounding box 5..15
    assert axial_centre_slice(np.zeros((4, 4, 9))) == 4


def test_overlay_colours_the_labelled_side(tmp_path):
    image = np.zeros((32, 32, 8), np.float32)
    image[:, :, :] = np.linspace(0, 100, 32)[None, :, None]  # gradient along y
    label = np.zeros((32, 32, 8), np.uint8)
    label[24:30, 10:20, 3:6] = 1  # large x = patient right in RAS (identity affine)
    img = _write(tmp_path / "img.nii.gz", image)
    lab = _write(tmp_path / "lab.nii.gz", label)
    out = save_overlay_png(img, lab, tmp_path / "out" / "overlay.png", class_names=["liver"], title="")
    assert out.is_file() and list(out.parent.iterdir()) == [out]
    rgb = mpimg.imread(out)[..., :3]
    # coloured (non-grey) pixels exist, and they lie in the left half of the picture
    # (radiological view: the patient's right is on the image's left)
    colourful = np.abs(rgb[..., 0] - rgb[..., 2]) > 0.1
    cols = np.nonzero(colourful)[1]
    assert cols.size > 50
    # rows above the legend box (which sits bottom-left)
    centre = np.median(np.nonzero(colourful[: int(rgb.shape[0] * 0.7)])[1])
    assert centre < rgb.shape[1] / 2, centre


def test_overlay_errors(tmp_path):
    img = _write(tmp_path / "img.nii.gz", np.zeros((8, 8, 4), np.float32))
    lab = _write(tmp_path / "lab.nii.gz", np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(DataValidationError, match="shape"):
        save_overlay_png(img, lab, tmp_path / "o.png")
    with pytest.raises(DataValidationError, match="missing.nii.gz"):
        save_overlay_png(img, tmp_path / "missing.nii.gz", tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()
