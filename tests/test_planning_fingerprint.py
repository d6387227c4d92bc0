from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.planning import (
    compute_fingerprint,
    load_fingerprint,
    plan_patch_and_spacing,
    save_fingerprint,
)


def _write_case(folder, name, image, label, spacing):
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / f"{name}_img.nii.gz")
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), folder / f"{name}_seg.nii.gz")
    return {"image": f"{name}_img.nii.gz", "label": f"{name}_seg.nii.gz"}


def test_fingerprint_statistics_equal_numpy_on_all_foreground(tmp_path):
    rng = np.random.default_rng(1)
    cases, values = [], []
    for i, spacing in enumerate([(1.0, 1.0, 3.0), (0.8, 0.8, 2.5), (1.2, 1.2, 5.0)]):
        image = rng.normal(40, 20, size=(20, 18, 10))
        label = np.zeros(image.shape, np.uint8)
        label[5:12, 4:10, 2:8] = 1
        values.append(image[label > 0])
        cases.append(_write_case(tmp_path, f"c{i}", image, label, spacing))
    # samples_per_case larger than the foreground: every voxel counts, so numpy is the reference
    fp = compute_fingerprint(cases, base_dir=tmp_path, samples_per_case=10_000)
    pooled = np.concatenate(values).astype(np.float32).astype(np.float64)
    assert fp.num_cases == 3
    assert fp.mean == pytest.approx(pooled.mean(), rel=1e-9)
    assert fp.std == pytest.approx(pooled.std(), rel=1e-9)
    assert fp.percentile_00_5 == pytest.approx(np.percentile(pooled, 0.5))
    assert fp.percentile_99_5 == pytest.approx(np.percentile(pooled, 99.5))
    assert fp.median_spacing == pytest.approx([1.0, 1.0, 3.0])
    assert fp.median_shape == [20, 18, 10]

    path = save_fingerprint(fp, tmp_path / "fingerprint.json", plan={"spacing": [1, 1, 3]})
    again = load_fingerprint(path)
    assert again == fp
    assert again.normalization_kwargs()["upper"] == fp.percentile_99_5


def test_plan_anisotropic_spacing_and_patch_budget():
    from medsegzoo.planning.fingerprint import DatasetFingerprint

    fp = DatasetFingerprint(
        num_cases=3, modality="CT", mean=0, std=1, percentile_00_5=-1, percentile_99_5=1,
        median_spacing=[0.8, 0.8, 5.0], median_shape=[512, 512, 80],
        spacings=[[0.8, 0.8, 5.0], [0.8, 0.8, 5.0], [0.8, 0.8, 1.0]] * 4,
        shapes=[],
    )
    plan = plan_patch_and_spacing(fp, divisible_by=(32, 32, 8), max_patch_voxels=160 * 160 * 64)
    # 5.0 > 3 x 0.8, so the coarse axis takes the 10th percentile of its spacings (1.0 here)
    assert plan["spacing"] == [0.8, 0.8, 1.0]
    patch = plan["patch_size"]
    assert all(p % d == 0 for p, d in zip(patch, (32, 32, 8)))
    assert np.prod(patch) <= 160 * 160 * 64
    assert patch[2] <= 400  # never more than the resampled extent (80 x 5 mm / 1 mm)


def test_fingerprint_errors_name_the_file(tmp_path):
    empty = _write_case(tmp_path, "e", np.zeros((8, 8, 8)), np.zeros((8, 8, 8)), (1, 1, 1))
    with pytest.raises(DataValidationError, match="e_seg.nii.gz: label has no foreground"):
        compute_fingerprint([empty], base_dir=tmp_path)
    with pytest.raises(DataValidationError, match="missing.json: no data-set fingerprint"):
        load_fingerprint(tmp_path / "missing.json")
