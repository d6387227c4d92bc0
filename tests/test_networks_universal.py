"""Universal Model network: grouped dynamic heads, shapes, parameter counts, class extension."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.swin_unetr import PatchMerging

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.universal import (
    HEAD_PARAMS,
    V09_MERGING_ORDER,
    BatchStatisticsNorm3d,
    LegacyPatchMerging,
    UniversalModel,
    dynamic_head_forward,
    dynamic_head_grouped_conv,
    dynamic_head_loop,
)

# the paper's counts (62.2 M Swin UNETR, 19.1 M U-Net) match our BACKBONES to 0.3 %; the
# Universal head (global feature, text projection, controller: 0.41 M / 0.34 M) comes on top
PAPER_SWIN_M = 62.2
PAPER_UNET_M = 19.1
BACKBONE_TOLERANCE = 0.005  # relative
FULL_MODEL_TOLERANCE = 0.02  # relative: the whole model stays within 2 % of the paper


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_head_param_layout() -> None:
    assert HEAD_PARAMS == 153  # 64 + 64 + 8 weights, 8 + 8 + 1 biases


def test_batched_heads_equal_per_class_loop_and_grouped_conv() -> None:
    torch.manual_seed(0)
    feature = torch.randn(2, 8, 5, 6, 7, requires_grad=True)
    params = torch.randn(2, 4, HEAD_PARAMS, requires_grad=True)
    batched = dynamic_head_forward(feature, params)
    assert batched.shape == (2, 4, 5, 6, 7)
    torch.testing.assert_close(batched, dynamic_head_loop(feature, params), rtol=1e-5, atol=1e-5)
    grouped = dynamic_head_grouped_conv(feature, params)
    torch.testing.assert_close(batched, grouped, rtol=1e-5, atol=1e-5)
    # the gradients that train the controller and the decoder agree too
    weights = torch.randn_like(batched)
    g_batched = torch.autograd.grad((batched * weights).sum(), [feature, params])
    g_grouped = torch.autograd.grad((grouped * weights).sum(), [feature, params])
    for a, b in zip(g_batched, g_grouped):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_head_with_hand_made_params() -> None:
    # identity first two layers, third sums channels 0 and 1, bias 0.5: logit = relu(x0)+relu(x1)+0.5
    feature = torch.randn(1, 8, 3, 3, 3)
    eye = torch.eye(8).flatten()
    w3 = torch.zeros(8)
    w3[:2] = 1.0
    params = torch.cat([eye, eye, w3, torch.zeros(16), torch.tensor([0.5])]).view(1, 1, -1)
    out = dynamic_head_forward(feature, params)
    expected = feature[:, 0].relu() + feature[:, 1].relu() + 0.5
    torch.testing.assert_close(out[:, 0], expected)


@pytest.mark.parametrize("width", [3, 384, 512])
def test_any_embedding_width_unet(width: int) -> None:
    torch.manual_seed(0)
    model = UniversalModel(torch.randn(5, width), backbone="unet", unet_base_channels=4)
    out = model(torch.randn(2, 1, 16, 16, 16))
    assert out.shape == (2, 5, 16, 16, 16)
    assert model.groups[0].text_projection[0].in_features == width


def test_swin_backbone_small_forward() -> None:
    model = UniversalModel(torch.randn(3, 16), backbone="swinunetr", feature_size=12)
    out = model(torch.randn(1, 1, 64, 64, 64))
    assert out.shape == (1, 3, 64, 64, 64)


def test_parameter_counts_near_paper() -> None:
    counts = {}
    for kind, paper in (("swinunetr", PAPER_SWIN_M), ("unet", PAPER_UNET_M)):
        model = UniversalModel(torch.zeros(32, 512), backbone=kind)
        backbone, full = _count(model.backbone), _count(model)
        counts[kind] = (backbone, full)
        print(f"{kind}: backbone {backbone / 1e6:.2f} M, with head {full / 1e6:.2f} M, paper {paper} M")
        assert abs(backbone / 1e6 - paper) / paper < BACKBONE_TOLERANCE
        assert abs(full / 1e6 - paper) / paper < FULL_MODEL_TOLERANCE
    assert counts["swinunetr"][0] == 62_186_610  # MONAI SwinUNETR(48) without its output conv


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_extension_keeps_old_outputs_bit_identical(norm: str) -> None:
    torch.manual_seed(0)
    model = UniversalModel(torch.randn(3, 16), backbone="unet", unet_base_channels=4, class_names=["liver", "spleen", "pancreas"],
                           unet_norm=norm)
    x = torch.randn(2, 1, 16, 16, 16)
    model.eval()
    with torch.no_grad():
        before = model(x).clone()
    new = model.add_classes(torch.randn(2, 24), ["kidney_left", "kidney_right"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in new.parameters()}
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=1e-5)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(x)[:, 3:].sigmoid().mean().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
    assert after.shape == (2, 5, 16, 16, 16)
    assert torch.equal(after[:, :3], before)
    assert model.class_names == ("liver", "spleen", "pancreas", "kidney_left", "kidney_right")
    with pytest.raises(MedSegZooError, match="already predicts"):
        model.add_classes(torch.randn(1, 16), ["liver"])


def test_unknown_backbone() -> None:
    with pytest.raises(MedSegZooError, match="backbone"):
        UniversalModel(torch.randn(2, 4), backbone="resnet")


def test_class_subset_forward_equals_the_full_outputs_of_those_classes() -> None:
    torch.manual_seed(0)
    model = UniversalModel(torch.randn(6, 12), backbone="unet", unet_base_channels=4).eval()
    model.add_classes(torch.randn(2, 12), freeze=False)  # a second group: subsets span groups
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        full = model(x)
        subset = model(x, classes=[1, 4, 6])
    assert full.shape[1] == 8 and subset.shape == (2, 3, 16, 16, 16)
    torch.testing.assert_close(subset, full[:, [1, 4, 6]], rtol=1e-5, atol=1e-5)
    with pytest.raises(MedSegZooError, match="increasing indices"):
        model(x, classes=[4, 1])
    with pytest.raises(MedSegZooError, match="increasing indices"):
        model(x, classes=[8])


def test_predict_classes_restricts_the_default_output_without_changing_weights() -> None:
    torch.manual_seed(0)
    names = ["spleen", "liver", "liver_tumor", "kidney_left"]
    model = UniversalModel(torch.randn(4, 12), backbone="unet", unet_base_channels=4, class_names=names).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        full = model(x)
        model.set_predict_classes(["kidney_left", "spleen"])  # returned in the model's order
        part = model(x)
    torch.testing.assert_close(part, full[:, [0, 3]], rtol=1e-5, atol=1e-5)
    restricted = UniversalModel(torch.randn(4, 12), backbone="unet", unet_base_channels=4, class_names=names,
                                predict_classes=["liver"])
    assert set(restricted.state_dict()) == set(model.state_dict())
    with pytest.raises(MedSegZooError, match="not classes of the model"):
        model.set_predict_classes(["pancreas"])


# ---------------------------------------------------------------- U-Net normalisation


def _norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for name, m in model.named_modules() if name.endswith("adn.N")]


def test_unet_batch_norm_has_the_official_learned_scale_and_shift() -> None:
    model = UniversalModel(torch.zeros(32, 512), backbone="unet")  # default: the official batch norm
    norms = _norms(model.backbone)
    # the official U-Net has 14 batch norms (4 encoder + 3 decoder levels, two convs each)
    assert len(norms) == 14 and all(isinstance(n, BatchStatisticsNorm3d) for n in norms)
    state = model.state_dict()
    assert state["backbone.down.0.0.adn.N.weight"].shape == (32,)  # official down_tr64.ops.0.bn1.weight
    assert state["backbone.down.3.1.adn.N.bias"].shape == (512,)  # official down_tr512.ops.1.bn1.bias
    assert state["backbone.dec.2.1.adn.N.weight"].shape == (64,)  # official up_tr64.ops.1.bn1.weight
    # no running statistics: the official layer never reads them, so none are kept
    assert not [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    # every norm adds 2 x channels learned numbers, nothing else differs from the instance-norm U-Net
    instance = UniversalModel(torch.zeros(32, 512), backbone="unet", unet_norm="instance")
    assert all(n.weight is None for n in _norms(instance.backbone))  # affine-free instance norm
    added = sum(2 * n.num_features for n in norms)
    assert _count(model) - _count(instance) == added == 2 * (32 + 64 + 64 + 128 + 128 + 256 + 256 + 512 + 256 * 2 + 128 * 2 + 64 * 2)
    extra = set(state) - set(instance.state_dict())
    assert extra == {f"backbone.{k}.adn.N.{p}" for k in [f"down.{i}.{j}" for i in range(4) for j in (0, 1)]
                     + [f"dec.{i}.{j}" for i in range(3) for j in (0, 1)] for p in ("weight", "bias")}


def test_batch_statistics_norm_over_the_batch_in_training_and_per_sample_in_evaluation() -> None:
    torch.manual_seed(0)
    norm = BatchStatisticsNorm3d(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x = torch.randn(2, 3, 4, 5, 6) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1, 1) + 5.0
    scale, shift = norm.weight.view(1, 3, 1, 1, 1), norm.bias.view(1, 3, 1, 1, 1)

    def by_hand(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        mean = values.mean(dim=dims, keepdim=True)
        var = values.var(dim=dims, keepdim=True, unbiased=False)  # batch norm normalises with the biased variance
        return (values - mean) / torch.sqrt(var + 1e-5) * scale + shift

    norm.train()
    torch.testing.assert_close(norm(x), by_hand(x, (0, 2, 3, 4)))  # statistics of the whole batch
    norm.eval()
    per_sample = norm(x)
    torch.testing.assert_close(per_sample, by_hand(x, (2, 3, 4)))  # each sample on its own
    # = the official inference, which gives the network one window at a time
    norm.train()
    torch.testing.assert_close(per_sample[1:], norm(x[1:]))
    norm.eval()
    assert norm.running_mean is None and norm.running_var is None
    torch.testing.assert_close(norm(x[1:]), per_sample[1:])  # and no other window changes a window's result


def test_unet_norm_switch_changes_what_the_network_computes() -> None:
    torch.manual_seed(0)
    batch = UniversalModel(torch.randn(2, 8), backbone="unet", unet_base_channels=4).eval()
    instance = UniversalModel(torch.randn(2, 8), backbone="unet", unet_base_channels=4, unet_norm="instance").eval()
    instance.load_state_dict({k: v for k, v in batch.state_dict().items() if ".adn.N." not in k})
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        # identity scale and shift (the initial values): batch norm per sample == instance norm
        torch.testing.assert_close(batch(x), instance(x), rtol=1e-4, atol=1e-4)
        for n in _norms(batch.backbone):
            n.weight.mul_(1.5)
        assert (batch(x) - instance(x)).abs().max() > 1e-2


# ---------------------------------------------------------------- Swin UNETR patch merging


def _merging_layers(model: torch.nn.Module) -> list[PatchMerging]:
    return [m for m in model.modules() if isinstance(m, PatchMerging)]


def test_swin_patch_merging_default_is_the_v09_order_written_out_by_hand() -> None:
    model = UniversalModel(torch.zeros(3, 8), backbone="swinunetr", feature_size=12)
    layers = _merging_layers(model)
    assert len(layers) == 4 and all(type(m) is LegacyPatchMerging for m in layers)
    merging = layers[0]
    x = torch.randn(1, 4, 6, 8, merging.dim)
    # MONAI 0.9's gathering: (0,1,0) and (0,0,1) twice, (1,1,0) and (0,1,1) never
    parts = [x[:, 0::2, 0::2, 0::2], x[:, 1::2, 0::2, 0::2], x[:, 0::2, 1::2, 0::2], x[:, 0::2, 0::2, 1::2],
             x[:, 1::2, 0::2, 1::2], x[:, 0::2, 1::2, 0::2], x[:, 0::2, 0::2, 1::2], x[:, 1::2, 1::2, 1::2]]
    torch.testing.assert_close(merging(x), merging.reduction(merging.norm(torch.cat(parts, -1))))
    assert V09_MERGING_ORDER == ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1))
    with pytest.raises(MedSegZooError, match="even sizes"):
        merging(torch.randn(1, 3, 4, 4, merging.dim))


def test_swin_patch_merging_switch_keeps_the_weights_and_changes_the_output() -> None:
    torch.manual_seed(0)
    legacy = UniversalModel(torch.randn(3, 8), backbone="swinunetr", feature_size=12).eval()
    current = UniversalModel(torch.randn(3, 8), backbone="swinunetr", feature_size=12, swin_patch_merging="v1").eval()
    assert all(type(m) is PatchMerging for m in _merging_layers(current))
    current.load_state_dict(legacy.state_dict())  # same names and shapes: one weights file fits both
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        assert (legacy(x) - current(x)).abs().max() > 1e-3


def test_unknown_network_switches_are_refused() -> None:
    with pytest.raises(MedSegZooError, match="swin_patch_merging"):
        UniversalModel(torch.randn(2, 4), backbone="swinunetr", feature_size=12, swin_patch_merging="v2")
    with pytest.raises(MedSegZooError, match="unet_norm"):
        UniversalModel(torch.randn(2, 4), backbone="swinunetr", feature_size=12, unet_norm="group")


def test_unet_backbone_scripts_and_matches_eager() -> None:
    """The U-Net backbone compiles with TorchScript (the whole universal model does not yet: its README says so)."""
    from medsegzoo.networks.universal import UNet3DBackbone

    torch.manual_seed(0)
    net = UNet3DBackbone(1, 4, 3, "instance").eval()
    x = torch.rand(1, 1, 16, 16, 16)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        for eager, compiled in zip(net(x), scripted(x), strict=True):
            assert eager.shape == compiled.shape
            assert torch.allclose(eager, compiled, atol=1e-6)
