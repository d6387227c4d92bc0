"""Universal Model network: grouped dynamic heads, shapes, parameter counts, class extension."""

from __future__ import annotations

import pytest
import torch

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.universal import (
    HEAD_PARAMS,
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


def test_extension_keeps_old_outputs_bit_identical() -> None:
    torch.manual_seed(0)
    model = UniversalModel(torch.randn(3, 16), backbone="unet", unet_base_channels=4, class_names=["liver", "spleen", "pancreas"])
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
