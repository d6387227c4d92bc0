"""nnU-Net's network topology: strides, kernels and patch size on hand-worked cases."""

from __future__ import annotations

import math

import pytest

from medsegzoo.planning import (
    fit_conv_kernel_sizes,
    fit_pool_kernel_sizes,
    plain_unet_feature_map_size,
    plan_network_topology,
    plan_patch_size,
)


def test_thick_slices_get_in_plane_strides_and_kernels_until_the_axes_match() -> None:
    # 5 mm slices, 0.8 mm pixels (slice axis first, as nnU-Net orders it): the slice axis is not
    # pooled and gets 1-wide kernels until the pixels are 3.2 mm (5 / 3.2 < 2)
    topology = plan_network_topology((5.0, 0.8, 0.8), (40, 224, 192))
    assert topology.pool_kernel_sizes[0] == [1, 2, 2]
    assert topology.conv_kernel_sizes[0] == [1, 3, 3]
    assert topology.pool_kernel_sizes == [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert topology.conv_kernel_sizes == [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert topology.divisible_by == [8, 32, 32]
    assert topology.patch_size == [40, 224, 192]


def test_axis_order_does_not_matter() -> None:
    # the same set in RAS order (slice axis last)
    topology = plan_network_topology((0.8, 0.8, 5.0), (224, 192, 40))
    assert topology.pool_kernel_sizes[:2] == [[2, 2, 1], [2, 2, 1]]
    assert topology.conv_kernel_sizes[:2] == [[3, 3, 1], [3, 3, 1]]


def test_isotropic_spacing_pools_every_axis_and_pads_the_patch() -> None:
    topology = plan_network_topology((1.5, 1.5, 1.5), (100, 100, 100))
    # 100 -> 50 -> 25 -> 13 -> 7: four pools (7 < 2 x 4 stops), patch padded to a multiple of 16
    assert topology.pool_kernel_sizes == [[2, 2, 2]] * 4
    assert topology.conv_kernel_sizes == [[3, 3, 3]] * 5
    assert topology.patch_size == [112, 112, 112]


def test_a_single_long_axis_keeps_pooling_only_while_three_minimal_edges_remain() -> None:
    # (8, 8, 64): one joint pool, then only the long axis while it keeps >= 12 voxels
    topology = plan_network_topology((1.0, 1.0, 1.0), (8, 8, 64))
    assert topology.pool_kernel_sizes == [[2, 2, 2], [1, 1, 2], [1, 1, 2]]
    assert topology.divisible_by == [2, 2, 8]


def test_feature_map_estimate_by_hand() -> None:
    # two stages (32 and 64 channels, two convolutions each) on an 8^3 patch, 3 labels:
    # encoder 2*32*512 + 2*64*64, decoder (2 convs + transposed conv) 3*32*512, output 3*512
    assert plain_unet_feature_map_size((8, 8, 8), [[2, 2, 2]], num_labels=3) == 32768 + 8192 + 49152 + 1536
    # six stages on 32^3: channels 32, 64, 128, 256, 320, 320 (capped at 320, not 512)
    sizes, channels = [32**3, 16**3, 8**3, 4**3, 2**3, 1], [32, 64, 128, 256, 320, 320]
    encoder = sum(2 * c * n for c, n in zip(channels, sizes))
    decoder = sum(3 * c * n for c, n in zip(channels[:-1], sizes[:-1]))
    assert plain_unet_feature_map_size((32, 32, 32), [[2, 2, 2]] * 5, num_labels=2) == encoder + decoder + 2 * 32**3


def test_patch_shrinks_the_relatively_largest_axis_to_a_voxel_budget() -> None:
    # start at the median shape 100^3 (padded to 112^3), shrink axes in turn by 16 until 64^3
    topology = plan_patch_size((1.0, 1.0, 1.0), (100, 100, 100), num_labels=2, max_patch_voxels=64**3)
    assert topology.patch_size == [64, 64, 64]
    assert topology.pool_kernel_sizes == [[2, 2, 2]] * 4


def test_patch_fits_the_nnunet_memory_estimate() -> None:
    topology = plan_patch_size((1.5, 1.5, 1.5), (300, 250, 250), num_labels=105)
    assert plain_unet_feature_map_size(topology.patch_size, topology.pool_kernel_sizes, 105) <= 560_000_000
    # one divisibility step larger on any axis no longer fits (the loop stopped at the first fit)
    assert all(p % d == 0 for p, d in zip(topology.patch_size, topology.divisible_by))
    assert math.prod(topology.patch_size) > 100**3
    assert plan_patch_size((1.5, 1.5, 1.5), (300, 250, 250), 105, gpu_memory_gb=4).patch_size != topology.patch_size


def test_fit_to_stunet_stages() -> None:
    six = [[2, 2, 2]] * 6
    assert fit_pool_kernel_sizes(six, 5) == [[2, 2, 2]] * 5  # the first five, as STU-Net's trainers
    assert fit_pool_kernel_sizes([[1, 2, 2], [2, 2, 2]], 5) == [[1, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert fit_conv_kernel_sizes([[1, 3, 3], [3, 3, 3]], 4) == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]


@pytest.mark.parametrize("min_edge", [4, 8])
def test_bottleneck_keeps_the_minimal_edge(min_edge: int) -> None:
    topology = plan_network_topology((1.0, 1.0, 1.0), (128, 128, 128), min_feature_map_size=min_edge)
    bottleneck = [128 // d for d in topology.divisible_by]
    assert all(min_edge <= b < 2 * min_edge for b in bottleneck)
