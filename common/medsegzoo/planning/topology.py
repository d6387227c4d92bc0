"""Network topology the nnU-Net way: pooling strides, convolution kernels and the patch size.

nnU-Net's planner (v2, the version A-Eval names; ``network_topology.get_pool_and_conv_props`` and
``ExperimentPlanner.get_plans_for_configuration`` in the nnU-Net copy of the STU-Net repository)
derives the U-Net's shape from the target spacing:

* an axis is pooled (stride 2) only while its current spacing is within a factor 2 of the finest
  valid axis and its feature map keeps at least ``2 * min_feature_map_size`` voxels, so a thick-slice
  axis is not pooled at first (strides such as ``[1, 2, 2]``) until the in-plane axes have become as
  coarse;
* an axis gets a 3-wide kernel once its spacing is within a factor 2 of the finest axis and a 1-wide
  kernel before that (``[1, 3, 3]`` on the coarse axis); the bottleneck is always 3x3x3;
* the patch starts as a 256^3-voxel box with the aspect ratio of the spacing, clipped to the median
  shape, and is shrunk (the axis largest relative to the median shape first) until nnU-Net's
  feature-map estimate of its default U-Net (:func:`plain_unet_feature_map_size`) fits the GPU
  memory target (8 GB by default).

The implementation is our own; the rules and constants are nnU-Net's. STU-Net always has six
stages: :func:`fit_pool_kernel_sizes` keeps the first five strides of a plan or pads it with
``[1, 1, 1]``, as the official STU-Net trainers do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NNUNET_REFERENCE_FEATURE_MAP_SIZE",
    "NetworkTopology",
    "fit_conv_kernel_sizes",
    "fit_pool_kernel_sizes",
    "plain_unet_feature_map_size",
    "plan_network_topology",
    "plan_patch_size",
]

# nnU-Net v2's reference: the feature-map estimate of its default U-Net that fits an 8 GB GPU
# at batch size 2 (ExperimentPlanner.UNet_reference_val_3d for UNet_reference_val_corresp_GB = 8)
NNUNET_REFERENCE_FEATURE_MAP_SIZE = 560_000_000
NNUNET_REFERENCE_GB = 8.0


@dataclass(frozen=True)
class NetworkTopology:
    """Strides, kernels and patch size of a planned U-Net.

    Attributes:
        pool_kernel_sizes: one stride per downsampling, e.g. ``[[1, 2, 2], [1, 2, 2], [2, 2, 2], ...]``
            (nnU-Net's plans also list the first stage's ``[1, 1, 1]``; it is left out here).
        conv_kernel_sizes: one kernel per stage (``len(pool_kernel_sizes) + 1``), the bottleneck's last.
        patch_size: the patch padded up to ``divisible_by``.
        divisible_by: ``2 ** (pools per axis)``.
    """

    pool_kernel_sizes: list[list[int]]
    conv_kernel_sizes: list[list[int]]
    patch_size: list[int]
    divisible_by: list[int]


def _pad_to_multiple(shape: Sequence[int], multiple: Sequence[int]) -> list[int]:
    return [int(math.ceil(s / m) * m) for s, m in zip(shape, multiple)]


def plan_network_topology(
    spacing: Sequence[float],
    patch_size: Sequence[float],
    min_feature_map_size: int = 4,
    max_pools_per_axis: int = 999_999,
) -> NetworkTopology:
    """Pooling strides and convolution kernels for a patch at a spacing (nnU-Net v2's rule).

    Args:
        spacing: target spacing per axis in mm.
        patch_size: patch size per axis in voxels (padded up to the divisibility in the result).
        min_feature_map_size: smallest edge of a bottleneck feature map (nnU-Net: 4).
        max_pools_per_axis: cap on the pools of one axis (nnU-Net: no cap).

    Returns:
        The planned topology.

    Example:
        A thick-slice set (5 mm slices, 0.8 mm pixels, slice axis first as nnU-Net orders it)
        gets strides ``[1, 2, 2]`` and kernels ``[1, 3, 3]`` until the pixels are 3.2 mm wide.
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    pools: list[list[int]] = []
    kernels: list[list[int]] = []
    pools_per_axis = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [a for a in range(dim) if current_size[a] >= 2 * min_feature_map_size]
        if not valid:
            break
        finest_valid = min(current_spacing[a] for a in valid)
        valid = [a for a in valid if current_spacing[a] / finest_valid < 2]
        valid = [a for a in valid if pools_per_axis[a] < max_pools_per_axis]
        # one axis alone is pooled only while it keeps 3 x the minimal edge (nnU-Net's rule)
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        # a kernel becomes 3-wide once its axis is within a factor 2 of the finest, and stays so
        finest = min(current_spacing)
        kernel = [3 if kernel[a] == 3 or current_spacing[a] / finest < 2 else 1 for a in range(dim)]
        stride = [2 if a in valid else 1 for a in range(dim)]
        for a in valid:
            pools_per_axis[a] += 1
            current_spacing[a] *= 2
            current_size[a] = math.ceil(current_size[a] / 2)
        pools.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dim)  # the bottleneck
    divisible_by = [2**n for n in pools_per_axis]
    return NetworkTopology(pools, kernels, _pad_to_multiple(patch_size, divisible_by), divisible_by)


def plain_unet_feature_map_size(
    patch_size: Sequence[int],
    pool_kernel_sizes: Sequence[Sequence[int]],
    num_labels: int,
    base_features: int = 32,
    max_features: int = 320,
    convs_per_stage: int = 2,
) -> int:
    """nnU-Net's memory proxy: the summed feature-map sizes of its default U-Net on one patch.

    The count nnU-Net's planner uses (``PlainConvUNet.compute_conv_feature_map_size``, no deep
    supervision): every convolution's output voxels x channels in the encoder and decoder, the
    transposed convolutions' outputs and the final segmentation map.

    Args:
        patch_size: patch in voxels.
        pool_kernel_sizes: the downsampling strides (without the first stage's ``[1, 1, 1]``).
        num_labels: output classes including background.
        base_features: channels of the first stage (nnU-Net: 32), doubled per stage ...
        max_features: ... up to this cap (nnU-Net 3D: 320).
        convs_per_stage: convolutions per encoder and decoder stage (nnU-Net: 2).
    """
    strides = [[1] * len(patch_size), *[list(p) for p in pool_kernel_sizes]]
    features = [min(max_features, base_features * 2**s) for s in range(len(strides))]
    size = [int(s) for s in patch_size]
    stage_sizes: list[list[int]] = []
    total = 0
    for stride, channels in zip(strides, features):
        size = [s // p for s, p in zip(size, stride)]
        stage_sizes.append(size)
        total += convs_per_stage * channels * math.prod(size)
    for level in range(len(strides) - 1):  # decoder, coarsest first
        skip = stage_sizes[-(level + 2)]
        channels = features[-(level + 2)]
        total += (convs_per_stage + 1) * channels * math.prod(skip)  # convolutions + transposed convolution
    total += num_labels * math.prod(stage_sizes[0])  # the segmentation output (no deep supervision)
    return int(total)


def plan_patch_size(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    num_labels: int,
    gpu_memory_gb: float = NNUNET_REFERENCE_GB,
    max_patch_voxels: int | None = None,
    min_feature_map_size: int = 4,
) -> NetworkTopology:
    """The largest patch (and its topology) that fits the memory target, as nnU-Net's planner.

    Start from a 256^3-voxel box shaped like ``1 / spacing``, clipped to the median shape; while the
    patch is too large, shrink the axis that is largest relative to the median shape by one step of
    its divisibility (recomputed as nnU-Net does, so no valid size is skipped).

    Args:
        spacing: target spacing (nnU-Net plans with the coarsest axis first: see
            :func:`medsegzoo.planning.fingerprint.plan_patch_and_spacing`).
        median_shape: median shape of the training cases resampled to ``spacing``.
        num_labels: classes including background (part of nnU-Net's estimate).
        gpu_memory_gb: GPU memory target; the reference 560e6 corresponds to 8 GB.
        max_patch_voxels: a plain voxel budget instead of nnU-Net's estimate (``None``: nnU-Net's).
        min_feature_map_size: smallest bottleneck edge.
    """
    inverse = 1.0 / np.asarray(spacing, dtype=float)
    scaled = inverse * (256**3 / float(np.prod(inverse))) ** (1 / 3)
    # Python's round (halves to even) and a clip to the (possibly fractional) median, as nnU-Net
    initial = [min(round(float(v)), float(m)) for v, m in zip(scaled, median_shape)]
    topology = plan_network_topology(spacing, initial, min_feature_map_size)
    reference = NNUNET_REFERENCE_FEATURE_MAP_SIZE * gpu_memory_gb / NNUNET_REFERENCE_GB

    def too_large(t: NetworkTopology) -> bool:
        if max_patch_voxels is not None:
            return math.prod(t.patch_size) > max_patch_voxels
        return plain_unet_feature_map_size(t.patch_size, t.pool_kernel_sizes, num_labels) > reference

    while too_large(topology):
        patch = np.asarray(topology.patch_size)
        if (patch <= 1).all():
            break
        axis = int(np.argsort(patch / np.asarray(median_shape, dtype=float))[-1])
        # one divisibility step down, with the divisibility of the smaller patch (nnU-Net's rule)
        smaller = patch.copy()
        smaller[axis] -= topology.divisible_by[axis]
        step = plan_network_topology(spacing, smaller.tolist(), min_feature_map_size).divisible_by[axis]
        patch[axis] = max(patch[axis] - step, 1)
        topology = plan_network_topology(spacing, patch.tolist(), min_feature_map_size)
    return topology


def fit_pool_kernel_sizes(pool_kernel_sizes: Sequence[Sequence[int]], num_pools: int = 5) -> list[list[int]]:
    """A plan's strides for a network with ``num_pools`` downsamplings (STU-Net: 5).

    The official STU-Net trainers keep the plan's first five strides and pad a shorter plan with
    ``[1, 1, 1]`` (stages without downsampling).
    """
    pools = [[int(v) for v in p] for p in pool_kernel_sizes][:num_pools]
    dim = len(pools[0]) if pools else 3
    return pools + [[1] * dim for _ in range(num_pools - len(pools))]


def fit_conv_kernel_sizes(conv_kernel_sizes: Sequence[Sequence[int]], num_stages: int = 6) -> list[list[int]]:
    """A plan's per-stage kernels for a network with ``num_stages`` stages (padded with 3x3x3)."""
    kernels = [[int(v) for v in k] for k in conv_kernel_sizes][:num_stages]
    dim = len(kernels[0]) if kernels else 3
    return kernels + [[3] * dim for _ in range(num_stages - len(kernels))]
