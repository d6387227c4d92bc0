"""medsegzoo.zoo.export: every bundle's inference network through MONAI ckpt_export (TorchScript,
traced) and ONNX; the exported models must reproduce the eager network's output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from bundle_utils import bundle_dir, monai_bundle

from medsegzoo.zoo.export import (
    export_onnx,
    has_dynamic_batch,
    load_bundle_network,
    max_abs_difference,
    run_onnx,
)

INFER = ["train.json", "inference.json", "smoke.json"]
BUNDLES = ["tct_partial_label_segmentation", "clip_universal_segmentation",
           "tcseg_semi_supervised_segmentation", "stunet_cross_dataset_evaluation"]
TOLERANCE = 1e-4


def _bundle_copy(name: str, tmp_path: Path) -> tuple[Path, list[int]]:
    """The bundle's configs in tmp_path (plus the universal model's text embeddings) and its smoke patch."""
    root = tmp_path / name
    shutil.copytree(bundle_dir(name) / "configs", root / "configs")
    (root / "models").mkdir()
    if name == "clip_universal_segmentation":
        from medsegzoo.networks.text_encoders import compute_text_embeddings, save_text_embeddings
        from medsegzoo.taxonomy import get_label_system

        emb = compute_text_embeddings(get_label_system("universal32").classes, "onehot", width=512)
        save_text_embeddings(emb, root / "models" / "text_embeddings.pt")
    patch = json.loads((root / "configs" / "smoke.json").read_text())["patch_size"]
    return root, list(patch)


def _checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    net = load_bundle_network(root, INFER)
    with torch.no_grad():  # move off the initialisation so loading is visible
        for param in net.parameters():
            param.add_(0.01 * torch.randn_like(param))
    ckpt = root / "models" / "model.pt"
    torch.save({"model": net.state_dict()}, ckpt)
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_torchscript_and_onnx_match_eager(name: str, tmp_path: Path) -> None:
    from monai.bundle import ckpt_export
    from monai.data import load_net_with_metadata

    root, patch = _bundle_copy(name, tmp_path)
    ckpt = _checkpoint(root)
    eager = load_bundle_network(root, INFER, ckpt_file=ckpt)
    # sliding windows come in batches: trace at batch 1 and run at 2, except for a network
    # whose export freezes the batch size (the universal model): trace and run at 2
    batch = 2
    trace_batch = 1 if has_dynamic_batch(eager) else batch
    ts_file = tmp_path / "model.ts"
    # the function behind `python -m monai.bundle ckpt_export` (the CLI itself: test below)
    ckpt_export(net_id="network_def", filepath=str(ts_file), ckpt_file=str(ckpt),
                meta_file=str(root / "configs" / "metadata.json"),
                config_file=[str(root / "configs" / n) for n in INFER], key_in_ckpt="model",
                use_trace=True, input_shape=[trace_batch, 1, *patch], bundle_root=str(root))
    scripted, meta, _ = load_net_with_metadata(str(ts_file))
    assert meta["version"] == json.loads((root / "configs" / "metadata.json").read_text())["version"]

    torch.manual_seed(1)
    image = torch.rand(batch, 1, *patch)
    with torch.no_grad():
        reference = eager(image)
        assert torch.is_tensor(reference) and tuple(reference.shape[2:]) == tuple(patch)
        assert max_abs_difference(reference, scripted(image)) < TOLERANCE
    onnx_file = export_onnx(eager, torch.rand(trace_batch, 1, *patch), tmp_path / "model.onnx")
    assert max_abs_difference(reference, run_onnx(onnx_file, image)) < TOLERANCE
    # a network that ignored its weights would pass the comparisons: the weights must matter
    with torch.no_grad():
        assert max_abs_difference(reference, load_bundle_network(root, INFER)(image)) > TOLERANCE


@pytest.mark.slow
def test_ckpt_export_cli(tmp_path: Path) -> None:
    name = "tct_partial_label_segmentation"
    root, patch = _bundle_copy(name, tmp_path)
    ckpt = _checkpoint(root)
    configs = "[" + ",".join(f"'{root / 'configs' / n}'" for n in INFER) + "]"
    # the command line, parsed by MONAI's fire entry point in this process (bundle_utils.monai_bundle)
    monai_bundle("ckpt_export", "network_def",
                 "--filepath", tmp_path / "tct.ts", "--ckpt_file", ckpt, "--meta_file", root / "configs" / "metadata.json",
                 "--config_file", configs, "--key_in_ckpt", "model", "--use_trace", "True",
                 "--input_shape", json.dumps([1, 1, *patch]), "--bundle_root", root)
    scripted = torch.jit.load(str(tmp_path / "tct.ts"))
    image = torch.rand(1, 1, *patch)
    with torch.no_grad():
        assert max_abs_difference(load_bundle_network(root, INFER, ckpt_file=ckpt)(image), scripted(image)) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tct_partial_label_segmentation", "tcseg_semi_supervised_segmentation"])
def test_scripted_export_as_the_model_zoo_checks_it(name: str, tmp_path: Path) -> None:
    """The zoo's TorchScript check: ``ckpt_export`` of ``network_def`` from inference.json alone,
    scripted (no tracing), loading the bare state dict ``models/model.pt``."""
    from monai.bundle import ckpt_export
    from zoo_utils import bake_overrides

    root = tmp_path / name
    shutil.copytree(bundle_dir(name) / "configs", root / "configs")
    bake_overrides(root)  # a smoke-scale network described by inference.json alone
    (root / "models").mkdir()
    torch.manual_seed(0)
    eager = load_bundle_network(root, ["inference.json"])
    torch.save(eager.state_dict(), root / "models" / "model.pt")
    ts_file = root / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts_file), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"), config_file=str(root / "configs" / "inference.json"),
                bundle_root=str(root))
    scripted = torch.jit.load(str(ts_file))
    patch = json.loads((root / "configs" / "inference.json").read_text())["patch_size"]
    image = torch.rand(2, 1, *patch)
    with torch.no_grad():
        assert max_abs_difference(eager(image), scripted(image)) < TOLERANCE
