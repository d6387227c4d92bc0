"""Tests of LoadVolumed (HDF5 volumes of the LA release, everything else through LoadImaged)."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import torch

from medsegzoo.transforms.volume import LoadVolumed


def test_h5_image_and_label_from_one_file_with_spacing(tmp_path) -> None:
    path = tmp_path / "case" / "mri_norm2.h5"
    path.parent.mkdir()
    image = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    label = (image > 60).astype(np.uint8)
    with h5py.File(path, "w") as handle:
        handle["image"], handle["label"] = image, label
    out = LoadVolumed(["image", "label"])({"image": str(path), "label": str(path), "spacing": [0.625, 0.625, 0.625]})
    assert out["image"].shape == (1, 4, 5, 6) and out["image"].dtype == torch.float32
    assert torch.equal(out["image"][0], torch.from_numpy(image))
    assert torch.equal(out["label"][0].long(), torch.from_numpy(label).long())
    assert np.allclose(np.diag(np.asarray(out["image"].affine))[:3], 0.625)
    assert out["label"].meta["filename_or_obj"] == str(path)


def test_nifti_goes_through_loadimaged_and_missing_label_is_allowed(tmp_path) -> None:
    array = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "a.nii.gz"))
    out = LoadVolumed(["image", "label"], allow_missing_keys=True)({"image": str(tmp_path / "a.nii.gz"), "case_id": "a"})
    assert out["image"].shape == (1, 3, 4, 5)
    assert np.allclose(out["image"][0].numpy(), array)
    assert "label" not in out and out["case_id"] == "a"
