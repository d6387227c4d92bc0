"""``medsegzoo import-weights``: the authors' published checkpoint layouts, imported strictly.

The published layouts are rebuilt from the official key and shape lists committed under
``tests/data`` (never weights): random tensors under the official names, saved the way the
authors' code saves them. Each import is loaded back strictly into the bundle's own inference
``network_def`` and every value is checked under the name it must end up with.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.cli import main
from medsegzoo.commands.import_weights import import_weights
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.networks.published import merging_order
from medsegzoo.networks.text_encoders import load_text_embeddings
from medsegzoo.networks.universal import V09_MERGING_ORDER
from medsegzoo.networks.weights import StateDictMismatchError, load_weights, read_checkpoint
from medsegzoo.taxonomy import get_label_system

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SCHEMA = REPO / "common" / "medsegzoo" / "resources" / "meta_schema.json"
BUNDLES = {
    "stunet": "stunet_cross_dataset_evaluation",
    "universal": "clip_universal_segmentation",
    "tct": "tct_partial_label_segmentation",
    "tcseg": "tcseg_semi_supervised_segmentation",
}
STUNET_S_105 = {"stunet_size": "S", "label_system": "totalsegmentator_stunet"}


def copy_bundle(kind: str, dest: Path) -> Path:
    """A bundle's configs and docs in a temporary folder (the repository's bundles stay untouched)."""
    src = REPO / "bundles" / BUNDLES[kind]
    root = dest / BUNDLES[kind]
    shutil.copytree(src / "configs", root / "configs")
    return root


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the listed shapes (integer index buffers as integers)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith(("relative_position_index", "num_batches_tracked")):
            state[name] = torch.randint(0, 1000, shape, generator=g)
        else:
            state[name] = torch.randn(shape, generator=g)
    return state


def bundle_network(root: Path, overrides: dict[str, Any]) -> torch.nn.Module:
    """The bundle's inference network_def, as inference builds it."""
    return parse_bundle(BundleRun(root, ["inference.json"], overrides)).get_parsed_content("network_def")


def as_numpy1_pickle(path: Path) -> None:
    """Rewrite a torch.save file as numpy 1.x writes numpy scalars (``numpy.core``), like the released files."""
    original = path.read_bytes()
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
            dst.writestr(info.filename, data)
    assert path.read_bytes() != original


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a bundle folder with its bytes (to prove a refused import wrote nothing)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- STU-Net: nnU-Net v1 .model


def stunet_model_file(path: Path, size: str = "S", seed: int = 0) -> dict[str, torch.Tensor]:
    """An nnU-Net v1 ``.model`` file of STU-Net ``size`` (105 outputs) from the reference key list."""
    reference = json.loads((DATA / "stunet_state_dict_reference.json").read_text())[size]
    state = random_state({name: shape for name, shape in reference}, seed)
    torch.save(
        {
            "epoch": 4000,
            "state_dict": state,
            "optimizer_state_dict": {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.01, "params": [0]}]},
            "lr_scheduler_state_dict": None,
            # nnU-Net v1 keeps its loss curves and best metrics as numpy numbers
            "plot_stuff": ([np.float64(0.9), np.float64(0.7)], [np.float32(0.8)], [], [np.float64(0.5)]),
            "best_stuff": (3999, np.float64(-0.85), np.float64(0.91)),
            "amp_grad_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7},
        },
        path,
    )
    as_numpy1_pickle(path)
    return state


def test_stunet_nnunet_v1_model_round_trip(tmp_path: Path) -> None:
    root = copy_bundle("stunet", tmp_path)
    source = tmp_path / "small_ep4k.model"
    state = stunet_model_file(source)
    assert b"numpy.core.multiarray\nscalar" in zipfile.ZipFile(source).read("small_ep4k/data.pkl")

    result = import_weights(root, source, overrides=STUNET_S_105)

    out = root / "models" / "model.pt"
    assert result.out == out and result.tensors == len(state) == 130
    assert result.parameters == sum(t.numel() for t in state.values())
    assert result.renamed == [] and result.dropped == []
    net = bundle_network(root, STUNET_S_105)
    load_weights(net, out)  # strict
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    # model.pt is the plain inference state dict, nothing of the training state
    assert set(torch.load(out, weights_only=True)) == set(state)

    entry = json.loads((root / "configs" / "metadata.json").read_text())["imported_weights"]
    assert entry["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert entry["source"] == "small_ep4k.model" and entry["weights_file"] == "models/model.pt"
    assert entry["overrides"] == STUNET_S_105 and "nnU-Net v1" in entry["format"]
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(SCHEMA))


def test_stunet_checkpoint_of_another_size_is_refused_and_nothing_written(tmp_path: Path) -> None:
    root = copy_bundle("stunet", tmp_path)
    source = tmp_path / "small_ep4k.model"
    stunet_model_file(source)
    before = snapshot(root)
    # the bundle's default network is STU-Net L (A-Eval's tables) with the 8 A-Eval classes
    with pytest.raises(StateDictMismatchError) as err:
        import_weights(root, source)
    text = str(err.value)
    assert str(source) in text and "does not fit STUNet" in text
    assert "conv_blocks_context.0.0.conv1.weight: checkpoint (16, 1, 3, 3, 3) vs network (64, 1, 3, 3, 3)" in text
    assert "--override stunet_size=S --override label_system=totalsegmentator_stunet" in text
    assert snapshot(root) == before


# ---------------------------------------------------------------- CLIP-Driven Universal Model


def official_keys(backbone: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"universal_{backbone}_keys.json").read_text())["state_dict"]


def released_checkpoint(path: Path, backbone: str, state: dict[str, torch.Tensor]) -> None:
    """Save ``state`` (official Universal_model names) the way the released files hold it."""
    net = {}
    for name, tensor in state.items():
        if backbone == "swinunetr" and name.startswith("backbone."):
            name = name[len("backbone."):]  # the released Swin file lacks the component
        net[f"module.{name}"] = tensor
    torch.save({"net": net, "epoch": 500}, path)


def expected_name(official: str) -> str:
    """Our name of an official key, written out independently of the importer's rules."""
    for old, new in (
        ("organ_embedding", "groups.0.embeddings"),
        ("text_to_vision.", "groups.0.text_projection.0."),
        ("controller.", "groups.0.controller."),
        ("GAP.", "global_feature."),
        ("precls_conv.", "head_input."),
        ("backbone.swinViT.", "backbone.swin.swinViT."),
    ):
        if official.startswith(old):
            return new + official[len(old):]
    for i, width in enumerate(("64", "128", "256", "512")):
        for j in (0, 1):
            if official.startswith(f"backbone.down_tr{width}.ops.{j}.conv1."):
                return f"backbone.down.{i}.{j}.conv." + official.split("conv1.")[1]
            if official.startswith(f"backbone.down_tr{width}.ops.{j}.bn1."):  # MONAI Convolution's norm slot
                return f"backbone.down.{i}.{j}.adn.N." + official.split("bn1.")[1]
    for i, width in enumerate(("256", "128", "64")):
        if official.startswith(f"backbone.up_tr{width}.up_conv."):
            return f"backbone.up.{i}." + official.split("up_conv.")[1]
        for j in (0, 1):
            if official.startswith(f"backbone.up_tr{width}.ops.{j}.conv1."):
                return f"backbone.dec.{i}.{j}.conv." + official.split("conv1.")[1]
            if official.startswith(f"backbone.up_tr{width}.ops.{j}.bn1."):
                return f"backbone.dec.{i}.{j}.adn.N." + official.split("bn1.")[1]
    if official.startswith(("backbone.encoder", "backbone.decoder")):
        return "backbone.swin." + official[len("backbone."):]
    raise AssertionError(f"no expected name for {official}")


@pytest.fixture(scope="module")
def swin_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, torch.Tensor]]]:
    """The released swinunetr.pth layout (full size, random values) and an official txt_encoding.pth."""
    folder = tmp_path_factory.mktemp("swin_release")
    state = random_state(official_keys("swinunetr"), seed=1)
    clip = state["organ_embedding"].half()  # the official file is float16; training used .float()
    state["organ_embedding"] = clip.float()
    released_checkpoint(folder / "swinunetr.pth", "swinunetr", state)
    torch.save(clip, folder / "txt_encoding.pth")
    yield folder / "swinunetr.pth", folder / "txt_encoding.pth", state
    shutil.rmtree(folder, ignore_errors=True)


def test_universal_swinunetr_release_round_trip(tmp_path: Path, swin_release: tuple[Path, Path, dict[str, torch.Tensor]]) -> None:
    source, txt, state = swin_release
    root = copy_bundle("universal", tmp_path)

    # no override: the bundle's default network merges patches as the release (swin_patch_merging v0.9)
    result = import_weights(root, source, text_embeddings=txt)

    assert result.tensors == len(state) == 170 and result.dropped == []
    assert len(result.renamed) == 170
    net = bundle_network(root, {})
    assert merging_order(net) == V09_MERGING_ORDER
    load_weights(net, root / "models" / "model.pt")  # strict
    ours = net.state_dict()
    for official, tensor in state.items():
        assert torch.equal(ours[expected_name(official)], tensor), official
    # the bundle's embedding file now holds the official vectors, in our format, universal32 order
    classes = get_label_system("universal32").classes
    cached = load_text_embeddings(root / "models" / "text_embeddings.pt", classes=classes, width=512)
    assert torch.equal(cached.embeddings, state["organ_embedding"]) and "txt_encoding.pth" in cached.encoder
    entry = json.loads((root / "configs" / "metadata.json").read_text())["imported_weights"]
    assert entry["text_embeddings"]["sha256"] == hashlib.sha256(txt.read_bytes()).hexdigest()
    assert "overrides" not in entry  # none needed


def test_universal_swinunetr_release_refused_with_monai_1x_patch_merging(
    tmp_path: Path, swin_release: tuple[Path, Path, dict[str, torch.Tensor]]
) -> None:
    source, txt, _ = swin_release
    root = copy_bundle("universal", tmp_path)
    before = snapshot(root)
    with pytest.raises(MedSegZooError) as err:
        import_weights(root, source, text_embeddings=txt, overrides={"swin_patch_merging": "v1"})
    assert str(source) in str(err.value) and "patch merging" in str(err.value)
    assert "swin_patch_merging=v0.9" in str(err.value)
    assert snapshot(root) == before


def test_bundle_swin_patch_merging_key_sets_the_order() -> None:
    root = REPO / "bundles" / BUNDLES["universal"]
    # built on the meta device by import-weights; here the real network at a small size
    small = {"feature_size": 12, "network_def#class_embeddings": "$torch.zeros(32, 8)"}
    assert merging_order(bundle_network(root, small)) == V09_MERGING_ORDER
    current = merging_order(bundle_network(root, {**small, "swin_patch_merging": "v1"}))
    assert current is not None and len(set(current)) == 8  # MONAI 1.x: every voxel of a block once


def unet_release(path: Path, learned_norm_scale: bool = False) -> dict[str, torch.Tensor]:
    state = random_state(official_keys("unet"), seed=2)
    for name in state:
        if ".bn1." in name and name.endswith((".weight", ".bias")) and not learned_norm_scale:
            # identity scale and shift: what an affine-free instance norm computes
            state[name] = torch.ones_like(state[name]) if name.endswith("weight") else torch.zeros_like(state[name])
    released_checkpoint(path, "unet", state)
    return state


def test_universal_unet_release_round_trip_with_learned_norm_scale(tmp_path: Path) -> None:
    root = copy_bundle("universal", tmp_path)
    source = tmp_path / "unet.pth"
    state = unet_release(source, learned_norm_scale=True)
    overrides = {"backbone": "unet"}  # the default unet_norm "batch" is the official batch norm

    result = import_weights(root, source, overrides=overrides)  # embeddings from the checkpoint itself

    dropped = dict(result.dropped)
    assert len(dropped) == 14 * 3  # 14 batch norms: their running statistics only
    assert all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in dropped)
    assert all("running statistic" in reason for reason in dropped.values())
    net = bundle_network(root, overrides)
    load_weights(net, root / "models" / "model.pt")  # strict
    ours = net.state_dict()
    kept = [k for k in state if k not in dropped]
    assert len(kept) == len(ours) == result.tensors
    for official in kept:
        assert torch.equal(ours[expected_name(official)], state[official]), official
    assert torch.equal(ours["backbone.dec.1.0.adn.N.bias"], state["backbone.up_tr128.ops.0.bn1.bias"])
    cached = load_text_embeddings(root / "models" / "text_embeddings.pt")
    assert torch.equal(cached.embeddings, state["organ_embedding"]) and cached.encoder == "checkpoint:unet.pth#organ_embedding"


def test_universal_unet_release_into_the_instance_norm_unet(tmp_path: Path) -> None:
    root = copy_bundle("universal", tmp_path)
    source = tmp_path / "unet.pth"
    state = unet_release(source)  # identity scale and shift
    overrides = {"backbone": "unet", "unet_norm": "instance"}

    result = import_weights(root, source, overrides=overrides)

    dropped = dict(result.dropped)
    assert len(dropped) == 14 * 5  # running statistics + identity scale and shift
    assert "identity batch-norm" in dropped["backbone.down_tr64.ops.0.bn1.weight"]
    net = bundle_network(root, overrides)
    load_weights(net, root / "models" / "model.pt")  # strict
    ours = net.state_dict()
    for official in (k for k in state if k not in dropped):
        assert torch.equal(ours[expected_name(official)], state[official]), official


def test_universal_unet_learned_norm_scale_is_refused_by_the_instance_norm_unet(tmp_path: Path) -> None:
    root = copy_bundle("universal", tmp_path)
    source = tmp_path / "unet.pth"
    unet_release(source, learned_norm_scale=True)
    before = snapshot(root)
    with pytest.raises(StateDictMismatchError) as err:
        import_weights(root, source, overrides={"backbone": "unet", "unet_norm": "instance"})
    text = str(err.value)
    assert str(source) in text and "28 unexpected" in text
    assert "backbone.down.0.0.adn.N.weight" in text and "without affine parameters" in text
    assert "unet_norm=batch" in text
    assert snapshot(root) == before


@pytest.mark.parametrize(("shape", "problem"), [((31, 512), "31"), ((32, 768), "768")])
def test_embedding_file_of_wrong_class_count_or_width_is_refused(tmp_path: Path, shape: tuple[int, int], problem: str) -> None:
    root = copy_bundle("universal", tmp_path)
    source = tmp_path / "unet.pth"
    unet_release(source)
    bad = tmp_path / "txt_encoding.pth"
    torch.save(torch.randn(shape).half(), bad)
    before = snapshot(root)
    with pytest.raises(DataValidationError) as err:
        import_weights(root, source, text_embeddings=bad, overrides={"backbone": "unet"})
    assert str(bad) in str(err.value) and f"shape {shape}" in str(err.value) and problem in str(err.value)
    assert "32 classes and width 512" in str(err.value)
    assert snapshot(root) == before


def test_embedding_file_that_differs_from_the_checkpoint_is_refused(tmp_path: Path) -> None:
    root = copy_bundle("universal", tmp_path)
    source = tmp_path / "unet.pth"
    unet_release(source)
    other = tmp_path / "txt_encoding.pth"
    torch.save(torch.randn(32, 512).half(), other)
    with pytest.raises(DataValidationError, match="differ from the checkpoint's organ_embedding"):
        import_weights(root, source, text_embeddings=other, overrides={"backbone": "unet"})
    assert not (root / "models").exists()


# ---------------------------------------------------------------- TCT and TCSeg


def test_tct_training_checkpoint_drops_auxiliary_heads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medsegzoo.networks import TCTUNet

    root = copy_bundle("tct", tmp_path)
    training = TCTUNet(in_channels=1, num_classes=5, aux_heads=True)
    source = tmp_path / "checkpoint_final.pt"
    torch.save({"network": training.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "trainer": {"epoch": 3}}, source)

    assert main(["import-weights", str(root), str(source)]) == 0

    printed = capsys.readouterr().out
    assert "dropped 10 keys" in printed and "aux_heads.0.weight" in printed and "aux_heads.4.bias" in printed
    net = bundle_network(root, {})
    assert f"loaded into TCTUNet: {len(net.state_dict())} tensors" in printed
    load_weights(net, root / "models" / "model.pt")  # strict
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, training.state_dict()[name]), name


def test_tcseg_plain_state_dict_with_module_prefix(tmp_path: Path) -> None:
    root = copy_bundle("tcseg", tmp_path)
    overrides = {"base_filters": 4}
    net = bundle_network(root, overrides)
    for p in net.parameters():
        torch.nn.init.normal_(p)
    source = tmp_path / "tcseg_la.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, source)  # saved from DataParallel

    result = import_weights(root, source, overrides=overrides)

    assert "'module.' prefix removed" in result.source_format and result.dropped == []
    loaded = bundle_network(root, overrides)
    load_weights(loaded, root / "models" / "model.pt")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, net.state_dict()[name]), name


def test_checkpoint_of_another_bundle_is_refused(tmp_path: Path) -> None:
    from medsegzoo.networks import TCTUNet

    root = copy_bundle("tcseg", tmp_path)
    source = tmp_path / "tct.pt"
    torch.save(TCTUNet(in_channels=1, num_classes=5, aux_heads=False).state_dict(), source)
    before = snapshot(root)
    with pytest.raises(StateDictMismatchError) as err:
        import_weights(root, source, overrides={"base_filters": 4})
    text = str(err.value)
    assert str(source) in text and "unexpected (not in the network)" in text and "main_head.weight" in text
    assert "looks like a TCT U-Net checkpoint" in text
    assert snapshot(root) == before


# ---------------------------------------------------------------- files that are not checkpoints


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    root = copy_bundle("stunet", tmp_path)
    source = tmp_path / "large_ep4k.model"
    stunet_model_file(source)
    source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    before = snapshot(root)
    with pytest.raises(StateDictMismatchError, match="truncated") as err:
        import_weights(root, source, overrides=STUNET_S_105)
    assert str(err.value).startswith(str(source))
    assert snapshot(root) == before


@pytest.mark.parametrize("kind", ["text", "bare_tensor", "pickled_object"])
def test_non_checkpoint_files_are_refused(tmp_path: Path, kind: str) -> None:
    root = copy_bundle("tct", tmp_path)
    source = tmp_path / "weights.pth"
    if kind == "text":
        source.write_text("not weights\n")
        expected = "not a readable PyTorch checkpoint"
    elif kind == "bare_tensor":  # e.g. txt_encoding.pth given as the checkpoint
        torch.save(torch.zeros(32, 512), source)
        expected = "holds no state dict of tensors (a single tensor of shape (32, 512)"
    else:
        torch.save({"network": {"w": torch.zeros(1)}, "config": Path("x")}, source)
        expected = "holds pickled Python objects"
    before = snapshot(root)
    with pytest.raises(StateDictMismatchError) as err:
        import_weights(root, source)
    assert str(err.value).startswith(str(source)) and expected in str(err.value)
    assert snapshot(root) == before


def test_cli_error_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_bundle("tct", tmp_path)
    source = tmp_path / "empty.pt"
    source.write_bytes(b"")
    assert main(["import-weights", str(root), str(source)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"medsegzoo import-weights: error: {source}") and "Traceback" not in err


def test_output_outside_the_bundle_leaves_its_metadata_alone(tmp_path: Path) -> None:
    from medsegzoo.networks import TCTUNet

    root = copy_bundle("tct", tmp_path)
    source = tmp_path / "tct.pt"
    torch.save(TCTUNet(in_channels=1, num_classes=5, aux_heads=False).state_dict(), source)
    meta = (root / "configs" / "metadata.json").read_bytes()
    result = import_weights(root, source, out=tmp_path / "elsewhere" / "tct_model.pt")
    assert result.metadata is None and (tmp_path / "elsewhere" / "tct_model.pt").is_file()
    assert (root / "configs" / "metadata.json").read_bytes() == meta and not (root / "models").exists()


def test_read_checkpoint_reports_where_the_weights_were(tmp_path: Path) -> None:
    source = tmp_path / "x.model"
    state = stunet_model_file(source)
    content = read_checkpoint(source)
    assert content.wrapper_key == "state_dict" and content.removed_prefix is None
    assert "optimizer_state_dict" in content.top_level_keys and set(content.state) == set(state)
