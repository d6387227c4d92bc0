"""clip_universal_segmentation bundle through the real ``python -m monai.bundle`` CLI.

Partially labeled phantom sets (KiTS: kidneys + kidney tumor, MSD Liver: liver + tumor, MSD
Spleen: spleen) train a U-Net Universal Model on the CPU with text embeddings from a randomly
initialised open_clip ViT-B-32 (HF_HUB_OFFLINE=1): a crash after the first epoch, resume,
inference, evaluation (DSC/NSD, patient-level tumor detection), extension to a new class with
the old outputs bit-identical, metadata and net in/out checks, and bad-input errors.

The command lines are parsed by MONAI's own ``fire`` entry point and run in the test process
(``bundle_utils.run_bundle``); one run per bundle starts the real ``python -m monai.bundle``
process (and so does every hard-exit crash, which needs a process of its own).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_checks import (
    assert_foreign_checkpoint_fails,
    assert_prediction_equals_direct_forward,
    assert_train_and_inference_agree,
)
from bundle_utils import assert_bf16_steps_match_fp32, META_SCHEMA, bundle_dir, make_phantom_datalist, monai_bundle, run_bundle

from medsegzoo.bundle_runs import BundleRun, parse_bundle, run_in_process
from medsegzoo.data.datalist import load_split
from medsegzoo.data.predictions import class_mask_path, prediction_path
from medsegzoo.taxonomy import get_label_system

pytestmark = pytest.mark.slow

BUNDLE = "clip_universal_segmentation"
SMOKE = ["train.json", "smoke.json"]
EVALUATE = ["inference.json", "evaluate.json", "smoke.json"]
INFER = ["inference.json", "smoke.json"]
EXTEND = ["train.json", "extend.json", "smoke.json"]
EVALUATE_EXTENDED = ["inference.json", "inference_extended.json", "evaluate.json", "smoke.json"]
NEW_CLASS = "liver_tumor"
# the base model leaves one class out so that the extension test can add it
BASE_CLASSES = [c for c in get_label_system("universal32").classes if c != NEW_CLASS]
ITERATIONS_PER_EPOCH = 3  # 3 data sets x 2 training cases, batch 2


def _weights(path: Path) -> dict[str, torch.Tensor]:
    # a CheckpointSaver with a single object saves its bare state dict
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("network", state)


def _overrides(root: Path, datalists: list[str], **extra: object) -> dict[str, object]:
    return {"bundle_root": root, "datalist": datalists, "class_names": BASE_CLASSES, **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, phantom_set: Callable[..., tuple[Path, Path]]) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("universal")
    datalists = [
        str(phantom_set(layout, cases=4, size=40, seed=seed, site=seed)[1])
        for seed, layout in enumerate(("kits19", "msd_liver", "msd_spleen"))
    ]
    root = tmp / "bundle"
    run_bundle(BUNDLE, ["text_embeddings.json", "smoke.json"], _overrides(root, datalists), run_id="text_embeddings")
    # first run crashes (hard exit, no clean-up) right after epoch 1 is checkpointed
    crash = tmp / "crash.json"
    crash.write_text(json.dumps({"run": [
        "$@train#resume.attach(@train#trainer)",
        "$@train#checkpoint_saver.attach(@train#trainer)",
        "$@train#trainer.add_event_handler(ignite.engine.Events.EPOCH_COMPLETED(once=1), lambda e: os._exit(17))",
        "$@train#trainer.run()",
    ]}))
    first = run_bundle(BUNDLE, [*SMOKE, str(crash)], _overrides(root, datalists), run_id="training", check=False,
                       cli=True)  # the one real CLI run (a hard exit needs a process of its own)
    assert first.returncode == 17, first.stdout[-3000:] + first.stderr[-3000:]
    assert not (root / "models" / "checkpoint_final.pt").exists() and not (root / "models" / "model.pt").exists()
    second = run_bundle(BUNDLE, SMOKE, _overrides(root, datalists), run_id="training")
    return {"root": root, "datalists": datalists, "tmp": tmp, "first": first, "second": second}


def test_interrupted_training_resumes_from_last_checkpoint(trained: dict[str, object]) -> None:
    root = Path(trained["root"])
    log = trained["second"].stdout + trained["second"].stderr
    assert f"at iteration {ITERATIONS_PER_EPOCH} (epoch 1)" in log
    final = torch.load(root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 2 * ITERATIONS_PER_EPOCH  # not restarted from 0
    assert final["lr_scheduler"]["last_epoch"] == 2
    assert final["optimizer"]["state"]  # AdamW moments were restored and kept updating
    weights = _weights(root / "models" / "model.pt")  # inference weights: the final network
    assert set(weights) == set(final["network"]) and all(torch.equal(weights[k], final["network"][k]) for k in weights)
    assert "groups.0.embeddings" in final["network"]  # the text embeddings travel with the weights


def test_training_batches_mask_exactly_the_classes_a_set_does_not_label(trained: dict[str, object]) -> None:
    import nibabel as nib

    parser = parse_bundle(BundleRun(bundle_dir(BUNDLE), SMOKE, _overrides(Path(trained["tmp"]) / "masking", trained["datalists"],
                                                                         cache_rate=0.0, num_workers=0)))
    dataset, names = parser.get_parsed_content("train#dataset"), parser.get_parsed_content("output_classes")
    expected = {"kits19": {"kidney_right", "kidney_left", "kidney_tumor"}, "msd_liver": {"liver"},  # liver_tumor: left out
                "msd_spleen": {"spleen"}}
    seen = set()
    for index, case in enumerate(dataset.data):
        samples = dataset[index]
        for sample in samples if isinstance(samples, list) else [samples]:
            label = sample["label"]
            assert label.shape[0] == len(names)
            labeled = {names[k] for k in range(len(names)) if not bool((label[k] == -1).all())}
            assert labeled == expected[case["dataset"]], case["case_id"]
            for k in range(len(names)):  # a channel is either wholly ignored or a binary mask
                values = set(torch.unique(label[k]).tolist())
                assert values == {-1.0} if names[k] not in labeled else values <= {0.0, 1.0}
        # the organ channel holds the organ of the file (KiTS: both kidneys, tumor inside them)
        raw = np.asarray(nib.load(case["label"]).dataobj)
        if case["dataset"] == "kits19":
            whole = parser.get_parsed_content("base_transforms")
            from monai.transforms import Compose

            converted = Compose(whole)(dict(case))["label"]
            kidneys = converted[names.index("kidney_right")] + converted[names.index("kidney_left")]
            assert int((kidneys > 0).sum()) > 0 and int((raw > 0).sum()) > 0
            tumor = converted[names.index("kidney_tumor")] > 0
            assert bool((kidneys[tumor] > 0).all())  # multi-hot: a tumor voxel is kidney too
        seen.add(case["dataset"])
    assert seen == set(expected)


def test_inference_and_evaluate_report_organs_and_tumor_detection(trained: dict[str, object], tmp_path: Path) -> None:
    import nibabel as nib

    root = Path(trained["root"])
    run_in_process(BundleRun(bundle_dir(BUNDLE), EVALUATE, _overrides(root, trained["datalists"], save_class_masks=True),
                             run_id="evaluating"))
    cases = [c for d in trained["datalists"] for c in load_split(d, "test")]
    assert len(cases) == 3
    for case in cases:
        pred = nib.load(str(prediction_path(root / "eval", case["case_id"])))
        assert pred.shape == nib.load(case["image"]).shape  # back on the input grid
        liver = class_mask_path(root / "eval", case["case_id"], "liver")
        value = get_label_system("universal32").classes.index("liver") + 1
        assert np.array_equal(np.asarray(nib.load(str(liver)).dataobj), (np.asarray(pred.dataobj) == value).astype(np.uint8))
    report = root / "eval" / "report"
    table = (report / "per_case.csv").read_text()
    assert "kidney_tumor" in table and "spleen" in table and "nsd" in table.splitlines()[0]
    summary = json.loads((report / "summary.json").read_text())
    assert "kidney_tumor" in json.dumps(summary)
    assert "sensitivity" in (report / "summary.md").read_text()
    # predict_classes: only the listed heads are run and written
    only = _overrides(root, trained["datalists"], predict_classes=["spleen", "liver"], output_dir=tmp_path / "two")
    run_in_process(BundleRun(bundle_dir(BUNDLE), INFER, only, run_id="inference"))
    values = set(np.unique(np.asarray(nib.load(str(prediction_path(tmp_path / "two", cases[0]["case_id"]))).dataobj)).tolist())
    assert values <= {0, 1, get_label_system("universal32").classes.index("liver") + 1}


def test_train_and_inference_agree_and_weights_load_strictly(trained: dict[str, object], tmp_path: Path) -> None:
    root = Path(trained["root"])
    overrides = _overrides(root, trained["datalists"])
    keys = ("label_system", "class_names", "spacing", "patch_size", "intensity_preset", "text_embedding_file", "backbone")
    assert_train_and_inference_agree(BUNDLE, SMOKE, INFER, keys=keys, overrides=overrides)
    assert_foreign_checkpoint_fails(BUNDLE, INFER, overrides, tmp_path)


def test_extension_trains_only_the_new_class_and_keeps_old_outputs(trained: dict[str, object]) -> None:
    from monai.bundle import ConfigParser

    root = Path(trained["root"])
    over = _overrides(root, trained["datalists"], new_classes=[NEW_CLASS], max_epochs=1)
    run_bundle(BUNDLE, EXTEND, over, run_id="training")
    ext_ckpt = root / "models" / "extended" / "model.pt"
    assert ext_ckpt.is_file() and (root / "models" / "extended" / "text_embeddings_new.pt").is_file()

    configs = [str(bundle_dir(BUNDLE) / "configs" / n) for n in SMOKE]
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({"bundle_root": str(root), "datalist": trained["datalists"], "class_names": BASE_CLASSES, "device": "$torch.device('cpu')"})
    base = parser.get_parsed_content("network_def")
    base.load_state_dict(_weights(root / "models" / "model.pt"))
    parser = ConfigParser()
    parser.read_config([*configs[:1], str(bundle_dir(BUNDLE) / "configs" / "extend.json"), configs[1]])
    parser.update({"bundle_root": str(root), "datalist": trained["datalists"], "class_names": BASE_CLASSES,
                   "new_classes": [NEW_CLASS], "device": "$torch.device('cpu')"})
    extended = parser.get_parsed_content("network")
    extended.load_state_dict(_weights(ext_ckpt))
    assert extended.class_names == (*BASE_CLASSES, NEW_CLASS)
    x = torch.rand(1, 1, 32, 32, 32)
    base.eval(), extended.eval()
    with torch.no_grad():
        old, new = base(x), extended(x)
    assert new.shape[1] == len(BASE_CLASSES) + 1
    assert torch.equal(new[:, : len(BASE_CLASSES)], old)  # bit-identical
    before, after = _weights(root / "models" / "model.pt"), _weights(ext_ckpt)
    assert all(torch.equal(before[k], after[k]) for k in before)

    # the extended model predicts and is scored through inference_extended.json (new class included)
    out = root / "eval_extended"
    run_in_process(BundleRun(bundle_dir(BUNDLE), EVALUATE_EXTENDED,
                             {**over, "predict_classes": ["liver", NEW_CLASS], "output_dir": out}, run_id="evaluating"))
    with open(out / "report" / "per_case.csv", newline="") as table:
        scored = {row["class"] for row in csv.DictReader(table)}
    assert {"liver", NEW_CLASS} <= scored
    assert "kidney_tumor" not in scored  # predict_classes still restricts the extended model


def test_interrupted_extension_resumes_from_its_last_checkpoint(trained: dict[str, object], tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(Path(trained["root"]), root, ignore=shutil.ignore_patterns("extended"))
    over = _overrides(root, trained["datalists"], new_classes=[NEW_CLASS], max_epochs=2)
    crash = Path(trained["tmp"]) / "crash.json"  # hard exit right after epoch 1 is checkpointed
    first = run_bundle(BUNDLE, [*EXTEND, str(crash)], over, run_id="training", check=False, cli=True)  # hard exit
    assert first.returncode == 17, first.stdout[-3000:] + first.stderr[-3000:]
    extended = root / "models" / "extended"
    assert not (extended / "checkpoint_final.pt").exists() and not (extended / "model.pt").exists()
    second = run_bundle(BUNDLE, EXTEND, over, run_id="training")
    assert f"at iteration {ITERATIONS_PER_EPOCH} (epoch 1)" in second.stdout + second.stderr
    final = torch.load(extended / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 2 * ITERATIONS_PER_EPOCH  # resumed, not restarted
    assert final["optimizer"]["state"]  # the new parameters' AdamW moments came back
    base = _weights(root / "models" / "model.pt")
    assert all(torch.equal(base[k], final["network"][k]) for k in base)  # old classes untouched across the crash


def test_verify_metadata_and_net_in_out(tmp_path: Path) -> None:
    from medsegzoo.networks.text_encoders import compute_text_embeddings, save_text_embeddings

    # all 32 classes at the smoke config's width 512 (one-hot codes padded: no text model needed)
    emb = compute_text_embeddings(get_label_system("universal32").classes, "onehot", width=512)
    save_text_embeddings(emb, tmp_path / "models" / "text_embeddings.pt")
    root = bundle_dir(BUNDLE)
    out = monai_bundle("verify_metadata", "--meta_file", root / "configs" / "metadata.json", "--filepath", META_SCHEMA)
    assert "verified with no error" in out.stdout + out.stderr
    configs = "['" + "','".join(str(root / "configs" / n) for n in INFER) + "']"
    out = monai_bundle(
        "verify_net_in_out", "network_def", "--meta_file", root / "configs" / "metadata.json",
        "--config_file", configs, "--bundle_root", tmp_path, "--n", "1",
    )
    assert "verified with no error" in out.stdout + out.stderr


def _fails(configs: list[str], overrides: dict[str, object], run_id: str) -> str:
    proc = run_bundle(BUNDLE, configs, overrides, run_id=run_id, check=False)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    from medsegzoo.networks.text_encoders import compute_text_embeddings, save_text_embeddings

    # two training cases: one batch of the smoke config's batch_size (fewer is its own error)
    datalist = str(make_phantom_datalist(tmp_path, "kits19", cases=4, size=32, split="0.5/0.5/0.0")[1])
    root = tmp_path / "bundle"
    emb = compute_text_embeddings(BASE_CLASSES, "onehot", width=512)
    save_text_embeddings(emb, root / "models" / "text_embeddings.pt")
    # a class name the taxonomy does not know
    out = _fails(["text_embeddings.json", "smoke.json"], {"bundle_root": tmp_path, "class_names": ["liver", "warp_core"]}, "text_embeddings")
    assert "UnknownNameError" in out and "warp_core" in out
    # embedding file whose width or class list differs from the config
    out = _fails(SMOKE, _overrides(root, [datalist], text_embedding_width=384), "training")
    assert "width 512" in out and "text_embedding_width 384" in out and "text_embeddings.pt" in out
    out = _fails(SMOKE, {**_overrides(root, [datalist]), "class_names": ["liver", "spleen"]}, "training")
    assert "class list does not match the config" in out and "kidney_tumor" in out
    # a data set that labels none of the model's classes
    entry = json.loads(Path(datalist).read_text())
    for split in ("training", "validation", "test"):
        for case in entry[split]:
            case["dataset"], case["labeled_classes"] = "la", ["left_atrium"]
    foreign = Path(datalist).with_name("foreign.json")
    foreign.write_text(json.dumps(entry))
    out = _fails(SMOKE, _overrides(root, [str(foreign)]), "training")
    assert "cover none of the 'universal32' classes" in out and "left_atrium" in out


def test_per_class_mask_layout_feeds_the_same_pipeline(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from medsegzoo.data.partial_labels import load_partial_split

    datalist = make_phantom_datalist(tmp_path, "abdomenatlas", cases=2, size=32, split=None)[1]
    parser = ConfigParser()
    parser.read_config([str(bundle_dir(BUNDLE) / "configs" / n) for n in SMOKE])
    parser.update({"bundle_root": str(tmp_path)})
    preprocess = Compose(parser.get_parsed_content("base_transforms"))
    case = load_partial_split(str(datalist), "training")[0]
    assert "masks" in case and "label" not in case
    out = preprocess(case)
    classes = get_label_system("universal32").classes
    assert out["label"].shape[0] == len(classes) and out["label"].shape[1:] == out["image"].shape[1:]
    labeled = {classes[i] for i in range(len(classes)) if out["labeled_classes"][i]}
    assert {"liver", "spleen", "kidney_left", "kidney_right"} <= labeled
    assert out["label"][classes.index("liver")].sum() > 0


def test_bf16_training_steps_match_float32(trained: dict[str, object], tmp_path: Path) -> None:
    """bf16 autocast on the CPU: backbone, controller and batched dynamic heads; masked BCE+Dice in float32."""
    root = trained["root"]
    overrides = {**_overrides(tmp_path, trained["datalists"]), "text_embedding_file": str(root / "models" / "text_embeddings.pt")}
    assert_bf16_steps_match_fp32(BUNDLE, SMOKE, overrides)


def test_prediction_equals_a_direct_forward_of_the_weights(trained: dict[str, object], tmp_path: Path) -> None:
    from medsegzoo.inference.postprocess import UniversalPostprocess

    root = Path(trained["root"])
    # a kits19 site-0 phantom is stored at 1 mm in RAS: at the network's spacing 1 mm preprocessing
    # is intensity only, and the label map is the post-processed thresholded logits of the weights
    datalist = trained["datalists"][0]
    case = load_split(datalist, "test")[0]
    exact = {**_overrides(root, [datalist]), "spacing": [1.0, 1.0, 1.0], "amp": False, "output_dir": tmp_path / "exact"}
    run_in_process(BundleRun(bundle_dir(BUNDLE), INFER, exact, run_id="inference"))
    post = UniversalPostprocess(class_names=BASE_CLASSES, system="universal32")
    assert_prediction_equals_direct_forward(BUNDLE, INFER, exact, case, to_labels=lambda x: torch.as_tensor(post(x[0]))[0])
