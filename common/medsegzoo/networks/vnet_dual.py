"""TCSeg's dual-decoder V-Net: one shared encoder, two decoders that differ in upsampling.

Architecture facts (TCSeg paper section 4.1 and 4.9; REFERENCE.md section 4): the V-Net
family used by the semi-supervised 3D literature (UA-MT, MC-Net, DTC), 16 base filters, a
five-stage encoder (16, 32, 64, 128, 256 channels; 1, 2, 3, 3, 3 convolutions per stage,
2x2x2 strided convolutions down), additive skip connections, and two decoders:

* decoder 0 upsamples with 2x2x2 transposed convolutions (the deployed path),
* decoder 1 upsamples with trilinear interpolation followed by a 3x3x3 convolution.

Each decoder ends in a 16-channel full-resolution feature map (exposed for the prototype
space of TCSeg) and a 1x1x1 classifier. The paper reports 12.34 M parameters (MRPL, built on
the same family, 12.35 M); this module has 12,347,716 with 1 input channel and 2 classes
(:func:`dual_vnet_parameter_count`).

MONAI's :class:`monai.networks.nets.VNet` is a different network (Milletari's 5x5x5 V-Net with
PReLU, about 45 M parameters), so the blocks here are our own, built from MONAI's
:class:`~monai.networks.blocks.Convolution`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.upsample import TrilinearUpsample2x

__all__ = ["DUAL_VNET_FEATURES", "DualDecoderOutput", "DualDecoderVNet", "dual_vnet_parameter_count"]

# channels of the five encoder stages and the number of 3x3x3 convolutions in each
DUAL_VNET_FEATURES: tuple[int, ...] = (16, 32, 64, 128, 256)
_ENCODER_DEPTHS: tuple[int, ...] = (1, 2, 3, 3, 3)
# decoder stages after each upsampling (128, 64, 32, 16 channels)
_DECODER_DEPTHS: tuple[int, ...] = (3, 3, 2, 1)

UPSAMPLING_MODES: tuple[str, ...] = ("transposed", "interpolation")


class DualDecoderOutput(NamedTuple):
    """Everything the TCSeg objective needs from one forward pass.

    Attributes:
        logits: per-decoder logits, each ``(B, C, *spatial)``.
        features: per-decoder last feature maps, each ``(B, base_filters, *spatial)``.
    """

    logits: tuple[torch.Tensor, torch.Tensor]
    features: tuple[torch.Tensor, torch.Tensor]


def _conv_stage(channels_in: int, channels_out: int, depth: int, norm: str) -> nn.Sequential:
    """``depth`` 3x3x3 convolutions with normalisation and ReLU."""
    layers = [
        Convolution(3, channels_in if i == 0 else channels_out, channels_out, kernel_size=3, norm=norm, act="RELU")
        for i in range(depth)
    ]
    return nn.Sequential(*layers)


def _upsample(channels_in: int, channels_out: int, mode: str, norm: str) -> nn.Module:
    """Double the resolution: transposed convolution, or interpolation followed by a convolution."""
    if mode == "transposed":
        return Convolution(
            3, channels_in, channels_out, strides=2, kernel_size=2, norm=norm, act="RELU", is_transposed=True, padding=0, output_padding=0
        )
    return nn.Sequential(
        TrilinearUpsample2x(),  # nn.Upsample, fast in bf16 on the CPU
        Convolution(3, channels_in, channels_out, kernel_size=3, norm=norm, act="RELU"),
    )


class _Decoder(nn.Module):
    """One V-Net decoder: four upsamplings with additive skips, then a 1x1x1 classifier."""

    def __init__(self, features: tuple[int, ...], out_channels: int, mode: str, norm: str, dropout: float) -> None:
        super().__init__()
        f = features
        self.ups = nn.ModuleList([_upsample(f[i + 1], f[i], mode, norm) for i in reversed(range(4))])
        self.stages = nn.ModuleList([_conv_stage(f[3 - i], f[3 - i], d, norm) for i, d in enumerate(_DECODER_DEPTHS)])
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv3d(f[0], out_channels, kernel_size=1)

    def forward(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = skips[-1]
        # skips[-2], skips[-3], ...: indexed, not reversed(), so that torch.jit.script compiles it
        for i, (up, stage) in enumerate(zip(self.ups, self.stages)):
            x = stage(up(x) + skips[-2 - i])
        return self.classifier(self.dropout(x)), x


class DualDecoderVNet(nn.Module):
    """V-Net with a shared encoder and two decoders (TCSeg).

    ``forward(x)`` returns decoder 0's logits as a plain tensor: the deployed path, which
    sliding-window inference, :class:`~monai.engines.SupervisedEvaluator` and
    ``verify_net_in_out`` use; decoder 1 is not even computed. ``forward(x, return_all=True)``
    returns a :class:`DualDecoderOutput` with both decoders' logits and features (training,
    the EMA teacher). The keyword goes through ``DistributedDataParallel`` unchanged, so
    multi-GPU training keeps gradient synchronisation. One class for both uses keeps a single
    checkpoint layout: the inference config loads the training checkpoint as it is.

    Args:
        in_channels: image channels (1 for LA MR, Pancreas CT, BraTS FLAIR).
        out_channels: classes including background (2 for the three TCSeg data sets).
        norm: MONAI norm name for every convolution ("BATCH" as in the V-Net family).
        dropout: channel dropout before each classifier in training (0.5 in MC-Net's V-Net);
            the bottleneck dropout of that code is applied too.
        upsampling: the two decoders' upsampling modes, decoder 0 first.
        base_filters: channels of the first stage (16 in the paper; the others double). Smaller
            values make CPU smoke tests fast; checkpoints only load into the same value.

    Raises:
        MedSegZooError: an unknown upsampling mode or invalid channel counts.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        norm: str = "BATCH",
        dropout: float = 0.5,
        upsampling: tuple[str, str] = ("transposed", "interpolation"),
        base_filters: int = 16,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 2 or base_filters < 1:
            raise MedSegZooError(
                f"DualDecoderVNet: in_channels and base_filters must be >= 1 and out_channels >= 2 (background + "
                f"classes), got {in_channels}, {base_filters} and {out_channels}"
            )
        bad = [m for m in upsampling if m not in UPSAMPLING_MODES]
        if bad or len(upsampling) != 2:
            raise MedSegZooError(f"DualDecoderVNet: upsampling must be two of {UPSAMPLING_MODES}, got {tuple(upsampling)}")
        f = tuple(base_filters * c // DUAL_VNET_FEATURES[0] for c in DUAL_VNET_FEATURES)
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, f
        self.stages = nn.ModuleList(
            [_conv_stage(in_channels if i == 0 else f[i], f[i], d, norm) for i, d in enumerate(_ENCODER_DEPTHS)]
        )
        self.downs = nn.ModuleList(
            [Convolution(3, f[i], f[i + 1], strides=2, kernel_size=2, norm=norm, act="RELU", padding=0) for i in range(4)]
        )
        self.bottleneck_dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.decoders = nn.ModuleList([_Decoder(f, out_channels, m, norm, dropout) for m in upsampling])

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Skip features of the five encoder stages (the last is the bottleneck).

        Raises:
            MedSegZooError: a spatial size not divisible by 16 (four 2x downsamplings).
        """
        if x.ndim != 5 or any(s % 16 for s in x.shape[2:]):
            raise MedSegZooError(
                f"DualDecoderVNet: input must be (B, C, H, W, D) with every spatial size divisible by 16, got {list(x.shape)}"
            )
        # the five stages written out (TorchScript indexes a ModuleList only with literal integers)
        x = self.stages[0](x)
        skips = [x]
        x = self.stages[1](self.downs[0](x))
        skips.append(x)
        x = self.stages[2](self.downs[1](x))
        skips.append(x)
        x = self.stages[3](self.downs[2](x))
        skips.append(x)
        x = self.stages[4](self.downs[3](x))
        skips.append(self.bottleneck_dropout(x))
        return skips

    def forward(self, x: torch.Tensor, return_all: bool = False) -> torch.Tensor | DualDecoderOutput:
        """Decoder 0 logits, or both decoders' logits and features with ``return_all``."""
        skips = self.encode(x)
        if not return_all:
            return self.decoders[0](skips)[0]
        logits0, features0 = self.decoders[0](skips)
        logits1, features1 = self.decoders[1](skips)
        return DualDecoderOutput(logits=(logits0, logits1), features=(features0, features1))


def dual_vnet_parameter_count(in_channels: int = 1, out_channels: int = 2, **kwargs: object) -> int:
    """Trainable parameters of :class:`DualDecoderVNet` (12,347,716 for 1 channel, 2 classes)."""
    net = DualDecoderVNet(in_channels, out_channels, **kwargs)  # type: ignore[arg-type]
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
