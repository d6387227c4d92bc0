"""Image I/O: NIfTI round trip, DICOM series written with pydicom and read back with ITK."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.data.io import dicom_series_files, load_volume, save_dicom_series, save_volume
from medsegzoo.data.phantoms.sites import to_orientation
from medsegzoo.errors import DataValidationError


def _volume(
    shape: tuple[int, int, int] = (9, 7, 5), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [12.0, -30.0, 75.5]
    return array, affine


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asarray(image.dataobj), image.affine


def test_nifti_round_trip_keeps_dtype_affine_and_sets_both_codes(tmp_path: Path) -> None:
    array, affine = _volume()
    path = save_volume(tmp_path / "sub" / "a.nii.gz", array, affine)
    loaded, loaded_affine, spacing = load_volume(path)
    assert loaded.dtype == np.int16
    np.testing.assert_array_equal(loaded, array)
    np.testing.assert_allclose(loaded_affine, affine)
    np.testing.assert_allclose(spacing, [0.8, 0.9, 2.5], rtol=1e-6)
    header = nib.load(str(path)).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    assert [p.name for p in path.parent.iterdir()] == ["a.nii.gz"]  # no temporary left


def test_save_volume_rejects_bad_name_and_affine(tmp_path: Path) -> None:
    array, affine = _volume()
    with pytest.raises(DataValidationError, match="NIfTI"):
        save_volume(tmp_path / "a.png", array, affine)
    with pytest.raises(DataValidationError, match="4x4"):
        save_volume(tmp_path / "a.nii.gz", array, np.eye(3))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAI", "RPI"])
def test_dicom_series_round_trip_geometry_and_values(tmp_path: Path, codes: str) -> None:
    array, affine = _volume()
    stored, stored_affine = to_orientation(array, affine, codes)
    files = save_dicom_series(
        tmp_path / "series",
        stored,
        stored_affine,
        modality="CT",
        uid_seed="t",
        metadata={"age": 46, "sex": "F", "manufacturer": "ACME"},
    )
    assert len(files) == array.shape[2]
    loaded, loaded_affine, spacing = load_volume(tmp_path / "series")
    # ITK may order slices along the normal of the row/column directions: compare in RAS
    got, got_affine = _canonical(loaded, loaded_affine)
    want, want_affine = _canonical(array, affine)
    np.testing.assert_allclose(got_affine, want_affine, atol=1e-4)
    np.testing.assert_array_equal(got, want)
    assert sorted(np.round(spacing, 4)) == sorted([0.8, 0.9, 2.5])
    assert nib.aff2axcodes(loaded_affine)[:2] == tuple(codes[:2])


def test_dicom_header_fields(tmp_path: Path) -> None:
    import pydicom

    array, affine = _volume((6, 4, 3))
    files = save_dicom_series(
        tmp_path,
        np.clip(array, 0, None),
        affine,
        modality="MR",
        uid_seed="u",
        metadata={"age": 7, "sex": "M", "site": "site3"},
        file_name=lambda k: f"IMG-{k:03d}.dcm",
        reverse_names=True,
    )
    assert [f.name for f in files] == ["IMG-002.dcm", "IMG-001.dcm", "IMG-000.dcm"]
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "MR" and ds.PatientAge == "007Y" and ds.PatientSex == "M"
    assert ds.InstitutionName == "site3"
    assert (ds.Rows, ds.Columns) == (4, 6)  # rows follow y, columns x
    # LPS position of voxel (0, 0, 0): the RAS origin with x and y negated
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], [-12.0, 30.0, 75.5])
    again = save_dicom_series(
        tmp_path / "again", np.clip(array, 0, None), affine, modality="MR", uid_seed="u"
    )
    assert pydicom.dcmread(again[0]).SeriesInstanceUID == ds.SeriesInstanceUID  # deterministic UIDs


def test_load_volume_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="does not exist"):
        load_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no DICOM series"):
        load_volume(tmp_path / "empty")
    array, affine = _volume((4, 4, 2))
    save_dicom_series(
        tmp_path / "two", array, affine, uid_seed="a", file_name=lambda k: f"a{k}.dcm"
    )
    save_dicom_series(
        tmp_path / "two", array, affine, uid_seed="b", file_name=lambda k: f"b{k}.dcm"
    )
    with pytest.raises(DataValidationError, match="2 DICOM series"):
        dicom_series_files(tmp_path / "two")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti file")
    with pytest.raises(DataValidationError, match="bad.nii.gz"):
        load_volume(bad)


def test_a_damaged_file_is_one_error_naming_it(tmp_path):
    from medsegzoo.data.formats import read_volume
    from medsegzoo.data.io import is_nifti, reading

    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    for read in (load_volume, read_volume):
        with pytest.raises(DataValidationError, match=r"broken\.nii\.gz: cannot be read as a volume \("):
            read(broken)
    # ours pass through unchanged
    with pytest.raises(DataValidationError, match="^own message$"), reading(broken):
        raise DataValidationError("own message")
    assert is_nifti("a/B.NII.GZ") and is_nifti(Path("x.nii")) and not is_nifti("x.nii.gz.bak")


def test_save_prediction_writes_integer_and_float_label_maps(tmp_path: Path) -> None:
    import torch
    from monai.data import MetaTensor

    from medsegzoo.transforms.io import SavePrediction, prediction_path

    _, affine = _volume()
    labels = np.random.default_rng(2).integers(0, 9, size=(1, 9, 7, 5)).astype(np.uint8)
    saver = SavePrediction(tmp_path)
    for case_id, value in (("ints", labels), ("floats", labels.astype(np.float32) + 0.2), ("big", labels.astype(np.int64) * 100)):
        saver(MetaTensor(torch.as_tensor(value), affine=torch.as_tensor(affine)), case_id)
        image = nib.load(prediction_path(tmp_path, case_id))
        expected = labels[0].astype(np.int64) * (100 if case_id == "big" else 1)
        np.testing.assert_array_equal(np.asarray(image.dataobj), expected)  # float maps rounded to the nearest label
        assert image.get_data_dtype() == (np.uint16 if case_id == "big" else np.uint8)
        np.testing.assert_allclose(image.affine, affine)
