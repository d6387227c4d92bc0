from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsegzoo.errors import UnknownNameError
from medsegzoo.networks.stunet import (
    STUNET_SIZES,
    StateDictMismatchError,
    STUNet,
    load_stunet_checkpoint,
    stunet_parameter_count,
)

REFERENCE = json.loads((Path(__file__).parent / "data" / "stunet_state_dict_reference.json").read_text())


@pytest.mark.parametrize("size", ["S", "B", "L", "H"])
def test_state_dict_names_and_shapes_match_published(size):
    with torch.device("meta"):  # H has 1.46 G parameters: never allocate them here
        net = STUNet(1, 105, size=size)
    ours = [[name, list(t.shape)] for name, t in net.state_dict().items()]
    assert ours == REFERENCE[size]


@pytest.mark.parametrize("size", ["S", "B", "L", "H"])
def test_parameter_counts_equal_paper_table(size):
    count = stunet_parameter_count(size)
    assert round(count / 1e6, 2) == STUNET_SIZES[size].published_params_m


def test_deep_supervision_outputs_in_training_full_resolution_in_eval():
    net = STUNet(1, 3, size="S", deep_supervision=True)
    x = torch.randn(1, 1, 64, 64, 64)  # the bottleneck must keep >1 voxel for InstanceNorm
    net.train()
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(1, 3, 64 // 2**i, 64 // 2**i, 64 // 2**i) for i in range(5)]
    net.eval()
    with torch.no_grad():
        full = net(x)
    assert isinstance(full, torch.Tensor) and full.shape == (1, 3, 64, 64, 64)
    # the eval output is the training full-resolution head on the same weights
    # (InstanceNorm has no running statistics, so train and eval modes compute the same map)
    assert torch.allclose(outs[0], full, atol=1e-5)


def test_anisotropic_pooling_plan():
    net = STUNet(1, 2, size="S", pool_kernel_sizes=[[2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]])
    assert net.divisible_by == (32, 32, 8)
    out = net.eval()(torch.randn(1, 1, 64, 64, 16))
    assert out.shape == (1, 2, 64, 64, 16)


def test_planned_strides_and_kernels_keep_the_published_names():
    # a thick-slice plan (RAS, slices last): no pooling and 1-wide kernels on the slice axis first
    pools = [[2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    kernels = [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    with torch.device("meta"):
        planned = STUNet(1, 105, size="S", pool_kernel_sizes=pools, conv_kernel_sizes=kernels)
    state = planned.state_dict()
    assert list(state) == [name for name, _ in REFERENCE["S"]]
    assert state["conv_blocks_context.0.0.conv1.weight"].shape == (16, 1, 3, 3, 1)
    assert state["conv_blocks_localization.4.0.conv2.weight"].shape == (16, 16, 3, 3, 1)  # the decoder too
    assert state["conv_blocks_context.2.0.conv1.weight"].shape == (64, 32, 3, 3, 3)
    net = STUNet(1, 2, size="S", channels=[4, 8, 8, 8, 8, 8], pool_kernel_sizes=pools, conv_kernel_sizes=kernels)
    assert net.divisible_by == (32, 32, 8)
    x = torch.randn(1, 1, 64, 64, 16)
    with torch.no_grad():
        out = net.eval()(x)
        assert out.shape == (1, 2, 64, 64, 16)
        torch.testing.assert_close(torch.jit.script(net)(x), out)


def test_unknown_size_is_clear():
    with pytest.raises(UnknownNameError, match="unknown STU-Net size 'XL'"):
        STUNet(size="XL")


def test_load_checkpoint_strict_and_fine_tuning(tmp_path):
    source = STUNet(1, 105, size="S")
    path = tmp_path / "model_final_checkpoint.model"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)

    same = STUNet(1, 105, size="S")
    report = load_stunet_checkpoint(same, str(path))
    assert not report["missing"] and not report["skipped_shape"]
    assert torch.equal(same.conv_blocks_context[0][0].conv1.weight, source.conv_blocks_context[0][0].conv1.weight)

    target = STUNet(1, 9, size="S")  # another label set: heads differ
    with pytest.raises(StateDictMismatchError) as err:
        load_stunet_checkpoint(target, str(path))
    assert "seg_outputs.0.weight: checkpoint (105, 256, 1, 1, 1) vs network (9, 256, 1, 1, 1)" in str(err.value)
    head_before = target.seg_outputs[0].weight.clone()
    report = load_stunet_checkpoint(target, str(path), only_matching_shapes=True)
    assert len(report["skipped_shape"]) == 10  # 5 heads x (weight, bias)
    assert torch.equal(target.seg_outputs[0].weight, head_before)
    assert torch.equal(target.upsample_layers[0].conv.weight, source.upsample_layers[0].conv.weight)
