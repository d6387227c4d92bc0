"""TCT's 3D U-Net with a main segmentation head and auxiliary task heads.

Architecture facts (TCT paper, Table 6 and appendix B; REFERENCE.md section 1): five stages of
two 3x3x3 convolutions (the bottleneck 128-128, 128-256), 2x2x2 max pooling down, trilinear
upsampling, skip concatenation (decoder inputs 384, 192, 96, 48 channels). The main
segmentation head (MSH) is one 3x3x3 convolution to ``num_classes + 1`` channels; each of the
``num_classes`` auxiliary task heads (ATHs) is one 3x3x3 convolution to 2 channels
(background, class j). The ATHs are used in training only.

Parameter count of the inference network (MSH only, 1 input channel, 5 classes), which the
paper reports as 4.12 M:

* convolution weights of Table 6 plus the MSH: 4,122,576
* plus convolution biases: 4,123,814 (= 4.12 M; this module's default, with non-affine
  instance normalisation, which has no parameters)
* an affine normalisation (batch norm, or instance norm with ``affine=True``) adds 2 per
  channel, 4,126,278 = 4.13 M, which does not match the paper; so the default norm is
  MONAI's ``INSTANCE`` (``affine=False``). ``norm="batch"`` is available and costs 2,464 more.

The implementation is our own, built from MONAI's :class:`~monai.networks.blocks.Convolution`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn import functional as F

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.upsample import trilinear_resize

__all__ = ["TCT_FEATURES", "TCTUNet", "tct_unet_parameter_count"]

# output channels of the five encoder stages (Table 6); the decoder mirrors the first four
TCT_FEATURES: tuple[int, ...] = (16, 32, 64, 128, 256)

MAIN_KEY = "main"
AUX_KEY = "aux"


def _double_conv(in_ch: int, mid_ch: int, out_ch: int, norm: str | tuple | None, act: str | tuple) -> nn.Sequential:
    """Two 3x3x3 convolutions, each followed by normalisation and activation."""
    return nn.Sequential(
        Convolution(3, in_ch, mid_ch, kernel_size=3, norm=norm, act=act),
        Convolution(3, mid_ch, out_ch, kernel_size=3, norm=norm, act=act),
    )


def _upsample_and_concat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``x`` interpolated to the skip's exact size (odd patch sizes also work), then ``[x, skip]``."""
    x = trilinear_resize(x, list(skip.shape[2:]))
    return torch.cat([x, skip], dim=1)


class TCTUNet(nn.Module):
    """3D U-Net of the TCT paper with a main head and optional auxiliary task heads.

    In training mode with auxiliary heads the forward pass returns a dict
    ``{"main": (B, N+1, ...) logits, "aux": (B, N, 2, ...) logits}`` (ATH j is ``aux[:, j]``).
    In eval mode, or without auxiliary heads, it returns the main logits only, so that sliding
    window inference, :class:`~monai.engines.SupervisedEvaluator` and ``verify_net_in_out``
    see a plain tensor (like torchvision's auxiliary-logit classifiers).

    Args:
        in_channels: image channels (1 for CT).
        num_classes: N, the foreground classes; the main head has N+1 outputs.
        aux_heads: build the N auxiliary task heads (training network). The inference network
            (``aux_heads=False``) has exactly the paper's 4.12 M parameters; it loads a training
            checkpoint with ``strict=False`` (only the ``aux_heads.*`` entries are extra).
        features: output channels of the five encoder stages.
        norm: MONAI norm name/tuple after every convolution ("INSTANCE" is non-affine).
        act: MONAI activation name/tuple.

    Raises:
        MedSegZooError: fewer than one class or a ``features`` tuple that is not 5 long.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        aux_heads: bool = True,
        features: Sequence[int] = TCT_FEATURES,
        norm: str | tuple | None = "INSTANCE",
        act: str | tuple = "RELU",
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        if num_classes < 1:
            raise MedSegZooError(f"TCTUNet: num_classes must be >= 1, got {num_classes}")
        if len(features) != 5:
            raise MedSegZooError(f"TCTUNet: features must list 5 stage widths, got {features}")
        self.num_classes = num_classes
        # Table 6: stage 1 is {1,16}{16,16}; later stages keep the width in their first conv
        mids = (features[0],) + features[:-1]
        ins = (in_channels,) + features[:-1]
        self.encoder = nn.ModuleList(
            _double_conv(i, m, o, norm, act) for i, m, o in zip(ins, mids, features)
        )
        # decoder stage k: upsampled deeper features (features[k+1] for the bottleneck input,
        # else features[k+1] of the decoder below) concatenated with the skip features[k]
        self.decoder = nn.ModuleList(
            _double_conv(features[k + 1] + features[k], features[k], features[k], norm, act)
            for k in range(4)
        )
        self.main_head = nn.Conv3d(features[0], num_classes + 1, kernel_size=3, padding=1)
        self.aux_heads = (
            nn.ModuleList(nn.Conv3d(features[0], 2, kernel_size=3, padding=1) for _ in range(num_classes))
            if aux_heads
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output (B, features[0], ...) at input resolution."""
        skips: list[torch.Tensor] = []
        for k, stage in enumerate(self.encoder):
            if k > 0:
                # ceil_mode: odd sizes keep their border voxels instead of shrinking to 0
                x = F.max_pool3d(x, kernel_size=2, stride=2, ceil_mode=True)
            x = stage(x)
            skips.append(x)
        x = skips[4]  # bottleneck output
        # deepest decoder stage first; written out (not a reversed loop) so that torch.jit.script
        # compiles it: TorchScript indexes a ModuleList only with literal integers
        x = self.decoder[3](_upsample_and_concat(x, skips[3]))
        x = self.decoder[2](_upsample_and_concat(x, skips[2]))
        x = self.decoder[1](_upsample_and_concat(x, skips[1]))
        x = self.decoder[0](_upsample_and_concat(x, skips[0]))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Main logits, or (training with auxiliary heads) a dict with main and aux logits."""
        feats = self.features(x)
        main = self.main_head(feats)
        if self.aux_heads is None or not self.training:
            return main
        aux = torch.stack([head(feats) for head in self.aux_heads], dim=1)
        return {MAIN_KEY: main, AUX_KEY: aux}


def tct_unet_parameter_count(num_classes: int = 5, aux_heads: bool = False, **kwargs) -> int:
    """Trainable parameters of a :class:`TCTUNet` (inference network by default).

    Args:
        num_classes: N foreground classes.
        aux_heads: count the auxiliary heads too (training network).
        **kwargs: other :class:`TCTUNet` arguments.

    Returns:
        The number of trainable parameters.
    """
    net = TCTUNet(num_classes=num_classes, aux_heads=aux_heads, **kwargs)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
