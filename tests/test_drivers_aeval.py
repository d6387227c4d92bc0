"""A-Eval protocol driver: label filling for joint training, and protocols 1 and 4 end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_utils import FLARE22_SMOKE, MEDSEGZOO, run_command

from medsegzoo.drivers.aeval import fill_missing_classes, main, parse_set, run_protocol
from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.evaluation.curves import tensorboard_scalars

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "stunet_cross_dataset_evaluation"


def test_fill_missing_classes_keeps_ground_truth_and_fills_background_only() -> None:
    # MSD Spleen truth (spleen = 1) aligned to aeval8 (spleen = 3); the model predicts liver (1)
    # partly over the spleen: the truth wins there, the rest of the liver fills the background
    label = np.zeros((4, 4, 1), np.int32)
    label[0:2, 0:2] = 1
    pred = np.zeros((4, 4, 1), np.int32)
    pred[0:3, 0:3] = 1  # liver, overlapping the spleen
    pred[3, 3] = 3  # a predicted spleen voxel: spleen is labeled, so it is not "missing"
    out = fill_missing_classes(label, "msd_spleen", pred, "aeval8", missing=["liver"])
    expected = np.zeros((4, 4, 1), np.int32)
    expected[0:3, 0:3] = 1
    expected[0:2, 0:2] = 3
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(DataValidationError, match="shape"):
        fill_missing_classes(label, "msd_spleen", pred[:2], "aeval8", missing=["liver"])


def test_set_parsing_and_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text("{}")
    s = parse_set(f"x={tmp_path / 'd.json'}::{tmp_path}")
    assert s.name == "x" and s.dataset_dir == tmp_path.resolve()
    assert parse_set(f"y={tmp_path / 'd.json'}").dataset_dir == tmp_path.resolve()
    with pytest.raises(DataValidationError, match="does not exist"):
        parse_set(f"z={tmp_path / 'missing.json'}")
    with pytest.raises(DataValidationError, match="NAME=DATALIST"):
        parse_set("no-equals-sign")
    with pytest.raises(UnknownNameError, match="'q' was not given"):
        run_protocol(1, [s], ["q"], ["x"], BUNDLE, tmp_path / "w")
    with pytest.raises(UnknownNameError, match="protocol 7"):
        run_protocol(7, [s], ["x"], ["x"], BUNDLE, tmp_path / "w")


@pytest.mark.slow
def test_protocols_1_and_4_write_the_matrix(tmp_path: Path, phantom_set: Callable[..., tuple[Path, Path]]) -> None:
    flare, flare_list = phantom_set("flare22", **FLARE22_SMOKE)  # the STU-Net bundle tests' set
    spleen, spleen_list = phantom_set("msd_spleen", **{**FLARE22_SMOKE, "site": 2, "seed": 1})
    smoke = BUNDLE / "configs" / "smoke.json"
    sets = ["--set", f"flare={flare_list}::{flare}", "--set", f"spleen={spleen_list}::{spleen}"]
    # `python -m medsegzoo.drivers.aeval ARGS` is `sys.exit(main(ARGS))`: the same parser, in this process
    common = ["--bundle", BUNDLE, *sets, "--config", smoke, "--override", "max_epochs=1", "--override", "val_interval=100",
              "--no-mirroring"]
    p1 = tmp_path / "p1"
    args = [*common, "--protocol", 1, "--work-dir", p1, "--train-sets", "flare", "--test-sets", "flare", "spleen"]
    assert main([str(a) for a in args]) == 0
    matrix = pd.read_csv(p1 / "aeval_matrix_dsc.csv", index_col=0)
    assert list(matrix.index) == ["flare"] and list(matrix.columns) == ["flare", "spleen"]
    table = pd.read_csv(p1 / "aeval_per_case.csv")
    spleen_rows = table[table["test_set"] == "spleen"]
    # the spleen test set's cell averages the spleen only; its other classes are absent (NaN)
    assert spleen_rows[spleen_rows["class"] != "spleen"]["dsc"].isna().all()
    assert matrix.loc["flare", "spleen"] == pytest.approx(100 * spleen_rows[spleen_rows["class"] == "spleen"]["dsc"].mean())
    assert "A-Eval cross-dataset matrix" in (p1 / "report" / "summary.md").read_text()

    p4 = tmp_path / "p4"  # the same driver called from Python (the command line ran protocol 1)
    # FLARE22 with a validation case: the joint models validate on it (and only on it: the
    # MSD Spleen set does not label every class)
    flare, flare_list = phantom_set("flare22", **{**FLARE22_SMOKE, "split": "0.5/0.25/0.25"})
    data = [parse_set(f"flare={flare_list}::{flare}"), parse_set(f"spleen={spleen_list}::{spleen}")]
    run_protocol(4, data, ["flare", "spleen"], ["flare"], BUNDLE, p4, configs=[smoke],
                 overrides={"max_epochs": 1, "val_interval": 1}, use_mirroring=False)
    # round 1 on FLARE22 (labels all 8), round 2 after filling MSD Spleen's missing 7 classes
    assert (p4 / "Joint_r1" / "models" / "model.pt").is_file() and (p4 / "Joint_r2" / "models" / "model.pt").is_file()
    flare_validation = [e["image"] for e in data[0].split("validation")]
    for model in ("Joint_r1", "Joint_r2"):
        derived = json.loads((p4 / "datalists" / f"{model}.json").read_text())
        assert [e["image"] for e in derived["validation"]] == flare_validation and len(flare_validation) == 1
        # the validator's TensorBoard handler wrote the epoch's validation Dice (the learning curve)
        curve = tensorboard_scalars(p4 / model / "eval", "val_mean_dice")
        assert [step for step, _ in curve] == [1] and 0.0 <= curve[0][1] <= 1.0
    joint = pd.read_csv(p4 / "aeval_matrix_dsc.csv", index_col=0)
    assert list(joint.index) == ["Joint r2"]
    filled = sorted((p4 / "pseudo_labels").rglob("*_filled.nii.gz"))
    assert len(filled) == 2  # both MSD Spleen training cases got their missing classes filled


@pytest.mark.slow
def test_protocol_2_pseudo_labels_the_unlabeled_scans_and_retrains(tmp_path: Path) -> None:
    proc = run_command([*MEDSEGZOO, "phantoms", tmp_path / "flare", "--layout", "flare22", "--cases", 2, "--unlabeled", 2,
                        "--size", 48, "--site", 0, "--seed", 0, "--no-tumors", "--quiet"])
    folder = Path(proc.stdout.strip().splitlines()[-1])
    datalist = tmp_path / "flare" / "datalist.json"
    run_command([*MEDSEGZOO, "datalist", "flare22", folder, "--out", datalist, "--split", "0.5/0.0/0.5", "--seed", 0])
    data = parse_set(f"flare={datalist}::{folder}")
    assert len(data.split("unlabeled")) == 2 and len(data.split("training")) == 1
    work = tmp_path / "p2"
    result = run_protocol(2, [data], ["flare"], ["flare"], BUNDLE, work, configs=[BUNDLE / "configs" / "smoke.json"],
                          overrides={"max_epochs": 1, "val_interval": 100, "batch_size": 1},  # one labeled case
                          use_mirroring=False)
    matrix = pd.read_csv(work / "aeval_matrix_dsc.csv", index_col=0)
    assert list(matrix.index) == ["flare", "flare w/ PL"]
    assert result is not None
    # the second model trained on the labeled case plus the two pseudo-labeled scans
    derived = json.loads((work / "datalists" / "flare_w__PL.json").read_text())
    labels = [Path(e["label"]) for e in derived["training"]]
    pseudo = [p for p in labels if p.is_relative_to(work / "pseudo_labels")]
    assert len(labels) == 3 and len(pseudo) == 2 and all(p.is_file() for p in pseudo)
    assert (work / "flare_w__PL" / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_protocol_3_trains_ct_mr_and_mixed_models(tmp_path: Path, phantom_set: Callable[..., tuple[Path, Path]]) -> None:
    from medsegzoo.data.combine import combine_datalists

    root = tmp_path / "amos"
    parts = []
    for layout, seed in (("amos", 0), ("amos_mr", 1)):
        proc = run_command([*MEDSEGZOO, "phantoms", root / layout, "--layout", layout, "--cases", 2, "--size", 48,
                            "--site", 0, "--seed", seed, "--no-tumors", "--quiet"])
        folder = Path(proc.stdout.strip().splitlines()[-1])
        run_command([*MEDSEGZOO, "datalist", layout, folder, "--out", root / layout / "datalist.json", "--split", "1.0/0.0/0.0"])
        parts.append((root / layout / "datalist.json", folder))
    mixed = combine_datalists(parts, root / "datalist.json", root, name="amos_ct_mr")
    test_folder, test_list = phantom_set("flare22", **{**FLARE22_SMOKE, "site": 2, "seed": 2})
    sets = [parse_set(f"amos={mixed}::{root}"), parse_set(f"flare={test_list}::{test_folder}")]
    assert sorted(c["modality"] for c in sets[0].split("training")) == ["CT", "CT", "MR", "MR"]
    work = tmp_path / "p3"
    run_protocol(3, sets, ["amos"], ["flare"], BUNDLE, work, configs=[BUNDLE / "configs" / "smoke.json"],
                 overrides={"max_epochs": 1, "val_interval": 100}, use_mirroring=False)
    matrix = pd.read_csv(work / "aeval_matrix_dsc.csv", index_col=0)
    assert list(matrix.index) == ["amos CT", "amos MR", "amos CT+MR"] and list(matrix.columns) == ["flare"]
    for model, modalities in (("amos_CT", {"CT"}), ("amos_MR", {"MR"}), ("amos_CT_MR", {"CT", "MR"})):
        derived = json.loads((work / "datalists" / f"{model}.json").read_text())
        assert {e["modality"] for e in derived["training"]} == modalities
        assert (work / model / "models" / "model.pt").is_file()
    with pytest.raises(DataValidationError, match="both CT and MR"):
        run_protocol(3, sets, ["flare"], ["flare"], BUNDLE, tmp_path / "p3b")
