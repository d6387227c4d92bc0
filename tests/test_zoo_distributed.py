"""Scale-out: a bundle's multi_gpu_train.json with 2 gloo processes (torchrun) on phantoms, and its
multi_gpu_inference.json splitting the test cases across the ranks.

This is the suite's one DDP run (the CPU's gloo path; NCCL needs GPUs): distributed training with
distributed validation and nnU-Net's gradient-norm clipping (STU-Net's handler, attached here),
rank-0 checkpoints, and distributed inference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from bundle_utils import bundle_dir, config_files_arg, make_phantom_datalist, run_command

from medsegzoo.data.predictions import prediction_path

BUNDLE = "tct_partial_label_segmentation"  # the lightest network of the four
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ENV = {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo on CPUs, even on a GPU machine
CLIP_NORM = 1e-3


def _torchrun(run_id: str, configs: list[str], overrides: dict[str, object], cwd: Path) -> None:
    cmd = [*TORCHRUN, "-m", "monai.bundle", "run", run_id, "--config_file", config_files_arg(BUNDLE, configs)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    run_command(cmd, cwd=cwd, env=ENV, timeout=900)


@pytest.mark.slow
def test_two_gloo_processes_train_identical_weights_and_split_inference(tmp_path: Path) -> None:
    dataset_dir, datalist = make_phantom_datalist(tmp_path, "kits19", cases=8, size=40, seed=5)
    splits = json.loads(datalist.read_text())
    assert [len(splits[k]) for k in ("training", "validation", "test")] == [4, 2, 2]
    out = tmp_path / "run"
    # each rank dumps its own final weights: DDP must have kept them identical
    dump = tmp_path / "dump.json"
    # and STU-Net's gradient-norm clipping, set low enough to act at every step, runs on both ranks
    dump.write_text(json.dumps({
        "gradient_clipping": {"_target_": "medsegzoo.engines.gradient_clipping.GradientNormClipping",
                              "max_norm": CLIP_NORM},
        "+initialize": ["$@gradient_clipping.attach(@train#trainer)"],
        "finalize": [
            "$torch.save(@network.module.state_dict(), @output_dir + '/rank' + str(dist.get_rank()) + '.pt')",
            "$torch.save(torch.tensor(@gradient_clipping.last_norm), @output_dir + '/norm' + str(dist.get_rank()) + '.pt')",
            "$medsegzoo.engines.distributed.destroy_distributed()",
        ],
    }))
    common = {"bundle_root": out, "dataset_dir": dataset_dir, "datalist": datalist}
    _torchrun("training", ["train.json", "multi_gpu_train.json", "smoke.json", str(dump)], common, tmp_path)
    ranks = [torch.load(out / "eval" / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    norms = [float(torch.load(out / "eval" / f"norm{r}.pt", weights_only=True)) for r in (0, 1)]
    assert norms[0] == norms[1] > CLIP_NORM  # clipped the same all-reduced gradients on both ranks
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)
    # only rank 0 writes checkpoints; 4 training cases / 2 ranks / batch 2 = 1 iteration per epoch
    final = torch.load(out / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 2
    for key, value in final["network"].items():  # saved unwrapped (no DDP "module." prefix)
        torch.testing.assert_close(value, ranks[0][key], rtol=0, atol=0, msg=key)
    assert {int(s["step"]) for s in final["optimizer"]["state"].values()} == {2}  # two synchronised steps
    assert sorted(p.name for p in (out / "models").glob("*.pt")) == [
        "checkpoint_final.pt", "checkpoint_iteration=2.pt", "model.pt", "model_best.pt"]
    weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == {k for k in final["network"] if not k.startswith("aux_heads.")}  # unprefixed, no aux heads

    # distributed inference: each test case written once, by one of the two ranks
    _torchrun("inference", ["inference.json", "multi_gpu_inference.json", "smoke.json"], common, tmp_path)
    written = sorted(p.name for p in (out / "eval").glob("*.nii.gz"))
    expected = sorted(prediction_path(out / "eval", c["case_id"]).name
                      for c in splits["test"])
    assert written == expected


def test_multi_gpu_configs_pick_backend_and_device_automatically() -> None:
    """Every bundle's multi_gpu_train.json uses the automatic backend/device helpers (no fixed 'nccl')."""
    for bundle in ("tct_partial_label_segmentation", "clip_universal_segmentation",
                   "tcseg_semi_supervised_segmentation", "stunet_cross_dataset_evaluation"):
        for name in ("multi_gpu_train.json", "multi_gpu_inference.json"):
            config = json.loads((bundle_dir(bundle) / "configs" / name).read_text())
            text = json.dumps(config)
            assert "init_process_group(backend='nccl')" not in text, (bundle, name)
            assert config["device"] == "$medsegzoo.engines.distributed.local_device()", (bundle, name)
            assert "$medsegzoo.engines.distributed.init_distributed(@dist_backend)" in config["initialize"], (bundle, name)
