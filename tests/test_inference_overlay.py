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


def test_display_window_soft_tissue_for_hu_else_percentiles():
    from medsegzoo.inference.overlay import CT_SOFT_TISSUE_WINDOW_HU, display_window

    ct = np.full((10, 10, 10), 40.0, np.float32)
    ct[:2] = -1000.0  # air around the patient
    assert display_window(ct) == CT_SOFT_TISSUE_WINDOW_HU == (-160.0, 240.0)
    mr = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    assert display_window(mr) == pytest.approx(tuple(np.percentile(mr, [1, 99])))
    low, high = display_window(np.zeros((4, 4, 4), np.float32))
    assert high > low


def test_hu_image_is_shown_in_the_soft_tissue_window(tmp_path):
    image = np.full((32, 32, 8), 40.0, np.float32)  # soft tissue: level 40 HU = mid grey
    image[:8] = -1000.0
    image[-8:] = 3000.0  # a percentile window would stretch to [-1000, 3000]: tissue at 0.26
    label = np.zeros(image.shape, np.uint8)
    label[14:18, 14:18, 3:5] = 1
    img = _write(tmp_path / "img.nii.gz", image)
    lab = _write(tmp_path / "lab.nii.gz", label)
    rgb = mpimg.imread(save_overlay_png(img, lab, tmp_path / "o.png", title=""))[..., :3]
    grey = rgb[(np.abs(rgb[..., 0] - rgb[..., 2]) < 0.01) & (rgb[..., 0] > 0.05) & (rgb[..., 0] < 0.95)]
    assert np.median(grey[:, 0]) == pytest.approx(200 / 400, abs=0.03)


def test_legend_names_come_from_the_label_system(tmp_path):
    from medsegzoo.errors import UnknownNameError
    from medsegzoo.inference.overlay import _legend_names

    btcv = _legend_names(None, "btcv")
    assert btcv[11] == "pancreas" and btcv[10] == "portal vein and splenic vein"
    assert _legend_names(None, "touchstone9")[8] == "postcava"
    assert _legend_names(["liver"], None) == {1: "liver"} and _legend_names({6: "liver"}, None) == {6: "liver"}
    assert _legend_names(None, None) == {}
    with pytest.raises(UnknownNameError, match="no_such_system"):
        save_overlay_png(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "o.png", labels="no_such_system")
    assert not (tmp_path / "o.png").exists()


def test_overlay_of_an_hdf5_image_with_a_nifti_prediction(tmp_path):
    # the LA layout stores images in HDF5 (the demo's TCSeg case): read with the package's reader
    import h5py

    image = np.zeros((24, 24, 8), np.float32)
    image[12:, :, :] = 1.0
    with h5py.File(tmp_path / "mri_norm2.h5", "w") as f:
        f["image"] = image
        f["label"] = (image > 0).astype(np.uint8)
    label = np.zeros((24, 24, 8), np.uint8)
    label[16:22, 6:18, 2:6] = 1
    lab = _write(tmp_path / "pred.nii.gz", label)
    out = save_overlay_png(tmp_path / "mri_norm2.h5", lab, tmp_path / "o.png", class_names=["left_atrium"], title="")
    rgb = mpimg.imread(out)[..., :3]
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 0.1).sum() > 20  # the label is drawn
    with pytest.raises(DataValidationError, match="not_there.h5"):
        save_overlay_png(tmp_path / "not_there.h5", lab, tmp_path / "o2.png")
