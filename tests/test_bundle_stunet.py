"""STU-Net bundle through the real ``python -m monai.bundle`` command line, on CPU, at smoke scale.

One module-scoped training run (STU-Net-S, phantoms) feeds the inference (with and without
mirroring) and evaluation tests; resume, metadata checks and bad inputs run their own commands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "stunet_cross_dataset_evaluation"
CONFIGS = BUNDLE / "configs"
SMOKE = [str(CONFIGS / "train.json"), str(CONFIGS / "smoke.json")]

pytestmark = pytest.mark.slow

# (center offset in voxels, radius, HU) of the phantom organs, by canonical name
_ORGANS = {
    "liver": ((8, 4, 0), 9, 60.0),
    "spleen": ((-9, 2, 0), 6, 45.0),
    "kidney_right": ((10, -11, 0), 4, 160.0),
    "kidney_left": ((-10, -11, 0), 4, 160.0),
}
# native label values of those organs (REFERENCE.md section 3 table)
_NATIVE = {
    "flare22": {"liver": 1, "kidney_right": 2, "spleen": 3, "kidney_left": 13},
    "btcv": {"liver": 6, "kidney_right": 2, "spleen": 1, "kidney_left": 3},
}


def write_phantoms(root: Path, dataset: str, n_train: int, n_test: int, seed: int, size: int = 48,
                   test_labeled: list[str] | None = None) -> Path:
    """Write spheres-in-noise CT phantoms with native labels and a datalist (relative paths)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.mgrid[:size, :size, :size]).astype(np.float32)
    center = np.array([size / 2] * 3)
    entries = []
    for i in range(n_train + n_test):
        image = rng.normal(-80.0, 20.0, (size,) * 3).astype(np.float32)
        label = np.zeros((size,) * 3, np.uint8)
        for name, (offset, radius, hu) in _ORGANS.items():
            c = center + np.array(offset) + rng.integers(-2, 3, 3)
            mask = ((grid - c[:, None, None, None]) ** 2).sum(0) <= radius**2
            image[mask] = rng.normal(hu, 15.0, int(mask.sum()))
            label[mask] = _NATIVE[dataset][name]
        affine = np.diag([1.5, 1.5, 2.0, 1.0])
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"case{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labels" / f"case{i:02d}.nii.gz")
        labeled = list(_NATIVE[dataset])
        if i >= n_train and test_labeled is not None:
            labeled = test_labeled
        entries.append({
            "case_id": f"{dataset}_{i:02d}", "image": f"images/case{i:02d}.nii.gz",
            "label": f"labels/case{i:02d}.nii.gz", "dataset": dataset, "modality": "CT",
            "labeled_classes": labeled,
        })
    datalist = {"name": dataset, "layout": dataset, "label_system": dataset,
                "training": entries[:n_train], "validation": [], "test": entries[n_train:]}
    (root / "datalist.json").write_text(json.dumps(datalist, indent=4))
    return root / "datalist.json"


def bundle(run_id: str, configs: list[str], tmp: Path, *args: str, check: bool = True,
           timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle <run_id>`` in a subprocess (cwd: the bundle folder)."""
    cmd = [sys.executable, "-m", "monai.bundle", *run_id.split(), "--config_file", str(configs),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Phantoms, and a STU-Net-S model trained on them with the real CLI."""
    tmp = tmp_path_factory.mktemp("stunet")
    data = tmp / "flare"
    datalist = write_phantoms(data, "flare22", n_train=3, n_test=2, seed=0,
                              test_labeled=["liver", "kidney_right", "spleen"])
    root = tmp / "run"
    args = ["--dataset_dir", str(data), "--datalist", str(datalist), "--bundle_root", str(root)]
    proc = bundle("run training", SMOKE, tmp, *args)
    return {"tmp": tmp, "data": data, "datalist": datalist, "root": root, "args": args, "log": proc.stdout + proc.stderr}


def test_training_writes_checkpoints_and_plan(trained: dict[str, Path]) -> None:
    models = trained["root"] / "models"
    final = torch.load(models / "model.pt", map_location="cpu", weights_only=False)
    assert set(final) >= {"network", "optimizer", "lr_scheduler", "trainer"}
    # smoke: 2 epochs x 2 iterations (ignite stores iteration and epoch_length, not the epoch)
    assert final["trainer"]["iteration"] == 4 and final["trainer"]["epoch_length"] == 2
    # poly decay per epoch: lr = 0.01 * (1 - 2/2)^0.9 after the second epoch, 0.01 * 0.5^0.9 after the first
    assert final["lr_scheduler"]["last_epoch"] == 2
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0)
    group = final["optimizer"]["param_groups"][0]
    assert group["nesterov"] is True and group["momentum"] == 0.99 and group["weight_decay"] == 1e-3
    # STU-Net-S widths, 9 outputs (aeval8 + background), deep-supervision heads
    assert final["network"]["conv_blocks_context.0.0.conv1.weight"].shape[0] == 16
    assert final["network"]["seg_outputs.4.weight"].shape[:2] == (9, 16)
    plan = json.loads((models / "fingerprint.json").read_text())
    assert plan["num_cases"] == 3 and plan["modality"] == "CT"
    assert plan["median_spacing"] == pytest.approx([1.5, 1.5, 2.0])
    assert plan["percentile_00_5"] < plan["mean"] < plan["percentile_99_5"]
    assert (models / "model_best.pt").is_file()


def _predictions(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.rglob("*_seg.nii.gz"))}


def test_inference_with_and_without_mirroring_then_evaluate(trained: dict[str, Path]) -> None:
    infer = [*SMOKE, str(CONFIGS / "inference.json")]
    outs = {}
    for mirror in ("True", "False"):
        out = trained["tmp"] / f"pred_{mirror}"
        bundle("run inference", infer, trained["tmp"], *trained["args"], "--use_mirroring", mirror,
               "--prediction_dir", str(out))
        outs[mirror] = _predictions(out)
    assert list(outs["True"]) == ["case03_seg.nii.gz", "case04_seg.nii.gz"]
    for name, pred in outs["True"].items():
        image = nib.load(trained["data"] / "images" / name.replace("_seg", ""))
        assert pred.shape == image.shape  # written back in the original image space
        assert set(np.unique(pred)) <= set(range(9))
    # averaging 8 mirrored predictions changes at least some voxels of an untrained-ish model
    assert any((outs["True"][n] != outs["False"][n]).any() for n in outs["True"])

    report = trained["tmp"] / "report"
    bundle("run evaluating", [*SMOKE, str(CONFIGS / "evaluate.json")], trained["tmp"], *trained["args"],
           "--prediction_dir", str(trained["tmp"] / "pred_True"), "--report_dir", str(report))
    table = pd.read_csv(report / "per_case.csv")
    assert set(table["case"]) == {"flare22_03", "flare22_04"}
    assert len(table) == 2 * 8  # every case x every aeval8 class
    labeled = table[table["class"].isin(["liver", "kidney_right", "spleen"])]
    assert labeled["dsc"].notna().all() and labeled["dsc"].between(0, 1).all()
    # the test cases do not label kidney_left (and FLARE22 phantoms have no pancreas etc.):
    # absent, i.e. NaN, never a zero that would drag the mean down
    absent = table[~table["class"].isin(["liver", "kidney_right", "spleen"])]
    assert absent["dsc"].isna().all() and absent["nsd"].isna().all()
    assert (report / "summary.md").is_file()


def test_resume_after_interruption(tmp_path: Path, trained: dict[str, Path]) -> None:
    root = tmp_path / "resume"
    args = ["--dataset_dir", str(trained["data"]), "--datalist", str(trained["datalist"]), "--bundle_root", str(root),
            "--max_epochs", "4", "--val_interval", "100"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(SMOKE),
           "--meta_file", str(CONFIGS / "metadata.json"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    first = subprocess.Popen(cmd, cwd=BUNDLE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ckpt = root / "models" / "checkpoint_epoch=1.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # a crash: no final checkpoint, no cleanup
    first.communicate(timeout=60)
    assert not (root / "models" / "model.pt").exists(), "the run finished before it could be interrupted"
    saved = sorted(p.name for p in (root / "models").glob("checkpoint_epoch=*.pt"))
    assert saved, "no checkpoint was written before the interruption"
    done_epochs = int(saved[-1].split("=")[1].split(".")[0])

    second = bundle("run training", SMOKE, tmp_path, *args)
    log = second.stdout + second.stderr
    assert "resumed from" in log
    assert f"Epoch: {done_epochs}/4" not in log  # the finished epochs are not trained again
    assert f"Epoch: {done_epochs + 1}/4" in log
    final = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=False)
    assert final["trainer"]["iteration"] == 8 and final["trainer"]["max_epochs"] == 4
    assert final["lr_scheduler"]["last_epoch"] == 4  # the scheduler continued, not restarted
    # the optimizer state was restored (momentum buffers exist for every parameter)
    assert len(final["optimizer"]["state"]) == len(final["network"]) - sum(
        1 for k in final["network"] if "running" in k or "num_batches" in k
    )


def test_verify_metadata_and_net_in_out() -> None:
    schema = REPO / "common" / "medsegzoo" / "resources" / "meta_schema.json"
    cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
           "--filepath", str(schema)]
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr
    # STU-Net needs 32 | size with 5 pools, and > 1 voxel at the bottleneck for InstanceNorm: n=2
    cmd = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--meta_file",
           str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "train.json"), "--n", "2", "--stunet_size", "S"]
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr


def test_unknown_native_label_map_is_named(trained: dict[str, Path]) -> None:
    datalist = json.loads(trained["datalist"].read_text())
    datalist["test"][1]["dataset"] = "my_private_set"
    bad = trained["data"] / "unknown.json"
    bad.write_text(json.dumps(datalist))
    args = ["--dataset_dir", str(trained["data"]), "--datalist", str(bad), "--bundle_root", str(trained["root"])]
    proc = bundle("run evaluating", [*SMOKE, str(CONFIGS / "evaluate.json")], trained["tmp"], *args,
                  "--prediction_dir", str(trained["tmp"] / "pred_True"), check=False)
    assert proc.returncode != 0
    assert "my_private_set" in proc.stderr and "flare22_04" in proc.stderr


def test_pretrained_checkpoint_with_other_classes(trained: dict[str, Path], tmp_path: Path) -> None:
    # a "published" checkpoint with 105 outputs (TotalSegmentator, STU-Net order) and the smoke widths
    from medsegzoo.networks import STUNet

    net = STUNet(1, 105, size="S", pool_kernel_sizes=[[2, 2, 2]] * 4 + [[1, 1, 1]])
    ckpt = tmp_path / "stunet_s_105.model"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    args = ["--dataset_dir", str(trained["data"]), "--datalist", str(trained["datalist"]),
            "--pretrained_checkpoint", str(ckpt), "--bundle_root", str(tmp_path / "strict"),
            "--pretrained_only_matching_shapes", "False"]
    strict = bundle("run training", SMOKE, tmp_path, *args, check=False)
    assert strict.returncode != 0
    for level, width in enumerate((256, 128, 64, 32, 16)):  # every head is listed with both shapes
        assert f"seg_outputs.{level}.weight: checkpoint (105, {width}, 1, 1, 1) vs network (9, {width}, 1, 1, 1)" in strict.stderr
        assert f"seg_outputs.{level}.bias: checkpoint (105,) vs network (9,)" in strict.stderr
    assert "only_matching_shapes=True" in strict.stderr  # the message says how to fine-tune instead
