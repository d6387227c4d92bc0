"""Tests of TCSeg's dual-decoder V-Net (medsegzoo.networks.vnet_dual)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.upsample import TrilinearUpsample2x
from medsegzoo.networks.vnet_dual import DualDecoderOutput, DualDecoderVNet, dual_vnet_parameter_count

# TCSeg section 4.9 reports 12.34 M parameters (two decimals of a million); V-Net variants of the
# semi-supervised literature differ by conv bias terms of a few thousand, so accept +-0.01 M.
PAPER_PARAMETERS = 12.34e6
TOLERANCE = 0.01e6


def test_parameter_count_matches_paper() -> None:
    count = dual_vnet_parameter_count(1, 2)
    assert abs(count - PAPER_PARAMETERS) <= TOLERANCE
    assert count == 12_347_716  # the documented exact number of this implementation


def test_shared_encoder_two_decoders_with_different_upsampling() -> None:
    net = DualDecoderVNet()
    assert len(net.decoders) == 2
    kinds = [type(m) for m in net.decoders[0].ups[0].modules()]
    assert nn.ConvTranspose3d in kinds and nn.Upsample not in kinds
    kinds = [type(m) for m in net.decoders[1].ups[0].modules()]
    assert TrilinearUpsample2x in kinds and nn.ConvTranspose3d not in kinds
    encoder = sum(p.numel() for p in net.stages.parameters()) + sum(p.numel() for p in net.downs.parameters())
    total = sum(p.numel() for p in net.parameters())
    decoders = [sum(p.numel() for p in d.parameters()) for d in net.decoders]
    assert encoder + sum(decoders) == total  # one encoder, shared
    assert decoders[0] != decoders[1]


def test_forward_shapes_and_deployed_path() -> None:
    torch.manual_seed(0)
    net = DualDecoderVNet(in_channels=1, out_channels=3).eval()
    x = torch.rand(1, 1, 32, 16, 16)
    with torch.no_grad():
        out = net(x, return_all=True)
        plain = net(x)
    assert isinstance(out, DualDecoderOutput)
    assert [tuple(t.shape) for t in out.logits] == [(1, 3, 32, 16, 16)] * 2
    assert [tuple(t.shape) for t in out.features] == [(1, 16, 32, 16, 16)] * 2
    assert isinstance(plain, torch.Tensor)
    assert torch.allclose(plain, out.logits[0])  # inference = decoder 0 only
    assert not torch.allclose(out.logits[0], out.logits[1])


def test_bad_input_and_arguments() -> None:
    net = DualDecoderVNet().eval()
    with pytest.raises(MedSegZooError, match="divisible by 16"):
        net(torch.rand(1, 1, 20, 16, 16))
    with pytest.raises(MedSegZooError, match="upsampling"):
        DualDecoderVNet(upsampling=("transposed", "nearest"))
    with pytest.raises(MedSegZooError, match="out_channels"):
        DualDecoderVNet(out_channels=1)


def test_base_filters_scale_every_stage() -> None:
    small = DualDecoderVNet(base_filters=4).eval()
    with torch.no_grad():
        out = small(torch.rand(1, 1, 16, 16, 16), return_all=True)
    assert small.features == (4, 8, 16, 32, 64)
    assert out.features[0].shape[1] == 4
    assert dual_vnet_parameter_count(base_filters=4) < dual_vnet_parameter_count() / 10
