"""TCT 3D U-Net: Table 6 shapes, parameter count, training vs inference outputs."""

from __future__ import annotations

import pytest
import torch

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks import TCTUNet, tct_unet_parameter_count


def _table6_count(num_classes: int = 5, bias: bool = True, affine_norm: bool = False) -> int:
    """Parameters computed by hand from Table 6 (3x3x3 convolutions) plus the main head."""
    convs = [
        (1, 16), (16, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128),
        (128, 128), (128, 256),  # encoder and bottleneck
        (384, 128), (128, 128), (192, 64), (64, 64), (96, 32), (32, 32), (48, 16), (16, 16),
    ]
    total = sum(27 * i * o + (o if bias else 0) + (2 * o if affine_norm else 0) for i, o in convs)
    return total + 27 * 16 * (num_classes + 1) + (num_classes + 1)


def test_inference_network_has_the_papers_4_12_million_parameters():
    count = tct_unet_parameter_count(num_classes=5)
    assert count == _table6_count() == 4_123_814
    assert round(count / 1e6, 2) == 4.12
    # an affine norm would give 4.13 M (why the default is non-affine instance norm)
    assert tct_unet_parameter_count(norm="batch") == _table6_count(affine_norm=True) == 4_126_278
    # the training network adds N heads of 16 -> 2 channels
    assert tct_unet_parameter_count(aux_heads=True) - count == 5 * (27 * 16 * 2 + 2)


def test_training_returns_main_and_aux_and_eval_returns_main_only():
    torch.manual_seed(0)
    net = TCTUNet(num_classes=3)
    x = torch.randn(2, 1, 32, 32, 16)
    out = net(x)
    assert out["main"].shape == (2, 4, 32, 32, 16)
    assert out["aux"].shape == (2, 3, 2, 32, 32, 16)
    # the aux heads are computed from the same features as the main head
    feats = net.features(x)
    assert torch.allclose(out["aux"][:, 1], net.aux_heads[1](feats), atol=1e-5)
    net.eval()
    with torch.no_grad():
        main = net(x)
    assert isinstance(main, torch.Tensor) and main.shape == (2, 4, 32, 32, 16)


def test_inference_network_loads_training_weights_and_agrees():
    torch.manual_seed(1)
    train_net = TCTUNet(num_classes=2)
    infer_net = TCTUNet(num_classes=2, aux_heads=False)
    result = infer_net.load_state_dict(train_net.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(k.startswith("aux_heads.") for k in result.unexpected_keys)
    x = torch.randn(1, 1, 17, 20, 9)  # odd sizes: upsampling follows the skip sizes
    train_net.eval()
    with torch.no_grad():
        assert torch.allclose(train_net(x), infer_net(x), atol=1e-6)
        assert infer_net(x).shape == (1, 3, 17, 20, 9)


def test_network_config_errors():
    with pytest.raises(MedSegZooError, match="num_classes"):
        TCTUNet(num_classes=0)
    with pytest.raises(MedSegZooError, match="5 stage widths"):
        TCTUNet(features=(16, 32, 64))
