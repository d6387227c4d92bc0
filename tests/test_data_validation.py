from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from data_test_utils import SHAPE, label_map, write_nifti, write_pair
from medsegzoo.cli import main
from medsegzoo.data.datalist import make_case, new_datalist, save_datalist
from medsegzoo.data.validation import case_problems, validate_case, validate_datalist
from medsegzoo.errors import DataValidationError


def _case(case_id="c1", dataset="msd_spleen", classes=("spleen",), **kw):
    return make_case(
        case_id,
        f"{case_id}_img.nii.gz",
        dataset=dataset,
        labeled_classes=list(classes),
        label=f"{case_id}_lab.nii.gz",
        **kw,
    )


def _good(tmp_path, case_id="c1", values=(1,)):
    write_pair(tmp_path / f"{case_id}_img.nii.gz", tmp_path / f"{case_id}_lab.nii.gz", values)
    return _case(case_id)


def _message(tmp_path, entry, **kw):
    with pytest.raises(DataValidationError) as info:
        validate_case(entry, tmp_path, **kw)
    return str(info.value)


def test_valid_case_passes(tmp_path):
    validate_case(_good(tmp_path), tmp_path)
    assert case_problems(_good(tmp_path), tmp_path) == []


def test_missing_label_names_file(tmp_path):
    entry = _good(tmp_path)
    (tmp_path / "c1_lab.nii.gz").unlink()
    message = _message(tmp_path, entry)
    assert message == f"{tmp_path / 'c1_lab.nii.gz'}: label file does not exist [case c1]"


def test_shape_mismatch(tmp_path):
    entry = _good(tmp_path)
    write_nifti(tmp_path / "c1_lab.nii.gz", np.zeros((6, 6, 4), np.uint8))
    message = _message(tmp_path, entry, check_voxels=False)
    assert str(tmp_path / "c1_lab.nii.gz") in message
    assert "label shape (6, 6, 4) differs from image shape (6, 6, 5)" in message


def test_affine_mismatch_beyond_tolerance_only(tmp_path):
    entry = _good(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 1e-5  # float rounding between writers: accepted
    write_nifti(tmp_path / "c1_lab.nii.gz", label_map(), shifted)
    validate_case(entry, tmp_path)
    shifted[0, 3] = 2.5  # a different grid
    write_nifti(tmp_path / "c1_lab.nii.gz", label_map(), shifted)
    message = _message(tmp_path, entry)
    assert message.startswith(str(tmp_path / "c1_lab.nii.gz"))
    assert "affine differs from the image's" in message and "by up to 2.5 mm" in message


def test_same_world_grid_in_another_axis_order(tmp_path):
    entry = _good(tmp_path)
    image_affine = np.diag([0.8, 0.8, 2.5, 1.0])
    write_nifti(tmp_path / "c1_img.nii.gz", affine=image_affine)
    # the label stores (y, x, z) with x flipped: same voxels in the world, other array order
    label = np.flip(label_map((1,)), axis=0).transpose(1, 0, 2)
    swap = np.array(
        [[0, -0.8, 0, 0.8 * (SHAPE[0] - 1)], [0.8, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1]]
    )
    write_nifti(tmp_path / "c1_lab.nii.gz", label, swap)
    message = _message(tmp_path, entry)
    assert message.startswith(str(tmp_path / "c1_lab.nii.gz"))
    assert "holds the image's world grid" in message and "(ALS vs RAS)" in message
    assert "Orientationd" in message


def test_nan_and_inf_voxels(tmp_path):
    entry = _good(tmp_path)
    image = np.zeros(SHAPE, np.float32)
    image[0, 0, 0] = np.nan
    image[1, 0, 0] = np.inf
    image[2, 0, 0] = -np.inf
    write_nifti(tmp_path / "c1_img.nii.gz", image)
    assert (
        _message(tmp_path, entry)
        == f"{tmp_path / 'c1_img.nii.gz'}: image has 1 NaN and 2 infinite voxels [case c1]"
    )
    # a header-only check cannot see voxels
    validate_case(entry, tmp_path, check_voxels=False)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((6, 6), "image is 2D (shape (6, 6)); a 3D volume is required"),
        ((6, 6, 5, 3), "image is 4D (shape (6, 6, 5, 3)); a 3D volume is required"),
    ],
)
def test_2d_and_4d_images_are_rejected(tmp_path, shape, problem):
    entry = _good(tmp_path)
    write_nifti(tmp_path / "c1_img.nii.gz", np.zeros(shape, np.float32))
    assert problem in _message(tmp_path, entry)


def test_trailing_singleton_dimension_is_accepted(tmp_path):
    entry = _good(tmp_path)
    write_nifti(tmp_path / "c1_img.nii.gz", np.zeros((*SHAPE, 1), np.float32))
    validate_case(entry, tmp_path)


def test_multichannel_msd_task_needs_its_channel_count(tmp_path):
    entry = make_case("b1", "b1_img.nii.gz", dataset="msd_brain_tumour", label="b1_lab.nii.gz")
    write_nifti(tmp_path / "b1_lab.nii.gz", label_map((1, 2, 3)))
    write_nifti(tmp_path / "b1_img.nii.gz", np.zeros((*SHAPE, 4), np.float32))
    validate_case(entry, tmp_path)
    write_nifti(tmp_path / "b1_img.nii.gz", np.zeros((*SHAPE, 3), np.float32))
    assert (
        "image has 3 channels (shape (6, 6, 5, 3)); data set 'msd_brain_tumour' has 4"
        in _message(tmp_path, entry)
    )


def test_label_values_outside_the_data_set_map(tmp_path):
    entry = _good(tmp_path, values=(1, 7))
    message = _message(tmp_path, entry)
    assert message.startswith(str(tmp_path / "c1_lab.nii.gz"))
    assert "label values [7]" in message and "valid values: [0, 1]" in message


def test_label_aliases_are_accepted(tmp_path):
    # LA's challenge release stores the atrium as 255, an alias of 1
    write_pair(tmp_path / "la_img.nii.gz", tmp_path / "la_lab.nii.gz", (255,))
    validate_case(
        make_case(
            "la",
            "la_img.nii.gz",
            dataset="la",
            label="la_lab.nii.gz",
            labeled_classes=["left_atrium"],
        ),
        tmp_path,
    )


def test_non_binary_mask(tmp_path):
    write_nifti(tmp_path / "img.nii.gz")
    write_nifti(tmp_path / "liver.nii.gz", label_map((1, 3)))
    entry = make_case(
        "a",
        "img.nii.gz",
        dataset="abdomenatlas",
        labeled_classes=["liver"],
        masks={"liver": "liver.nii.gz"},
    )
    assert "mask values [3] are not binary" in _message(tmp_path, entry)


def test_unknown_data_set_and_foreign_classes(tmp_path):
    entry = _good(tmp_path)
    entry["dataset"] = "msd_spleeen"
    assert "unknown data set 'msd_spleeen'" in _message(tmp_path, entry)
    entry = _good(tmp_path)
    entry["labeled_classes"] = ["spleen", "liver"]
    assert "labeled_classes ['liver'] are not classes of data set 'msd_spleen'" in _message(
        tmp_path, entry
    )


def test_unreadable_file(tmp_path):
    entry = _good(tmp_path)
    (tmp_path / "c1_img.nii.gz").write_bytes(b"not a nifti")
    message = _message(tmp_path, entry)
    assert (
        message.startswith(str(tmp_path / "c1_img.nii.gz"))
        and "cannot be read as a volume" in message
    )


def test_h5_volumes(tmp_path):
    path = tmp_path / "case" / "mri_norm2.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle["image"] = np.ones(SHAPE, np.float32)
        handle["label"] = label_map((1,))
    entry = make_case(
        "case",
        "case/mri_norm2.h5",
        dataset="la",
        label="case/mri_norm2.h5",
        labeled_classes=["left_atrium"],
    )
    validate_case(entry, tmp_path)
    with h5py.File(path, "w") as handle:
        handle["image"] = np.ones(SHAPE, np.float32)
        handle["seg"] = label_map((1,))
    assert f"{path}: HDF5 file has no dataset 'label' (datasets: image, seg)" in _message(
        tmp_path, entry
    )


def test_validate_datalist_reports_every_problem_at_once(tmp_path):
    good = _good(tmp_path, "g")
    missing = _case("m")  # no files at all
    bad_values = _good(tmp_path, "v", values=(9,))
    bad_shape = _good(tmp_path, "s")
    write_nifti(tmp_path / "s_lab.nii.gz", np.zeros((2, 2, 2), np.uint8))
    duplicate = dict(good)
    datalist = new_datalist(
        {"training": [good, missing, bad_values], "test": [bad_shape, duplicate]},
        name="t",
        layout="msd",
        dataset_dir=tmp_path,
    )
    with pytest.raises(DataValidationError) as info:
        validate_datalist(datalist, tmp_path)
    problems = info.value.problems
    texts = [str(p) for p in problems]
    assert sum("m_img.nii.gz: image file does not exist" in t for t in texts) == 1
    assert sum("m_lab.nii.gz: label file does not exist" in t for t in texts) == 1
    assert any(t.startswith(str(tmp_path / "v_lab.nii.gz")) and "[9]" in t for t in texts)
    assert any(t.startswith(str(tmp_path / "s_lab.nii.gz")) and "shape" in t for t in texts)
    assert any("case id 'g' appears in training[0] and test[1]" in t for t in texts)
    assert any("image is used by training[0] and test[1]" in t for t in texts)
    assert len(problems) == 6
    assert str(info.value).splitlines()[0].endswith("6 problems")


def test_validate_datalist_passes_and_counts(tmp_path):
    datalist = new_datalist(
        {"training": [_good(tmp_path, "a"), _good(tmp_path, "b")]}, name="t", layout="msd"
    )
    path = save_datalist(datalist, tmp_path / "list.json")
    summary = validate_datalist(path, workers=2)
    assert (summary.cases, summary.files, summary.per_split["training"]) == (2, 4, 2)


def test_cli_check_prints_all_problems(tmp_path, capsys):
    datalist = new_datalist({"training": [_case("x"), _case("y")]}, name="t", layout="msd")
    path = save_datalist(datalist, tmp_path / "list.json")
    assert main(["datalist", "--check", str(path), "--base-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "4 problems" in err
    for name in ("x_img", "x_lab", "y_img", "y_lab"):
        assert f"{tmp_path / name}.nii.gz: " in err


def test_cli_writes_nothing_when_validation_fails(tmp_path, capsys):
    root = tmp_path / "Task09_Spleen"
    write_pair(
        root / "imagesTr" / "spleen_1.nii.gz", root / "labelsTr" / "spleen_1.nii.gz", values=(1, 5)
    )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Spleen",
                "labels": {"0": "background", "1": "spleen"},
                "training": [
                    {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}
                ],
            }
        )
    )
    out = tmp_path / "out" / "list.json"
    assert main(["datalist", "msd", str(root), "--out", str(out), "--validate"]) == 1
    assert "label values [5]" in capsys.readouterr().err
    assert not out.exists()
    assert (
        main(["datalist", "msd", str(root), "--out", str(out)]) == 0
    )  # without voxel checks it is written
    assert json.loads(out.read_text())["training"][0]["label"] == "labelsTr/spleen_1.nii.gz"


def _training_problems(tmp_path, datalist, **kw):
    from medsegzoo.data.validation import check_training_datalist

    with pytest.raises(DataValidationError) as info:
        check_training_datalist(datalist, tmp_path, **kw)
    return info.value


def test_check_training_datalist_reports_every_problem_at_once(tmp_path):
    missing = _case("m")  # no files at all
    four_d = _good(tmp_path, "d")
    write_nifti(tmp_path / "d_img.nii.gz", np.zeros((*SHAPE, 3), np.float32))
    truncated = _good(tmp_path, "t")
    write_nifti(tmp_path / "t_lab.nii.gz", np.zeros((40, 40, 40), np.uint8))  # big enough to cut past its header
    data = (tmp_path / "t_lab.nii.gz").read_bytes()
    (tmp_path / "t_lab.nii.gz").write_bytes(data[: len(data) // 2])
    unknown_class = _good(tmp_path, "u")
    unknown_class["labeled_classes"] = ["liver"]  # not a class of msd_spleen
    no_label = make_case("n", "n_img.nii.gz", dataset="msd_spleen", labeled_classes=[])
    write_nifti(tmp_path / "n_img.nii.gz")
    unlabeled = make_case("x", "x_img.nii.gz", dataset="msd_spleen", labeled_classes=[])  # fine: unlabeled split
    write_nifti(tmp_path / "x_img.nii.gz")
    datalist = new_datalist(
        {"training": [_good(tmp_path, "g"), missing, four_d, truncated], "validation": [unknown_class, no_label],
         "unlabeled": [unlabeled]},
        name="t", layout="msd",
    )
    err = _training_problems(tmp_path, datalist, keys=("training", "validation", "unlabeled"))
    texts = [str(p) for p in err.problems]
    assert any(t.startswith(f"{tmp_path / 'm_img.nii.gz'}: image file does not exist") for t in texts)
    assert any(t.startswith(f"{tmp_path / 'm_lab.nii.gz'}: label file does not exist") for t in texts)
    assert any(t.startswith(f"{tmp_path / 'd_img.nii.gz'}: image is 4D") for t in texts)
    assert any(t.startswith(f"{tmp_path / 't_lab.nii.gz'}: file is truncated or corrupt") for t in texts)
    assert any("validation[0]: labeled_classes ['liver'] are not classes of data set 'msd_spleen'" in t for t in texts)
    assert any("validation[1]: has no 'label' or 'masks'; a training case needs its label [case n]" in t for t in texts)
    assert len(texts) == 6, texts
    assert str(err).splitlines()[0] == f"datalist 't' cannot be used for training (files under {tmp_path}): 6 problems"


def test_check_training_datalist_label_system_and_empty_split(tmp_path):
    from medsegzoo.data.validation import check_training_datalist, covered_classes

    # a merged kidney covers both sides; a tumor covers its organ only when the organ is labeled too
    assert covered_classes(["kidney", "kidney_tumor"], "tct5") == ["kidney_left", "kidney_right"]
    assert covered_classes(["liver_tumor"], "tct5") == [] and covered_classes(["liver", "liver_tumor"], "tct5") == ["liver"]
    datalist = new_datalist({"training": [_good(tmp_path, "a")]}, name="t", layout="msd")
    assert check_training_datalist(datalist, tmp_path, "tct5").cases == 1
    err = _training_problems(tmp_path, datalist, label_system="la")  # spleen is no class of LA
    assert "training[0]: labeled classes ['spleen'] cover none of the 'la' classes [case a]" in str(err)
    err = _training_problems(tmp_path, new_datalist({"validation": [_good(tmp_path, "b")]}, name="t", layout="msd"))
    assert "the split 'training' is empty or missing; training needs its cases" in str(err)


def test_check_training_datalist_names_a_wrong_dataset_dir_once(tmp_path):
    path = save_datalist(new_datalist({"training": [_case("a"), _case("b")]}, name="t", layout="msd"), tmp_path / "list.json")
    err = _training_problems(tmp_path / "nowhere", path)
    assert str(err) == f"{tmp_path / 'nowhere'}: dataset_dir does not exist; the paths of {path} start from it"


def test_check_training_datalist_reads_headers_only_unless_asked(tmp_path, monkeypatch):
    from medsegzoo.data import validation

    entry = _good(tmp_path, "v", values=(9,))  # a label value outside msd_spleen's map: a voxel problem
    datalist = new_datalist({"training": [entry]}, name="t", layout="msd")
    asked = []
    read = validation.read_volume
    monkeypatch.setattr(validation, "read_volume", lambda *a, **kw: asked.append(kw["voxels"]) or read(*a, **kw))
    assert validation.check_training_datalist(datalist, tmp_path).cases == 1
    assert asked == [False, False]  # image and label headers, no voxels
    err = _training_problems(tmp_path, datalist, check_voxels=True)
    assert f"{tmp_path / 'v_lab.nii.gz'}: label values [9]" in str(err)


def test_fewer_training_cases_than_one_batch_is_an_error_before_training(tmp_path):
    from medsegzoo.data.validation import check_training_datalists

    datalist = new_datalist({"training": [_good(tmp_path, "c1"), _good(tmp_path, "c2")]}, name="t", layout="msd")
    path = tmp_path / "datalist.json"
    save_datalist(datalist, path)
    assert len(check_training_datalists(path, tmp_path, keys=["training"], min_training_cases=2)) == 1
    with pytest.raises(DataValidationError) as info:
        check_training_datalists(path, tmp_path, keys=["training"], min_training_cases=3)
    assert str(info.value) == (f"{path}: split 'training' holds 2 case(s), fewer than one batch of 3 (batch_size); "
                               "add cases or lower batch_size")
