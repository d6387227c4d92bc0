"""Bundle tct_partial_label_segmentation through the real `python -m monai.bundle` CLI.

Phantoms of three partially labeled data sets (KiTS19-like kidneys, MSD liver, MSD spleen) from
different sites are written and listed with the real `medsegzoo phantoms` / `medsegzoo datalist`
commands and mixed into one datalist; a BTCV-like fully labeled set of another site is the
unseen test set.

The command lines are parsed by MONAI's own ``fire`` entry point and run in the test process
(``bundle_utils.run_bundle``); one run per bundle starts the real ``python -m monai.bundle``
process (and so does every hard-exit crash, which needs a process of its own).
"""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundle_checks import (
    assert_foreign_checkpoint_fails,
    assert_prediction_equals_direct_forward,
    assert_train_and_inference_agree,
)
from bundle_utils import (
    assert_bf16_steps_match_fp32,
    META_SCHEMA,
    bundle_dir,
    monai_bundle,
    run_bundle,
)

from medsegzoo.bundle_runs import BundleRun, run_in_process
from medsegzoo.data.datalist import load_split
from medsegzoo.data.predictions import class_mask_path, prediction_path
from medsegzoo.inference.overlay import save_overlay_png

BUNDLE = "tct_partial_label_segmentation"
TRAIN = ["train.json", "smoke.json"]
INFER = ["inference.json", "smoke.json"]
EVAL = ["inference.json", "evaluate.json", "smoke.json"]
PARTS = [
    {"layout": "kits19", "cases": 4, "seed": 1, "site": 1},
    {"layout": "msd_liver", "cases": 4, "seed": 2, "site": 2},
    {"layout": "msd_spleen", "cases": 4, "seed": 3, "site": 0},
]


@pytest.fixture(scope="module")
def data(phantom_set, mixed_phantom_set):
    dataset_dir, datalist = mixed_phantom_set(PARTS, 48)
    unseen_dir, unseen = phantom_set("btcv", cases=2, size=48, seed=9, site=4, split=None)
    return {"dataset_dir": dataset_dir, "datalist": datalist, "unseen_dir": unseen_dir, "unseen": unseen}


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_crash_resume_inference_evaluate(data, tmp_path):
    out = tmp_path / "bundle"
    common = {"dataset_dir": data["dataset_dir"], "datalist": data["datalist"], "bundle_root": out}
    # 1) `run` form, killed hard (no exception handler, no final checkpoint) after iteration 3;
    #    checkpoints every 2 iterations, so the last one on disk is iteration 2
    crash = tmp_path / "crash.json"
    crash.write_text(json.dumps({
        "checkpoint_interval": 2,
        "run": [
            "$@train#resume.attach(@train#trainer)",
            "$@train#checkpoint_saver.attach(@train#trainer)",
            (
                "$@train#trainer.add_event_handler(monai.engines.workflow.Events"
                ".ITERATION_COMPLETED(once=3), lambda engine: os._exit(3))"
            ),
            "$@train#trainer.run()",
        ],
    }))
    proc = run_bundle(BUNDLE, [*TRAIN, str(crash)], common, check=False, cli=True)  # the one real CLI run
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = sorted(p.name for p in (out / "models").glob("*.pt"))
    assert saved == ["checkpoint_iteration=2.pt"], saved  # no model.pt from a run that did not complete

    # 2) the same training started again (`run training` form, in this process) resumes
    proc = run_bundle(BUNDLE, TRAIN, common, run_id="training")
    log = proc.stdout + proc.stderr
    match = re.search(r"resumed from \S*checkpoint_iteration=2\.pt at iteration (\d+) \(epoch (\d+)\)", log)
    assert match and match.group(1) == "2", log[-3000:]
    assert "Engine run resuming from iteration" in log
    # 6 training cases, batch 2: 3 iterations per epoch, 2 epochs
    final = _load(out / "models" / "checkpoint_final.pt")
    assert final["trainer"]["iteration"] == 6
    adam_steps = {int(s["step"]) for s in final["optimizer"]["state"].values()}
    assert adam_steps == {6}  # optimizer state carried over: 2 before the crash + 4 after
    assert final["lr_scheduler"]["last_epoch"] == 2  # epoch-level scheduler stepped twice
    assert set(final["loss"]) == {"log_sigma_main", "log_sigma_aux"}  # UAUWL uncertainties saved
    assert any(k.startswith("aux_heads.") for k in final["network"])
    # inference weights: the final network without its training-only auxiliary heads; the
    # validation split also selected a best model, written the same way
    for name in ("model.pt", "model_best.pt"):
        weights = _load(out / "models" / name)
        assert not any(k.startswith("aux_heads.") for k in weights), name
        assert set(weights) == {k for k in final["network"] if not k.startswith("aux_heads.")}
    for key, value in _load(out / "models" / "model.pt").items():
        assert torch.equal(value, final["network"][key]), key  # model.pt is the last network

    # 3) inference from inference.json alone (model-zoo style), in process, with per-organ masks
    run_in_process(BundleRun(bundle_dir(BUNDLE), INFER, {**common, "save_class_masks": True}, run_id="inference"))
    test_cases = load_split(data["datalist"], "test", base_dir=data["dataset_dir"])
    assert len(test_cases) == 3
    for case in test_cases:
        pred_file = prediction_path(out / "eval", case["case_id"])
        pred, img = nib.load(str(pred_file)), nib.load(str(case["image"]))
        assert pred.shape[:3] == img.shape[:3] and np.allclose(pred.affine, img.affine, atol=1e-3)
        values = set(np.unique(np.asarray(pred.dataobj)).tolist())
        assert values <= {0, 1, 2, 3, 4, 5}
        liver = class_mask_path(out / "eval", case["case_id"], "liver")
        assert np.array_equal(np.asarray(nib.load(str(liver)).dataobj), (np.asarray(pred.dataobj) == 3).astype(np.uint8))
    png = save_overlay_png(case["image"], pred_file, tmp_path / "overlay.png")
    assert png.stat().st_size > 1000

    # 4) evaluate.json over inference.json: on the partially labeled test split only each case's
    #    labeled classes count
    run_in_process(BundleRun(bundle_dir(BUNDLE), EVAL, common, run_id="evaluating"))
    table = pd.read_csv(out / "eval" / "report" / "per_case.csv")
    expected = {("kits19", "kidney_left"), ("kits19", "kidney_right"), ("msd_liver", "liver"), ("msd_spleen", "spleen")}
    assert set(zip(table["dataset"], table["class"])) == expected
    assert table["dsc"].between(0, 1).all()
    assert (out / "eval" / "report" / "summary.md").is_file()

    # 5) the fully labeled unseen set of another site: every class counts
    unseen = {**common, "dataset_dir": data["unseen_dir"], "datalist": data["unseen"], "infer_split": "training",
              "output_dir": out / "eval_unseen"}
    run_in_process(BundleRun(bundle_dir(BUNDLE), EVAL, unseen, run_id="evaluating"))
    table = pd.read_csv(out / "eval_unseen" / "report" / "per_case.csv")
    assert sorted(set(table["class"])) == sorted(["kidney_left", "kidney_right", "liver", "pancreas", "spleen"])
    assert len(set(table["case"])) == 2

    # 6) the written label map is the argmax of the checkpoint's network on the same input
    #    (a 1 mm RAS case at the network's own spacing: preprocessing is intensity only)
    case = next(c for c in test_cases if c["dataset"] == "msd_spleen")
    exact = {**common, "spacing": [1.0, 1.0, 1.0], "amp": False, "output_dir": out / "eval_exact"}
    run_in_process(BundleRun(bundle_dir(BUNDLE), INFER, exact, run_id="inference"))
    assert_prediction_equals_direct_forward(BUNDLE, INFER, exact, case, to_labels=lambda x: x[0].argmax(0))

    # 7) weights of another network stop inference before anything is written
    assert_foreign_checkpoint_fails(BUNDLE, INFER, common, tmp_path)


def test_trains_without_a_validation_split_as_in_the_paper(data, tmp_path):
    # the paper splits 80/20 into training and test: no validation, the last network is the model
    datalist = json.loads(data["datalist"].read_text())
    assert datalist.pop("validation")  # the fixture has one; this run must not
    path = tmp_path / "no_validation.json"
    path.write_text(json.dumps(datalist))
    out = tmp_path / "bundle"
    run_in_process(BundleRun(bundle_dir(BUNDLE), TRAIN, {"dataset_dir": data["dataset_dir"], "datalist": path,
                                                         "bundle_root": out}, run_id="training"))
    models = out / "models"
    assert (models / "model.pt").is_file() and not (models / "model_best.pt").exists()  # smoke: validation at epoch 2
    final = _load(models / "checkpoint_final.pt")["network"]
    for key, value in _load(models / "model.pt").items():
        assert torch.equal(value, final[key]), key


def test_train_and_inference_configs_agree():
    assert_train_and_inference_agree(BUNDLE, training_only=["aux_heads."])
    assert_train_and_inference_agree(BUNDLE, ["train.json", "cpu.json"], ["inference.json", "cpu.json"],
                                     training_only=["aux_heads."])


def test_verify_metadata_and_net_in_out_with_inference_json_alone():
    root = bundle_dir(BUNDLE)
    proc = monai_bundle("verify_metadata", "--meta_file", root / "configs" / "metadata.json", "--filepath", META_SCHEMA)
    assert "metadata is verified with no error" in proc.stdout + proc.stderr
    proc = monai_bundle(
        "verify_net_in_out", "network_def", "--meta_file", root / "configs" / "metadata.json",
        "--config_file", root / "configs" / "inference.json",
    )
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr


def test_bad_inputs_fail_before_training_with_every_problem_named(data, tmp_path):
    datalist = json.loads(data["datalist"].read_text())
    training = datalist["training"]
    kits = [c for c in training if c["dataset"] == "kits19"]
    spleen = next(c for c in training if c["dataset"] == "msd_spleen")
    label = nib.load(str(data["dataset_dir"] / spleen["label"]))
    array = np.asarray(label.dataobj).copy()
    array[0, 0, 0] = 7  # MSD spleen only knows 0 and 1
    bad_label = tmp_path / "bad_spleen_label.nii.gz"
    nib.save(nib.Nifti1Image(array, label.affine), str(bad_label))
    replaced = {
        kits[0]["case_id"]: dict(kits[0], labeled_classes=[]),  # empty
        kits[1]["case_id"]: dict(kits[1], labeled_classes=["kidnay"]),  # unknown name
        spleen["case_id"]: dict(spleen, label=str(bad_label)),  # value outside its data set
    }
    bad = dict(datalist, training=[replaced.get(c["case_id"], c) for c in training])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "bundle"
    proc = run_bundle(BUNDLE, TRAIN, {"dataset_dir": data["dataset_dir"], "datalist": path, "bundle_root": out},
                      run_id="training", check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "DataValidationError" in log, log[-3000:]
    assert f"case {kits[0]['case_id']!r}): 'labeled_classes' is empty" in log
    assert "kidnay" in log
    assert "bad_spleen_label.nii.gz" in log and "7" in log
    assert "Engine run" not in log  # nothing trained
    assert not list((out / "models").glob("*.pt"))


@pytest.mark.parametrize(
    ("overrides", "aux_heads", "loss_params"),
    [
        ({}, True, 2),  # TCT with UAUWL: sigma_main + one shared sigma
        ({"loss_weighting": "uwl"}, True, 6),  # per-task UWL: 1 + N sigmas
        ({"loss_weighting": "fixed", "consistency": False}, True, 0),
        ({"method": "tal"}, False, 0),
        ({"method": "me"}, False, 0),
    ],
)
def test_method_and_ablation_switches_build_the_right_parts(overrides, aux_heads, loss_params):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle_dir(BUNDLE) / "configs" / "train.json")])
    parser.update(overrides)
    net = parser.get_parsed_content("network_def")
    loss = parser.get_parsed_content("loss")
    assert (net.aux_heads is not None) == aux_heads
    assert loss.method == overrides.get("method", "tct")
    assert sum(p.numel() for p in loss.parameters()) == loss_params
    assert loss.consistency == overrides.get("consistency", True)


def test_bf16_training_steps_match_float32(data, tmp_path):
    """bf16 autocast on the CPU: the bundle's own trainer (multi-head step, TCT loss) agrees with float32."""
    assert_bf16_steps_match_fp32(BUNDLE, TRAIN, {"dataset_dir": data["dataset_dir"], "datalist": data["datalist"],
                                                 "bundle_root": tmp_path})
