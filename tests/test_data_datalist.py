from __future__ import annotations

import json
import os

import pytest
from monai.data import load_decathlon_datalist

from medsegzoo.data.datalist import (
    SPLIT_KEYS,
    load_datalist,
    load_split,
    make_case,
    new_datalist,
    random_split,
    relative_path,
    save_datalist,
)
from medsegzoo.data.combine import combine_datalists
from medsegzoo.errors import DataValidationError


def _datalist(tmp_path):
    entries = [
        make_case(
            "s0001",
            "s0001/ct.nii.gz",
            dataset="abdomenatlas",
            labeled_classes=["liver"],
            masks={"liver": "s0001/segmentations/liver.nii.gz"},
            age=50,
            sex="F",
            site=None,
        ),
        make_case(
            "btcv_0002",
            "img/img0002.nii.gz",
            dataset="btcv",
            labeled_classes=["spleen"],
            label="label/label0002.nii.gz",
        ),
    ]
    return new_datalist({"training": entries}, name="t", layout="x", dataset_dir=tmp_path)


def test_make_case_drops_missing_metadata_and_rejects_label_plus_masks():
    entry = make_case(
        "a", "a.nii.gz", dataset="btcv", label="l.nii.gz", site=None, age=float("nan"), sex="M"
    )
    assert entry == {
        "case_id": "a",
        "image": "a.nii.gz",
        "label": "l.nii.gz",
        "dataset": "btcv",
        "labeled_classes": [],
        "sex": "M",
    }
    with pytest.raises(DataValidationError, match="either a label map or per-class masks"):
        make_case("a", "a.nii.gz", dataset="btcv", label="l.nii.gz", masks={"liver": "m.nii.gz"})


def test_new_datalist_label_system(tmp_path):
    amos_ct = make_case("amos_0001", "a.nii.gz", dataset="amos")
    amos_mr = make_case("amos_0507", "b.nii.gz", dataset="amos_mr")
    chaos_mr = make_case("chaos_mr_1", "c", dataset="chaos_mr")
    # AMOS CT and MR share one label map -> one label system; CHAOS CT/MR maps differ -> None
    assert (
        new_datalist({"training": [amos_ct, amos_mr]}, name="a", layout="amos")["label_system"]
        == "amos"
    )
    mixed = new_datalist({"training": [amos_ct], "test": [chaos_mr]}, name="m", layout="x")
    assert mixed["label_system"] is None
    assert mixed["datasets"] == ["amos", "chaos_mr"]
    assert list(mixed)[-len(SPLIT_KEYS) :] == list(SPLIT_KEYS)


def test_save_and_load_round_trip(tmp_path):
    datalist = _datalist(tmp_path)
    path = save_datalist(datalist, tmp_path / "sub" / "list.json")
    assert json.loads(path.read_text()) == datalist
    assert load_datalist(path) == datalist


def test_save_refuses_malformed_datalist_and_leaves_old_file(tmp_path):
    path = tmp_path / "list.json"
    path.write_text('{"old": true}')
    bad = {
        "training": [
            {"case_id": "a"},
            {"image": 3, "case_id": "b", "dataset": "btcv", "labeled_classes": []},
        ]
    }
    with pytest.raises(DataValidationError) as info:
        save_datalist(bad, path)
    message = str(info.value)
    # every problem of every entry in one message
    assert "training[0]" in message and "'image' must be a path string" in message
    assert "training[1]" in message and "'dataset'" in message
    assert path.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json"]  # no temporary file left


def test_load_datalist_errors_name_the_file(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_datalist(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataValidationError, match=r"broken\.json: not valid JSON"):
        load_datalist(broken)
    entry = {"case_id": "a", "image": "a.nii.gz", "dataset": "btcv", "labeled_classes": ["spleen"]}
    broken.write_text(json.dumps({"training": [entry]}))
    with pytest.raises(
        DataValidationError, match="lists labeled_classes .* but has no 'label' or 'masks'"
    ):
        load_datalist(broken)


def test_monai_load_decathlon_datalist_reads_our_paths(tmp_path):
    datalist = _datalist(tmp_path)
    path = save_datalist(datalist, tmp_path / "lists" / "list.json")
    items = load_decathlon_datalist(path, data_list_key="training", base_dir=tmp_path)
    assert items[1]["image"] == os.path.normpath(tmp_path / "img/img0002.nii.gz")
    assert items[1]["label"] == os.path.normpath(tmp_path / "label/label0002.nii.gz")
    assert items[1]["labeled_classes"] == ["spleen"]


def test_load_split_resolves_masks_and_keeps_case_ids(tmp_path):
    datalist = _datalist(tmp_path)
    (tmp_path / "s0001").mkdir()  # a case folder named like the case id
    path = save_datalist(datalist, tmp_path / "list.json")
    ours = load_split(path, "training")
    assert ours[0]["case_id"] == "s0001"
    assert ours[0]["masks"]["liver"] == os.path.normpath(
        tmp_path / "s0001/segmentations/liver.nii.gz"
    )
    assert ours[0]["image"] == os.path.normpath(tmp_path / "s0001/ct.nii.gz")
    # MONAI rewrites any string naming an existing path: the reason load_split exists
    monai_items = load_decathlon_datalist(path, data_list_key="training")
    assert monai_items[0]["case_id"] == os.path.normpath(tmp_path / "s0001")
    assert monai_items[0]["masks"]["liver"] == "s0001/segmentations/liver.nii.gz"
    with pytest.raises(DataValidationError, match="unknown split 'train'"):
        load_split(path, "train")


def test_load_split_falls_back_to_recorded_dataset_dir(tmp_path):
    datalist = _datalist(tmp_path / "data")
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "data" / "s0001").mkdir()
    (tmp_path / "data" / "s0001" / "ct.nii.gz").write_bytes(b"")
    path = save_datalist(datalist, tmp_path / "elsewhere" / "list.json")
    assert load_split(path)[0]["image"] == os.path.normpath(
        tmp_path / "data" / "s0001" / "ct.nii.gz"
    )
    assert load_split(path, base_dir="/x")[0]["image"] == os.path.normpath("/x/s0001/ct.nii.gz")


def test_random_split_is_deterministic_disjoint_and_order_free():
    items = [f"case_{i:02d}" for i in range(20)]
    train, val, test = random_split(items, val_fraction=0.1, test_fraction=0.25, seed=3)
    assert (len(train), len(val), len(test)) == (13, 2, 5)
    assert sorted(train + val + test) == items
    assert random_split(list(reversed(items)), val_fraction=0.1, test_fraction=0.25, seed=3) == (
        train,
        val,
        test,
    )
    assert random_split(items, val_fraction=0.1, test_fraction=0.25, seed=4) != (train, val, test)


def test_random_split_small_sets_keep_a_training_case():
    train, val, test = random_split(["a", "b", "c"], val_fraction=0.1, test_fraction=0.1)
    assert (len(train), len(val), len(test)) == (1, 1, 1)
    train, val, test = random_split(["a"], val_fraction=0.3, test_fraction=0.3)
    assert (train, val, test) == (["a"], [], [])
    assert random_split([], test_fraction=0.5) == ([], [], [])


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_random_split_rejects_bad_fractions(val, test):
    with pytest.raises(DataValidationError, match="fraction"):
        random_split(["a", "b"], val_fraction=val, test_fraction=test)


def test_relative_path_is_posix(tmp_path):
    assert relative_path(tmp_path / "a" / "b.nii.gz", tmp_path) == "a/b.nii.gz"
    assert relative_path(tmp_path / "x.nii", tmp_path / "a") == "../x.nii"


def _two_small_sets(tmp_path):
    """Two one-case data sets under tmp_path/root with the files their entries name."""
    root = tmp_path / "root"
    for name, case, dataset, classes in (("a", "k1", "kits19", ["kidney"]), ("b", "s1", "msd_spleen", ["spleen"])):
        folder = root / name
        folder.mkdir(parents=True)
        for f in ("img.nii.gz", "lab.nii.gz"):
            (folder / f).write_bytes(b"x")
        (folder / "dl.json").write_text(json.dumps({
            "name": name, "layout": name, "label_system": None, "dataset_dir": str(folder),
            "training": [{"case_id": case, "image": "img.nii.gz", "label": "lab.nii.gz",
                          "dataset": dataset, "labeled_classes": classes}],
        }))
    return root


def test_combine_datalists_prefixes_paths_and_rejects_duplicates(tmp_path):
    root = _two_small_sets(tmp_path)
    out = combine_datalists([(root / "a" / "dl.json", None), (root / "b" / "dl.json", None)], root / "mix.json", root)
    mixed = load_datalist(out)
    assert [e["image"] for e in mixed["training"]] == ["a/img.nii.gz", "b/img.nii.gz"]
    assert [e["label"] for e in mixed["training"]] == ["a/lab.nii.gz", "b/lab.nii.gz"]
    assert mixed["datasets"] == ["kits19", "msd_spleen"] and mixed["label_system"] is None
    with pytest.raises(DataValidationError, match="'k1' is also in"):
        combine_datalists([(root / "a" / "dl.json", None)] * 2, root / "mix2.json", root)
    with pytest.raises(DataValidationError, match="not inside"):
        combine_datalists([(root / "a" / "dl.json", None)], root / "mix3.json", root / "b")
    (root / "b" / "lab.nii.gz").unlink()
    with pytest.raises(DataValidationError, match="lab.nii.gz"):
        combine_datalists([(root / "a" / "dl.json", None), (root / "b" / "dl.json", None)], root / "mix4.json", root)
    assert not (root / "mix2.json").exists() and not (root / "mix4.json").exists()


def test_combine_command_writes_the_merged_list(tmp_path, capsys):
    from medsegzoo.cli import main

    root = _two_small_sets(tmp_path)
    (root / "b" / "dl.json").write_text((root / "b" / "dl.json").read_text().replace(f'"dataset_dir": "{root / "b"}", ', ""))
    out = root / "mix.json"
    code = main(["datalist", "--combine", str(root / "a" / "dl.json"), f"{root / 'b' / 'dl.json'}::{root / 'b'}",
                 "--dataset-dir", str(root), "--out", str(out), "--name", "mix"])
    assert code == 0
    mixed = load_datalist(out)
    assert mixed["name"] == "mix" and [e["case_id"] for e in mixed["training"]] == ["k1", "s1"]
    assert "data sets: kits19 (1), msd_spleen (1)" in capsys.readouterr().out
    assert main(["datalist", "--combine", str(root / "a" / "dl.json"), "--out", str(out)]) == 2  # no --dataset-dir
