from __future__ import annotations

import numpy as np
import pytest
from data_test_utils import SHAPE, write_nifti
from medsegzoo.data.datalist import load_split, save_datalist
from medsegzoo.data.masks import LoadMasks, LoadMasksd
from medsegzoo.data.readers import build_datalist
from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.transforms import ConvertLabelsd
from monai.transforms import Compose, LoadImaged


def _case(root, overlap=True):
    liver = np.zeros(SHAPE, np.uint8)
    liver[:3] = 1
    ivc = np.zeros(SHAPE, np.uint8)
    ivc[2:4] = 1  # row 2 overlaps the liver
    write_nifti(root / "s0001" / "ct.nii.gz")
    write_nifti(root / "s0001" / "segmentations" / "liver.nii.gz", liver)
    write_nifti(root / "s0001" / "segmentations" / "inferior_vena_cava.nii.gz", ivc)
    write_nifti(root / "s0001" / "segmentations" / "spleen.nii.gz", np.zeros(SHAPE, np.uint8))


def test_masks_of_a_datalist_become_the_native_label_map(tmp_path):
    _case(tmp_path)
    path = save_datalist(build_datalist("totalsegmentator", tmp_path), tmp_path / "list.json")
    entry = load_split(path)[0]
    data = Compose([LoadImaged("image"), LoadMasksd("masks")])(entry)
    label = np.asarray(data["label"])
    assert label.shape == tuple(data["image"].shape) == SHAPE
    # TotalSegmentator v2: liver 5, inferior_vena_cava 63; the higher value wins the overlap
    assert np.unique(label[:2]).tolist() == [5]
    assert np.unique(label[2:4]).tolist() == [63]
    assert np.unique(label[4:]).tolist() == [0]
    assert np.allclose(data["label"].affine, data["image"].affine)
    converted = ConvertLabelsd("label", target="touchstone9")(data)["label"]
    assert np.unique(np.asarray(converted)[:2]).tolist() == [5]  # touchstone9: liver 5, postcava 8
    assert np.unique(np.asarray(converted)[2:4]).tolist() == [8]


def test_load_masks_errors(tmp_path):
    _case(tmp_path)
    seg = tmp_path / "s0001" / "segmentations"
    with pytest.raises(
        UnknownNameError, match=r"masks \['kidney'\] are not classes of data set 'totalsegmentator'"
    ):
        LoadMasks("totalsegmentator")({"kidney": str(seg / "liver.nii.gz")})
    with pytest.raises(UnknownNameError, match="needs the data set"):
        LoadMasks()({"liver": str(seg / "liver.nii.gz")})
    write_nifti(seg / "spleen.nii.gz", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(
        DataValidationError,
        match=r"liver.nii.gz: mask shape \(6, 6, 5\) differs from .*spleen.nii.gz.s \(2, 2, 2\)",
    ):
        LoadMasks("totalsegmentator")(
            {"liver": str(seg / "liver.nii.gz"), "spleen": str(seg / "spleen.nii.gz")}
        )
