"""The bf16 trilinear upsampling against PyTorch's kernel, a hand-computed case and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsegzoo.networks import TCTUNet
from medsegzoo.networks.upsample import TrilinearUpsample2x, trilinear_resize


def test_hand_computed_one_axis():
    # a 1 x 1 x 3 line doubled along its last axis: 0.75 / 0.25 weights, clamped ends
    x = torch.tensor([0.0, 4.0, 8.0], dtype=torch.bfloat16).reshape(1, 1, 1, 1, 3)
    y = trilinear_resize(x, (2, 2, 6))
    expected = torch.tensor([0.0, 1.0, 3.0, 5.0, 7.0, 8.0])
    assert y.dtype == torch.bfloat16 and y.shape == (1, 1, 2, 2, 6)
    for i in range(2):
        for j in range(2):
            assert torch.equal(y[0, 0, i, j].float(), expected)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (1, 2, 1, 3, 2), (1, 8, 6, 6, 6)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matches_float32_kernel(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    size = [2 * s for s in shape[2:]]
    reference = F.interpolate(x.float(), size=size, mode="trilinear", align_corners=False)
    y = trilinear_resize(x, size)
    assert y.dtype == dtype and y.shape == reference.shape
    # three passes, each rounded to the low precision: a few ulps of values below ~5
    assert (y.float() - reference).abs().max() < 0.05
    assert (y.float() - reference).abs().mean() < 0.005


def test_float32_and_other_sizes_use_pytorch_exactly():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 4, 5, 3)
    assert torch.equal(trilinear_resize(x, (8, 10, 6)), F.interpolate(x, size=(8, 10, 6), mode="trilinear"))
    xb = x.bfloat16()  # not exactly 2x: PyTorch's kernel
    assert torch.equal(trilinear_resize(xb, (9, 10, 6)), F.interpolate(xb, size=(9, 10, 6), mode="trilinear"))
    assert torch.equal(TrilinearUpsample2x()(x), F.interpolate(x, scale_factor=2, mode="trilinear"))


def test_training_keeps_pytorch_kernel():
    # where a gradient flows back (training), PyTorch's kernel and its backward run unchanged
    torch.manual_seed(2)
    base = torch.randn(1, 2, 3, 4, 5).bfloat16()
    weights = torch.randn(1, 2, 6, 8, 10)
    ours, ref = base.clone().requires_grad_(), base.clone().requires_grad_()
    out = trilinear_resize(ours, [6, 8, 10])
    expected = F.interpolate(ref, size=(6, 8, 10), mode="trilinear")
    assert torch.equal(out, expected)
    (out.float() * weights).sum().backward()
    (expected.float() * weights).sum().backward()
    assert torch.equal(ours.grad, ref.grad)
    with torch.no_grad():  # the same tensor in inference takes the separable path
        fast = trilinear_resize(ours, [6, 8, 10])
    assert not torch.equal(fast, expected) and (fast.float() - expected.float()).abs().max() < 0.05


def test_tct_unet_bf16_close_to_float32():
    torch.manual_seed(3)
    net = TCTUNet(num_classes=3).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
    assert out.shape == ref.shape
    agree = (out.float().argmax(1) == ref.argmax(1)).float().mean()
    assert agree > 0.97


def test_torchscript_compiles_pytorch_kernel():
    # the model zoo scripts the networks: the scripted function keeps PyTorch's kernel
    scripted = torch.jit.script(trilinear_resize)
    x = torch.randn(1, 2, 3, 4, 5).bfloat16()
    assert torch.equal(scripted(x, [6, 8, 10]), F.interpolate(x, size=(6, 8, 10), mode="trilinear"))
