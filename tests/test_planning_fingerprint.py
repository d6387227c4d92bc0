from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.planning import (
    compute_fingerprint,
    load_fingerprint,
    nnunet_target_spacing,
    plain_unet_feature_map_size,
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


def _fingerprint(spacings, shapes):
    from medsegzoo.planning.fingerprint import DatasetFingerprint

    return DatasetFingerprint(
        num_cases=len(spacings), modality="CT", mean=0, std=1, percentile_00_5=-1, percentile_99_5=1,
        median_spacing=np.median(spacings, axis=0).tolist(), median_shape=np.median(shapes, axis=0).astype(int).tolist(),
        spacings=spacings, shapes=shapes,
    )


def test_target_spacing_of_thick_slices():
    # median 5 mm > 3 x 0.8 mm and 80 x 3 voxels < 512: the 10th percentile of [1, 5, 5] = 1.8 mm
    spacings = [[0.8, 0.8, 5.0], [0.8, 0.8, 5.0], [0.8, 0.8, 1.0]]
    assert nnunet_target_spacing(spacings, [[512, 512, 80]] * 2 + [[512, 512, 300]]) == pytest.approx([0.8, 0.8, 1.8])
    # many slices (300 x 3 >= 512): the median stays
    assert nnunet_target_spacing(spacings, [[512, 512, 300]] * 3) == pytest.approx([0.8, 0.8, 5.0])
    # a 10th percentile finer than the other axes is raised to them (+1e-5)
    mixed = [[1.0, 1.0, 6.0]] * 5 + [[1.0, 1.0, 0.2]] * 2
    assert nnunet_target_spacing(mixed, [[400, 400, 50]] * 7) == pytest.approx([1.0, 1.0, 1.00001])


def test_plan_of_a_thick_slice_set_in_ras_order():
    # 0.8 x 0.8 x 5 mm, slices last (RAS): strides [2, 2, 1] and kernels [3, 3, 1] first, i.e.
    # nnU-Net's [1, 2, 2] / [1, 3, 3] with its slice axis first
    fp = _fingerprint([[0.8, 0.8, 5.0]] * 4, [[512, 512, 60]] * 4)
    plan = plan_patch_and_spacing(fp, num_labels=9)
    assert plan["spacing"] == pytest.approx([0.8, 0.8, 5.0])
    assert plan["pool_kernel_sizes"][0] == [2, 2, 1]
    assert plan["conv_kernel_sizes"][0] == [3, 3, 1]
    assert plan["conv_kernel_sizes"][-1] == [3, 3, 3]
    assert plan["median_shape"] == [512.0, 512.0, 60.0]
    divisible = [int(np.prod([p[a] for p in plan["pool_kernel_sizes"]])) for a in range(3)]
    assert all(s % d == 0 for s, d in zip(plan["patch_size"], divisible))
    assert plain_unet_feature_map_size(plan["patch_size"], plan["pool_kernel_sizes"], 9) <= 560_000_000
    assert plan["patch_size"][2] <= 64  # never beyond the median shape's divisible size


def test_plan_with_a_voxel_budget_and_resampled_median_shape():
    # two cases at 1 mm and two at 2 mm: resampled to the median 1.5 mm the shapes are 67 and 133,
    # median 100 (nnU-Net's median of the resampled shapes, not of the raw ones)
    fp = _fingerprint([[1.0, 1.0, 1.0]] * 2 + [[2.0, 2.0, 2.0]] * 2, [[100, 100, 100]] * 4)
    plan = plan_patch_and_spacing(fp, max_patch_voxels=64**3)
    assert plan["spacing"] == pytest.approx([1.5, 1.5, 1.5])
    assert plan["median_shape"] == [100.0, 100.0, 100.0]
    assert plan["patch_size"] == [64, 64, 64]


def test_fingerprint_reads_spacing_in_ras_axis_order(tmp_path):
    # voxel axes stored as (S, R, A): RAS order is voxel axes (1, 2, 0)
    affine = np.array([[0, 0.7, 0, 0], [0, 0, 0.8, 0], [5.0, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    image = np.zeros((6, 10, 12), np.float32)
    label = np.zeros((6, 10, 12), np.uint8)
    label[2:4, 3:6, 4:8] = 1
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "i.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "l.nii.gz")
    fp = compute_fingerprint([{"image": "i.nii.gz", "label": "l.nii.gz"}], base_dir=tmp_path)
    assert fp.spacings == [pytest.approx([0.7, 0.8, 5.0])]
    assert fp.shapes == [[10, 12, 6]]


def test_fingerprint_errors_name_the_file(tmp_path):
    empty = _write_case(tmp_path, "e", np.zeros((8, 8, 8)), np.zeros((8, 8, 8)), (1, 1, 1))
    with pytest.raises(DataValidationError, match="e_seg.nii.gz: label has no foreground"):
        compute_fingerprint([empty], base_dir=tmp_path)
    with pytest.raises(DataValidationError, match="missing.json: no data-set fingerprint"):
        load_fingerprint(tmp_path / "missing.json")
