"""``medsegzoo predict``: the bundle's inference.json on NIfTI files and DICOM series, input geometry kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_utils import BUNDLES_DIR

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.cli import main
from medsegzoo.data.io import load_volume, save_dicom_series, save_volume
from medsegzoo.taxonomy import get_label_system

TCT = "tct_partial_label_segmentation"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TCT bundle as a download has it: configs, and weights in models/ (random, CPU-recipe size)."""
    root = tmp_path_factory.mktemp("bundles") / TCT
    shutil.copytree(BUNDLES_DIR / TCT / "configs", root / "configs")
    shutil.copy(BUNDLES_DIR / TCT / "LICENSE", root / "LICENSE")
    shutil.copytree(BUNDLES_DIR / TCT / "docs", root / "docs")
    torch.manual_seed(0)
    network = parse_bundle(BundleRun(root, ["inference.json", "cpu.json"])).get_parsed_content("network_def")
    (root / "models").mkdir()
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def oblique_lps_affine() -> np.ndarray:
    """LPS-stored, rotated 12 degrees about z, anisotropic voxels, shifted origin."""
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag([1.7, 1.7, 3.1])
    affine[:3, 3] = [40.0, 60.0, -30.0]
    return affine


def ct_volume(shape: tuple[int, int, int] = (48, 40, 24), seed: int = 0) -> np.ndarray:
    """Air with a bright block (a body) and noise, in HU."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, -1000.0, np.float32) + rng.normal(0, 10, shape).astype(np.float32)
    image[8:40, 8:32, 4:20] = 40.0 + rng.normal(0, 20, (32, 24, 16)).astype(np.float32)
    return np.rint(image).astype(np.int16)


def predict(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(["predict", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_oblique_lps_nifti_keeps_its_grid(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    affine = oblique_lps_affine()
    source = save_volume(tmp_path / "in" / "patient 1.nii.gz", ct_volume(), affine)
    out = tmp_path / "out"
    code, stdout, stderr = predict([str(bundle), str(source), "--out", str(out), "--config", "cpu.json", "--masks"],
                                   capsys)
    assert code == 0, stderr
    written = nib.load(str(out / "patient_1.nii.gz"))  # the case id names the file (unsafe characters -> _)
    assert written.shape == (48, 40, 24)
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")
    labels = np.asarray(written.dataobj)
    classes = get_label_system("tct5").classes
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= set(range(len(classes) + 1))
    # one mask per class on the same grid, and the volumes of the summary are those of the label map
    summary = json.loads((out / "summary.json").read_text())
    case = summary["cases"][0]
    assert case["case_id"] == "patient 1" and case["windows_computed"] >= 1
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    for value, name in enumerate(classes, start=1):
        mask = nib.load(str(out / "patient_1" / "segmentations" / f"{name}.nii.gz"))
        np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
        assert case["volumes_ml"][name] == pytest.approx((labels == value).sum() * voxel_ml, abs=1e-3)
    assert "patient 1:" in stdout and "case(s) in" in stdout


def test_dicom_series_keeps_its_grid(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    series = tmp_path / "series_7"
    save_dicom_series(series, ct_volume(seed=1).astype(np.float32), oblique_lps_affine())
    array, affine, _ = load_volume(series)
    out = tmp_path / "out"
    code, _, stderr = predict([str(bundle), str(series), "--out", str(out), "--config", "cpu.json",
                               "--device", "cpu"], capsys)
    assert code == 0, stderr
    written = nib.load(str(out / "series_7.nii.gz"))
    assert written.shape == array.shape
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)


def test_a_folder_of_niftis_and_a_downloaded_bundle(bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from medsegzoo.zoo.download import download_bundle
    from medsegzoo.zoo.pack import pack_zoo

    pack_zoo(bundle.parent, tmp_path / "zoo")
    fetched = download_bundle(TCT, tmp_path / "zoo" / "model_info.json", tmp_path / "fetched")
    folder = tmp_path / "scans"
    for k in range(2):
        save_volume(folder / f"case{k}.nii", ct_volume(shape=(40, 36, 20), seed=k), np.diag([1.5, 1.5, 2.5, 1.0]))
    (folder / "notes.txt").write_text("not an image: ignored in a folder of NIfTI files")
    out = tmp_path / "out"
    code, stdout, stderr = predict([str(fetched), str(folder), "--out", str(out), "--config", "cpu.json"], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["case0.nii.gz", "case1.nii.gz"]
    assert [c["case_id"] for c in json.loads((out / "summary.json").read_text())["cases"]] == ["case0", "case1"]
    assert "2 case(s) in" in stdout


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    two_d = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20), np.float32), np.eye(4)), str(two_d))
    one_slice = tmp_path / "one_slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 1), np.float32), np.eye(4)), str(one_slice))
    four_d = tmp_path / "series4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10, 3), np.float32), np.eye(4)), str(four_d))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.nii.gz"
    fake.write_text("not gzip")
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.md").write_text("no images here")
    return {
        "2d": (two_d, "2D image"),
        "one slice": (one_slice, "2D image"),
        "4d": (four_d, "4D image"),
        "text file": (text, "not an image predict reads"),
        "corrupt nifti": (fake, "cannot be read as a volume"),
        "empty folder": (empty, "empty folder"),
        "folder without images": (junk, "no NIfTI file (.nii, .nii.gz) and no DICOM series"),
    }


@pytest.mark.parametrize("kind", ["2d", "one slice", "4d", "text file", "corrupt nifti", "empty folder",
                                  "folder without images"])
def test_bad_input_names_the_file_and_writes_nothing(kind: str, bundle: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    path, message = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out"
    code, _, stderr = predict([str(bundle), str(path), "--out", str(out), "--config", "cpu.json"], capsys)
    assert code == 1
    assert str(path) in stderr and message in stderr
    assert not out.exists()


def test_bundle_without_weights(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(bundle / "configs", bare / "configs")
    source = save_volume(tmp_path / "ct.nii.gz", ct_volume(), np.eye(4))
    out = tmp_path / "out"
    code, _, stderr = predict([str(bare), str(source), "--out", str(out)], capsys)
    assert code == 1
    assert str(bare / "models" / "model.pt") in stderr and "has no weights" in stderr
    assert not out.exists()
    code, _, stderr = predict([str(tmp_path / "nowhere"), str(source), "--out", str(out)], capsys)
    assert code == 1 and "not a bundle folder" in stderr and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_where_there_is_none(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = save_volume(tmp_path / "ct.nii.gz", ct_volume(), np.eye(4))
    out = tmp_path / "out"
    code, _, stderr = predict([str(bundle), str(source), "--out", str(out), "--device", "cuda"], capsys)
    assert code == 1 and "--device cuda" in stderr and "no CUDA device" in stderr
    assert not out.exists()
