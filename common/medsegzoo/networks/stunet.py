"""STU-Net: scalable nnU-Net-style residual U-Net (sizes S, B, L, H).

Architecture facts (A-Eval / STU-Net papers, REFERENCE.md section 3): six resolution stages,
all convolutions 3x3x3, residual blocks of conv-InstanceNorm-LeakyReLU-conv-InstanceNorm plus a
shortcut; the first block of each stage changes the width (stride-2 conv for downsampling in
stages 2-6) and has a 1x1x1 projection shortcut; upsampling is nearest interpolation followed by a
1x1x1 conv, then concatenation with the skip; 1x1x1 segmentation heads at the five decoder levels
(deep supervision).

The module and parameter *names* follow the published STU-Net checkpoints
(``conv_blocks_context.{stage}.{block}.conv1.weight``, ``upsample_layers.{u}.conv.weight``,
``conv_blocks_localization.{u}.{block}...``, ``seg_outputs.{level}...``), so a checkpoint trained
with the original code loads with :func:`load_stunet_checkpoint`. The implementation is our own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medsegzoo.errors import UnknownNameError
from medsegzoo.networks.weights import StateDictMismatchError, load_weights

__all__ = [
    "STUNET_SIZES",
    "STUNet",
    "STUNetSize",
    "StateDictMismatchError",
    "load_stunet_checkpoint",
    "stunet_parameter_count",
]


@dataclass(frozen=True)
class STUNetSize:
    """Widths and depths of one STU-Net size preset.

    Attributes:
        channels: feature channels of the six stages.
        blocks: residual blocks per stage (the same in encoder and decoder).
        published_params_m: parameter count in millions at 1 input and 105 outputs, as reported.
    """

    channels: tuple[int, ...]
    blocks: int
    published_params_m: float


STUNET_SIZES: dict[str, STUNetSize] = {
    "S": STUNetSize((16, 32, 64, 128, 256, 256), 1, 14.60),
    "B": STUNetSize((32, 64, 128, 256, 512, 512), 1, 58.26),
    "L": STUNetSize((64, 128, 256, 512, 1024, 1024), 2, 440.30),
    "H": STUNetSize((96, 192, 384, 768, 1536, 1536), 3, 1457.33),
}


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected 3 values per axis, got {list(value)}")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


class ResidualBlock(nn.Module):
    """conv-IN-LeakyReLU-conv-IN + shortcut, then LeakyReLU.

    The shortcut is a 1x1x1 conv (with the block's stride) when ``project`` is set, else identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int] = (3, 3, 3),
        stride: Sequence[int] = (1, 1, 1),
        project: bool = False,
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.norm1 = nn.InstanceNorm3d(out_channels, affine=True)
        self.act1 = nn.LeakyReLU(inplace=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size, padding=padding)
        self.norm2 = nn.InstanceNorm3d(out_channels, affine=True)
        self.act2 = nn.LeakyReLU(inplace=True)
        # the attribute name conv3 is the published checkpoints' name of the projection shortcut
        self.conv3 = nn.Conv3d(in_channels, out_channels, 1, stride=stride) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        shortcut = self.conv3(x) if self.conv3 is not None else x
        return self.act2(y + shortcut)


class NearestUpsample(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` followed by a 1x1x1 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, scale: Sequence[int]) -> None:
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest"))


def _stage(in_channels: int, out_channels: int, blocks: int, kernel: Sequence[int],
           stride: Sequence[int]) -> nn.Sequential:
    """A stage: one projecting block (changes width, applies the stride), then plain blocks."""
    layers = [ResidualBlock(in_channels, out_channels, kernel, stride, project=True)]
    layers += [ResidualBlock(out_channels, out_channels, kernel) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class STUNet(nn.Module):
    """STU-Net with the published parameter names.

    Args:
        in_channels: image channels (1 for CT).
        out_channels: segmentation classes including background (105 for the TotalSegmentator
            checkpoints).
        size: preset "S", "B", "L" or "H" (ignored for the widths/depths given explicitly).
        channels: override of the six stage widths.
        blocks: override of the residual blocks per stage (int, or one per stage).
        pool_kernel_sizes: the five downsampling strides (default 2 on every axis; nnU-Net plans
            may use 1 on a coarse axis, e.g. ``[[2, 2, 1], ...]``).
        conv_kernel_sizes: the six stages' kernel sizes (default 3 everywhere).
        deep_supervision: in training mode, return the full-resolution logits followed by the
            four lower-resolution heads (coarser last), as nnU-Net does. In eval mode, or when
            False, return the full-resolution logits only.

    Raises:
        UnknownNameError: ``size`` is not one of the presets.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 105,
        size: str = "B",
        channels: Sequence[int] | None = None,
        blocks: int | Sequence[int] | None = None,
        pool_kernel_sizes: Sequence[Sequence[int] | int] | None = None,
        conv_kernel_sizes: Sequence[Sequence[int] | int] | None = None,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        key = size.upper()
        if key not in STUNET_SIZES:
            raise UnknownNameError(f"unknown STU-Net size {size!r}; known: {', '.join(STUNET_SIZES)}")
        preset = STUNET_SIZES[key]
        dims = tuple(channels) if channels is not None else preset.channels
        n_stages = len(dims)
        blocks = preset.blocks if blocks is None else blocks
        depth = [blocks] * n_stages if isinstance(blocks, int) else list(blocks)
        pools = [_triple(p) for p in (pool_kernel_sizes or [2] * (n_stages - 1))]
        kernels = [_triple(k) for k in (conv_kernel_sizes or [3] * n_stages)]
        if len(depth) != n_stages or len(pools) != n_stages - 1 or len(kernels) != n_stages:
            raise ValueError(
                f"STU-Net needs {n_stages} depths, {n_stages - 1} pool sizes and {n_stages} kernel "
                f"sizes for {n_stages} stages; got {len(depth)}, {len(pools)}, {len(kernels)}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.deep_supervision = deep_supervision
        self.pool_kernel_sizes = pools
        # the input must be divisible by the product of strides on each axis
        self.divisible_by = tuple(math.prod(p[a] for p in pools) for a in range(3))

        self.conv_blocks_context = nn.ModuleList(
            [_stage(in_channels, dims[0], depth[0], kernels[0], (1, 1, 1))]
            + [_stage(dims[d - 1], dims[d], depth[d], kernels[d], pools[d - 1]) for d in range(1, n_stages)]
        )
        # decoder level u goes from stage n-1-u to stage n-2-u
        levels = range(n_stages - 1)
        self.upsample_layers = nn.ModuleList(
            [NearestUpsample(dims[-1 - u], dims[-2 - u], pools[-1 - u]) for u in levels]
        )
        self.conv_blocks_localization = nn.ModuleList(
            [_stage(2 * dims[-2 - u], dims[-2 - u], depth[-2 - u], kernels[-2 - u], (1, 1, 1)) for u in levels]
        )
        self.seg_outputs = nn.ModuleList([nn.Conv3d(dims[-2 - u], out_channels, 1) for u in levels])
        self.apply(_init_he)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        # every stage but the last is a skip; enumerated, not sliced ([:-1]), so that
        # torch.jit.script compiles it
        skips: list[torch.Tensor] = []
        bottleneck = len(self.conv_blocks_context) - 1
        for d, stage in enumerate(self.conv_blocks_context):
            x = stage(x)
            if d < bottleneck:
                skips.append(x)
        outputs = []
        want_all = self.deep_supervision and self.training
        last = len(self.conv_blocks_localization) - 1
        for u, (up, block, head) in enumerate(
            zip(self.upsample_layers, self.conv_blocks_localization, self.seg_outputs)
        ):
            x = block(torch.cat((up(x), skips[-1 - u]), dim=1))
            if want_all or u == last:  # skip the low-resolution heads at inference
                outputs.append(head(x))
        if not want_all:
            return outputs[-1]
        return outputs[::-1]  # full resolution first, as nnU-Net's deep supervision loss expects


def _init_he(module: nn.Module) -> None:
    """nnU-Net's initialisation: He normal with LeakyReLU slope 1e-2, zero biases."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def stunet_parameter_count(size: str, in_channels: int = 1, out_channels: int = 105) -> int:
    """Count the parameters of a preset without allocating them (built on the meta device)."""
    with torch.device("meta"):
        net = STUNet(in_channels, out_channels, size=size)
    return sum(p.numel() for p in net.parameters())


def load_stunet_checkpoint(
    network: nn.Module,
    checkpoint: str | Mapping[str, torch.Tensor],
    *,
    only_matching_shapes: bool = False,
    map_location: str | torch.device = "cpu",
) -> dict[str, list[str]]:
    """Load a published STU-Net (nnU-Net v1 ``.model``) checkpoint, or a state dict, into ``network``.

    :func:`medsegzoo.networks.weights.load_weights` with the fine-tuning hint: nnU-Net keeps the
    weights under ``"state_dict"``, plain state dicts work too, a ``module.`` prefix is removed.

    Returns:
        ``{"loaded": [...], "skipped_shape": [...], "missing": [...], "unexpected": [...]}``.

    Raises:
        StateDictMismatchError: strict loading found mismatches (each key listed with both shapes).
    """
    return load_weights(
        network, checkpoint, only_matching_shapes=only_matching_shapes, map_location=map_location,
        hint="To fine-tune to another label set, load with only_matching_shapes=True.",
    )
