"""CLIP-Driven Universal Model: a backbone, text-conditioned controllers and dynamic 8-8-1 heads.

Architecture facts (paper 002, section 3.2; REFERENCE.md section 2):

* the backbone returns a bottleneck feature (Swin UNETR: 768 channels; U-Net: 512) and a
  full-resolution decoder feature (48; 64);
* global image feature ``f`` = GroupNorm -> ReLU -> global average pool -> 1x1x1 conv to 256;
* text branch: the cached class embedding (any width; 512 for CLIP ViT-B/32) -> Linear to 256
  -> ReLU;
* text-based controller: a 1x1x1 conv from ``[f || text]`` (512) to 153 numbers per class
  and image: the weights and biases of three 1x1x1 convs 8 -> 8 -> 1 with ReLU between
  (64 + 64 + 8 weights, 8 + 8 + 1 biases);
* text-driven segmentor: decoder feature -> GroupNorm -> ReLU -> 1x1x1 conv to 8 channels,
  then the dynamic head of every class, run for all classes (and all images of the batch) as
  ONE grouped convolution per layer (group = one (image, class) pair);
* output: one logit per class (sigmoid, one-vs-all), ``(B, K, *spatial)``.

Extension to new classes (paper section 5.4): :meth:`UniversalModel.add_classes` appends a
new :class:`ClassGroup` (its own text embeddings, text projection and controller) and
freezes everything else. Each group runs its own grouped convolution, so the outputs of the
old classes are computed by exactly the same operations as before (bit-identical).

Parameter counts (1 input channel, 32 classes, with the head; test_networks_universal.py):

* Swin UNETR backbone (MONAI ``SwinUNETR``, feature size 48, its output conv removed):
  62.19 M with the head; paper 62.2 M.
* U-Net backbone (:class:`UNet3DBackbone`): 19.08 M; paper 19.1 M. The shape of the official
  U-Net (bottleneck 512, decoder feature 64, full resolution): four resolution levels of two
  3x3x3 convs each, channels 32-64 / 64-128 / 128-256 / 256-512 (the second conv of a level
  doubles the channels), three transposed-conv up-steps that keep the channel count, skip
  concatenation, decoder levels 256-256 / 128-128 / 64-64.

Two switches reproduce the released networks (both defaults are the official code's):

* ``swin_patch_merging``: ``"v0.9"`` gathers the voxels of each 2x2x2 block as MONAI 0.9's Swin
  UNETR did (the official release was trained with it: two voxels twice, two never, see
  :data:`V09_MERGING_ORDER`); ``"v1"`` is MONAI 1.x's merging (all eight once). Same parameters
  and names; different computation, so weights only fit the order they were trained with.
* ``unet_norm``: ``"batch"`` is the official U-Net's batch norm with a learned scale and shift,
  which always normalises with the statistics of the batch it is given and never reads running
  statistics (:class:`BatchStatisticsNorm3d`); ``"instance"`` is instance norm without affine
  parameters (our earlier U-Net). Neither keeps running statistics, so the frozen parts of an
  extended model stay bit-identical in train mode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import SwinUNETR
from monai.networks.nets.swin_unetr import PatchMerging
from torch import nn
from torch.nn import functional as F

from medsegzoo.errors import MedSegZooError
from medsegzoo.networks.text_encoders import load_text_embeddings
from medsegzoo.networks.weights import load_weights
from medsegzoo.taxonomy import canonical_name

__all__ = [
    "HEAD_CHANNELS",
    "HEAD_PARAMS",
    "SWIN_PATCH_MERGINGS",
    "UNET_NORMS",
    "V09_MERGING_ORDER",
    "BatchStatisticsNorm3d",
    "ClassGroup",
    "LegacyPatchMerging",
    "SwinUNETRBackbone",
    "UNet3DBackbone",
    "UniversalModel",
    "dynamic_head_forward",
    "dynamic_head_loop",
    "split_head_params",
]

HEAD_CHANNELS = 8
# 8x8 + 8x8 + 8x1 weights, 8 + 8 + 1 biases
HEAD_PARAMS = HEAD_CHANNELS * HEAD_CHANNELS * 2 + HEAD_CHANNELS + HEAD_CHANNELS * 2 + 1
GLOBAL_CHANNELS = 256
TEXT_CHANNELS = 256
# GroupNorm groups before the global pool and the head input (fewer when a small smoke-test
# width is not divisible by 16)
_GROUPS = 16


# (d, h, w) offsets, in concatenation order, of the voxels of each 2x2x2 block that the patch
# merging of MONAI 0.9's Swin UNETR (the official Universal Model's copy) gathers: (0, 1, 0)
# and (0, 0, 1) appear twice, (1, 1, 0) and (0, 1, 1) never. MONAI 1.x gathers all eight once.
V09_MERGING_ORDER: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1),
)
SWIN_PATCH_MERGINGS: tuple[str, ...] = ("v0.9", "v1")
UNET_NORMS: tuple[str, ...] = ("batch", "instance")


def _check_option(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise MedSegZooError(f"Universal Model {name} must be one of {list(choices)}, got {value!r}")
    return value


class LegacyPatchMerging(PatchMerging):
    """MONAI's patch merging with the parameters it has, gathering voxels in the v0.9 order.

    Weights trained with MONAI 0.9's Swin UNETR (the released CLIP-Driven Universal Model) only
    compute what they were trained to compute with this order (:data:`V09_MERGING_ORDER`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merge 2x2x2 blocks of ``(B, D, H, W, C)`` into ``(B, D/2, H/2, W/2, 2C)``.

        Raises:
            MedSegZooError: an odd spatial size (the bundles feed sizes divisible by 32; MONAI
                0.9 padded odd sizes along the wrong axes, which fails unless all three are odd).
        """
        if x.ndim != 5:
            return super().forward(x)
        if any(size % 2 for size in x.shape[1:4]):
            raise MedSegZooError(f"LegacyPatchMerging needs even sizes, got {tuple(x.shape[1:4])}")
        parts = [x[:, d::2, h::2, w::2, :] for d, h, w in V09_MERGING_ORDER]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class SwinUNETRBackbone(nn.Module):
    """MONAI Swin UNETR without its output conv, returning bottleneck and decoder features.

    Args:
        in_channels: image channels.
        feature_size: Swin UNETR feature size (48 in the paper; 12 or 24 for smoke tests).
        use_checkpoint: gradient checkpointing in the Swin blocks (saves GPU memory).
        patch_merging: ``"v0.9"`` (:class:`LegacyPatchMerging`, the official release's order) or
            ``"v1"`` (MONAI 1.x's ``PatchMerging``).

    Attributes:
        bottleneck_channels: ``16 * feature_size`` (768).
        decoder_channels: ``feature_size`` (48).

    Raises:
        MedSegZooError: an unknown ``patch_merging``.
    """

    def __init__(
        self, in_channels: int = 1, feature_size: int = 48, use_checkpoint: bool = False, patch_merging: str = "v0.9"
    ) -> None:
        super().__init__()
        _check_option("swin_patch_merging", patch_merging, SWIN_PATCH_MERGINGS)
        merging = LegacyPatchMerging if patch_merging == "v0.9" else "merging"  # "merging": MONAI 1.x
        # MONAI 1.6 SwinUNETR takes no img_size; inputs must be divisible by 32
        self.swin = SwinUNETR(
            in_channels=in_channels,
            out_channels=1,
            feature_size=feature_size,
            use_checkpoint=use_checkpoint,
            downsample=merging,
        )
        self.swin.out = nn.Identity()  # the per-class output comes from the dynamic heads
        self.bottleneck_channels = 16 * feature_size
        self.decoder_channels = feature_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(bottleneck (B, 16F, s/32...), decoder feature (B, F, s...))``."""
        s = self.swin
        hidden = s.swinViT(x, s.normalize)
        enc0 = s.encoder1(x)
        enc1 = s.encoder2(hidden[0])
        enc2 = s.encoder3(hidden[1])
        enc3 = s.encoder4(hidden[2])
        bottleneck = s.encoder10(hidden[4])
        dec3 = s.decoder5(bottleneck, hidden[3])
        dec2 = s.decoder4(dec3, enc3)
        dec1 = s.decoder3(dec2, enc2)
        dec0 = s.decoder2(dec1, enc1)
        return bottleneck, s.decoder1(dec0, enc0)


class BatchStatisticsNorm3d(nn.BatchNorm3d):
    """Batch norm with a learned scale and shift that never uses running statistics.

    The official U-Net's batch norm (``ContBatchNorm3d`` in its ``Unet.py``) always normalises
    with the statistics of the batch it is given, in training and at inference, and keeps
    running statistics that nothing reads. In training this module does the same (PyTorch's
    batch norm without tracked statistics). In evaluation it normalises each sample on its own:
    what the official inference computes, since its sliding window runs one window per batch,
    and independent of how many windows our inferer batches together.

    Args:
        num_features: channels.
        eps: added to the variance (PyTorch's default, as the official layer).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, affine=True, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, C, D, H, W)``: over the batch in training, per sample in evaluation."""
        if self.training:
            return super().forward(x)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, use_input_stats=True, eps=self.eps)


def _conv_norm_relu(in_ch: int, out_ch: int, norm: str) -> Convolution:
    """3x3x3 conv -> norm -> ReLU; the norm sits in MONAI's ``adn.N`` slot whichever it is."""
    if norm == "instance":
        return Convolution(3, in_ch, out_ch, kernel_size=3, norm=("instance", {"affine": False}), act="relu")
    block = Convolution(3, in_ch, out_ch, kernel_size=3, norm="batch", act="relu")
    block.adn.N = BatchStatisticsNorm3d(out_ch)  # same place, same parameter names as MONAI's batch norm
    return block


def _level(in_ch: int, out_ch: int, second_ch: int, norm: str) -> nn.Sequential:
    """Two 3x3x3 convs, each with its norm and a ReLU."""
    return nn.Sequential(_conv_norm_relu(in_ch, out_ch, norm), _conv_norm_relu(out_ch, second_ch, norm))


class UNet3DBackbone(nn.Module):
    """3D U-Net returning a bottleneck feature and a full-resolution decoder feature.

    Args:
        in_channels: image channels.
        base_channels: channels of the first conv (32 gives 19.08 M parameters with the head;
            8 for smoke tests). Level ``i`` has ``base * 2**i`` and ``base * 2**(i+1)`` channels.
        levels: number of resolution levels (4: bottleneck at 1/8 resolution).
        norm: ``"batch"`` (:class:`BatchStatisticsNorm3d`, the official U-Net's batch norm with
            learned scale and shift) or ``"instance"`` (instance norm without affine parameters).

    Attributes:
        bottleneck_channels: ``base * 2**levels`` (512).
        decoder_channels: ``2 * base`` (64).

    Raises:
        MedSegZooError: fewer than 2 levels, or an unknown ``norm``.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 32, levels: int = 4, norm: str = "batch") -> None:
        super().__init__()
        if levels < 2:
            raise MedSegZooError(f"UNet3DBackbone needs at least 2 levels, got {levels}")
        _check_option("unet_norm", norm, UNET_NORMS)
        widths = [base_channels * 2**i for i in range(levels + 1)]  # 32, 64, ..., 512
        self.down = nn.ModuleList()
        previous = in_channels
        for i in range(levels):
            self.down.append(_level(previous, widths[i], widths[i + 1], norm))
            previous = widths[i + 1]
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(levels - 1, 0, -1):  # skips of 256, 128, 64 channels
            self.up.append(nn.ConvTranspose3d(widths[i + 1], widths[i + 1], kernel_size=2, stride=2))
            self.dec.append(_level(widths[i + 1] + widths[i], widths[i], widths[i], norm))
        self.bottleneck_channels = widths[levels]
        self.decoder_channels = widths[1]
        self.levels = levels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(bottleneck (B, 512, s/8...), decoder feature (B, 64, s...))``."""
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool3d(x, 2)
            x = block(x)
            skips.append(x)
        bottleneck = x
        # indexed from the end rather than ``reversed(...)``, which TorchScript cannot compile
        for i, (up, dec) in enumerate(zip(self.up, self.dec)):
            x = dec(torch.cat([up(x), skips[len(skips) - 2 - i]], dim=1))
        return bottleneck, x


def split_head_params(params: torch.Tensor, channels: int = HEAD_CHANNELS) -> list[torch.Tensor]:
    """Split controller output ``(..., 153)`` into w1, w2, w3, b1, b2, b3.

    Layout (our convention): weights first (``8x8``, ``8x8``, ``1x8``, each ``out x in``),
    then biases (8, 8, 1).

    Args:
        params: ``(..., HEAD_PARAMS)``.
        channels: head width (8).

    Returns:
        ``[w1 (..., 8, 8), w2 (..., 8, 8), w3 (..., 1, 8), b1 (..., 8), b2 (..., 8), b3 (..., 1)]``.
    """
    c = channels
    sizes = [c * c, c * c, c, c, c, 1]
    parts = torch.split(params, sizes, dim=-1)
    lead = params.shape[:-1]
    return [
        parts[0].reshape(*lead, c, c),
        parts[1].reshape(*lead, c, c),
        parts[2].reshape(*lead, 1, c),
        parts[3],
        parts[4],
        parts[5],
    ]


def dynamic_head_forward(feature: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Run every (image, class) head as batched matrix products.

    Each head is three 1x1x1 convs (8 -> 8 -> 8 -> 1), i.e. three small matrices applied to the
    8-channel feature of every voxel. The first layer of all K heads of one image is a single
    ``(K*8, 8) @ (8, voxels)`` product; the other two are ``B*K`` batched ``8 x 8`` and ``1 x 8``
    products. This equals the official grouped ``conv3d`` (one group per image and class) but
    is ~3x faster on a CPU in float32 and ~11x in bf16 autocast, where grouped 3D convolutions
    with 8-channel groups have no fast kernel (measured: ``benchmarks/bench_training.py``).

    Args:
        feature: head input ``(B, 8, *spatial)``.
        params: controller output ``(B, K, 153)``.

    Returns:
        Logits ``(B, K, *spatial)``.
    """
    batch, classes = params.shape[:2]
    spatial = feature.shape[2:]
    c = HEAD_CHANNELS
    w1, w2, w3, b1, b2, b3 = split_head_params(params)
    x = feature.reshape(batch, c, -1)
    # under autocast baddbmm runs in the autocast dtype; its inputs may arrive in float32
    x = torch.baddbmm(b1.reshape(batch, classes * c, 1), w1.reshape(batch, classes * c, c), x).relu()
    x = x.reshape(batch * classes, c, -1)
    x = torch.baddbmm(b2.reshape(batch * classes, c, 1), w2.reshape(batch * classes, c, c), x).relu()
    x = torch.baddbmm(b3.reshape(batch * classes, 1, 1), w3.reshape(batch * classes, 1, c), x)
    return x.reshape(batch, classes, *spatial)


def dynamic_head_grouped_conv(feature: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Reference: the heads as one grouped 1x1x1 ``conv3d`` per layer (the official formulation)."""
    batch, classes = params.shape[:2]
    spatial = feature.shape[2:]
    ones = (1,) * len(spatial)
    w1, w2, w3, b1, b2, b3 = split_head_params(params)
    groups = batch * classes
    # (1, B*K*8, ...): each group sees its own image's 8-channel feature
    x = feature.unsqueeze(1).expand(batch, classes, *feature.shape[1:]).reshape(1, groups * HEAD_CHANNELS, *spatial)
    x = F.relu(F.conv3d(x, w1.reshape(groups * HEAD_CHANNELS, HEAD_CHANNELS, *ones), b1.reshape(-1), groups=groups))
    x = F.relu(F.conv3d(x, w2.reshape(groups * HEAD_CHANNELS, HEAD_CHANNELS, *ones), b2.reshape(-1), groups=groups))
    x = F.conv3d(x, w3.reshape(groups, HEAD_CHANNELS, *ones), b3.reshape(-1), groups=groups)
    return x.reshape(batch, classes, *spatial)


def dynamic_head_loop(feature: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Reference: the same heads, one (image, class) at a time with plain einsum (tests)."""
    batch, classes = params.shape[:2]
    w1, w2, w3, b1, b2, b3 = split_head_params(params)
    out = []
    for b in range(batch):
        row = []
        for k in range(classes):
            x = feature[b]
            x = F.relu(torch.einsum("oi,i...->o...", w1[b, k], x) + b1[b, k].view(-1, *(1,) * (x.ndim - 1)))
            x = F.relu(torch.einsum("oi,i...->o...", w2[b, k], x) + b2[b, k].view(-1, *(1,) * (x.ndim - 1)))
            x = torch.einsum("oi,i...->o...", w3[b, k], x) + b3[b, k].view(-1, *(1,) * (x.ndim - 1))
            row.append(x[0])
        out.append(torch.stack(row))
    return torch.stack(out)


class ClassGroup(nn.Module):
    """Classes sharing one text projection and one controller (the original set, or an extension).

    Args:
        embeddings: fixed class embeddings ``(K, width)`` (a buffer: saved with the checkpoint).
        class_names: names of the K classes (checked against the embedding file by the caller).
    """

    def __init__(self, embeddings: torch.Tensor, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise MedSegZooError(f"class embeddings must be a non-empty (classes, width) tensor, got {tuple(embeddings.shape)}")
        if class_names is not None and len(class_names) != embeddings.shape[0]:
            raise MedSegZooError(
                f"{len(class_names)} class names but {embeddings.shape[0]} embeddings"
            )
        self.register_buffer("embeddings", embeddings.clone())
        self.class_names = tuple(class_names) if class_names is not None else None
        self.text_projection = nn.Sequential(nn.Linear(embeddings.shape[1], TEXT_CHANNELS), nn.ReLU())
        self.controller = nn.Conv3d(GLOBAL_CHANNELS + TEXT_CHANNELS, HEAD_PARAMS, kernel_size=1)

    @property
    def num_classes(self) -> int:
        """Number of classes of the group."""
        return int(self.embeddings.shape[0])

    def forward(
        self, global_feature: torch.Tensor, head_input: torch.Tensor, classes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of this group's classes.

        Args:
            global_feature: ``(B, 256)``.
            head_input: ``(B, 8, *spatial)``.
            classes: indices (within the group) of the classes to run; None runs all.

        Returns:
            ``(B, K, *spatial)`` (K = ``len(classes)`` when given).
        """
        batch = global_feature.shape[0]
        embeddings = self.embeddings if classes is None else self.embeddings[classes]
        text = self.text_projection(embeddings)  # (K, 256)
        num_classes = text.shape[0]
        pairs = torch.cat(
            [
                global_feature[:, None, :].expand(batch, num_classes, GLOBAL_CHANNELS),
                text[None].expand(batch, num_classes, TEXT_CHANNELS),
            ],
            dim=2,
        )  # (B, K, 512)
        # the controller is a 1x1x1 conv over a (B*K, 512, 1, 1, 1) "image"
        params = self.controller(pairs.reshape(-1, GLOBAL_CHANNELS + TEXT_CHANNELS, 1, 1, 1))
        return dynamic_head_forward(head_input, params.reshape(batch, num_classes, HEAD_PARAMS))


class UniversalModel(nn.Module):
    """CLIP-Driven Universal Model.

    Args:
        class_embeddings: ``(K, width)`` text embeddings of the classes, in output order
            (from :func:`medsegzoo.networks.text_encoders.load_text_embeddings`).
        backbone: ``"swinunetr"`` or ``"unet"``.
        in_channels: image channels.
        feature_size: Swin UNETR feature size (48).
        unet_base_channels: U-Net first-level channels (32).
        class_names: optional names of the K classes (kept for extension and checks).
        use_checkpoint: gradient checkpointing in Swin UNETR.
        predict_classes: the classes ``forward(x)`` returns (see :meth:`set_predict_classes`).
        swin_patch_merging: ``"v0.9"`` (official release) or ``"v1"`` (MONAI 1.x); Swin UNETR only.
        unet_norm: ``"batch"`` (official U-Net) or ``"instance"`` (our earlier U-Net); U-Net only.

    Forward returns a plain logits tensor ``(B, K_total, *spatial)`` (``pred`` of the bundle).
    """

    def __init__(
        self,
        class_embeddings: torch.Tensor,
        backbone: str = "swinunetr",
        in_channels: int = 1,
        feature_size: int = 48,
        unet_base_channels: int = 32,
        class_names: Sequence[str] | None = None,
        use_checkpoint: bool = False,
        predict_classes: Sequence[str] | None = None,
        swin_patch_merging: str = "v0.9",
        unet_norm: str = "batch",
    ) -> None:
        super().__init__()
        # both switches are checked whichever backbone is built, so a typo never passes silently
        _check_option("swin_patch_merging", swin_patch_merging, SWIN_PATCH_MERGINGS)
        _check_option("unet_norm", unet_norm, UNET_NORMS)
        kind = backbone.lower().replace("_", "").replace("-", "")
        if kind == "swinunetr":
            self.backbone: nn.Module = SwinUNETRBackbone(in_channels, feature_size, use_checkpoint, swin_patch_merging)
        elif kind == "unet":
            self.backbone = UNet3DBackbone(in_channels, unet_base_channels, norm=unet_norm)
        else:
            raise MedSegZooError(f"unknown Universal Model backbone {backbone!r}; use 'swinunetr' or 'unet'")
        bottleneck = self.backbone.bottleneck_channels
        decoder = self.backbone.decoder_channels
        self.global_feature = nn.Sequential(
            nn.GroupNorm(math.gcd(_GROUPS, bottleneck), bottleneck),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(bottleneck, GLOBAL_CHANNELS, kernel_size=1),
        )
        self.head_input = nn.Sequential(
            nn.GroupNorm(math.gcd(_GROUPS, decoder), decoder), nn.ReLU(), nn.Conv3d(decoder, HEAD_CHANNELS, kernel_size=1)
        )
        self.groups = nn.ModuleList([ClassGroup(class_embeddings, class_names)])
        self.predict_indices: list[int] | None = None
        if predict_classes is not None:
            self.set_predict_classes(predict_classes)

    def set_predict_classes(self, names: Sequence[str] | None) -> None:
        """Restrict what ``forward(x)`` returns to these classes, in the model's order (None: all).

        A model trained on data sets that never label some of its classes has untrained heads
        for them; inference then predicts only the classes it learned. Weights are unaffected.

        Raises:
            MedSegZooError: the model has no class names, or a name it does not predict.
        """
        if names is None:
            self.predict_indices = None
            return
        known = self.class_names
        if known is None:
            raise MedSegZooError("predict_classes needs a model built with class_names")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise MedSegZooError(f"predict_classes {unknown} are not classes of the model ({', '.join(known)})")
        self.predict_indices = sorted(known.index(n) for n in dict.fromkeys(names))

    @property
    def num_classes(self) -> int:
        """Total number of output classes over all groups."""
        return sum(g.num_classes for g in self.groups)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Names of all output channels, when every group has names."""
        names: list[str] = []
        for g in self.groups:
            if g.class_names is None:
                return None
            names.extend(g.class_names)
        return tuple(names)

    def forward(self, x: torch.Tensor, classes: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Logits for an image ``(B, C, *spatial)``.

        Args:
            x: the image batch.
            classes: output channels to compute, in increasing order (None: all ``K_total``).
                Every class has its own head, so a class left out costs nothing and changes no
                other output; training uses this to run only the heads the batch's data sets
                label (the masked loss ignores the others anyway).

        Returns:
            ``(B, K_total, *spatial)``, or ``(B, len(classes), *spatial)``.
        """
        if classes is None:
            classes = self.predict_indices
        bottleneck, decoded = self.backbone(x)
        global_feature = self.global_feature(bottleneck).flatten(1)  # (B, 256)
        head_input = self.head_input(decoded)
        if classes is None:
            return torch.cat([g(global_feature, head_input) for g in self.groups], dim=1)
        wanted = torch.as_tensor(classes, dtype=torch.long).flatten().cpu()
        if wanted.numel() and (bool((wanted[1:] <= wanted[:-1]).any()) or int(wanted[0]) < 0
                               or int(wanted[-1]) >= self.num_classes):
            raise MedSegZooError(
                f"UniversalModel: classes must be increasing indices in [0, {self.num_classes}), got {wanted.tolist()}"
            )
        outputs, start = [], 0
        for group in self.groups:
            inside = wanted[(wanted >= start) & (wanted < start + group.num_classes)] - start
            if inside.numel():
                outputs.append(group(global_feature, head_input, inside.to(head_input.device)))
            start += group.num_classes
        if not outputs:
            return head_input.new_zeros((x.shape[0], 0, *head_input.shape[2:]))
        return torch.cat(outputs, dim=1)

    def add_classes(
        self, class_embeddings: torch.Tensor, class_names: Sequence[str] | None = None, freeze: bool = True
    ) -> ClassGroup:
        """Extend the model to new classes (paper section 5.4).

        A new group with its own text projection and controller handles the new classes;
        with ``freeze`` every existing parameter stops receiving gradients, so the old
        classes' outputs cannot change.

        Args:
            class_embeddings: ``(K_new, width)`` embeddings of the new classes (any width).
            class_names: names of the new classes.
            freeze: freeze everything that existed before.

        Returns:
            The new group (its parameters are the ones to train).

        Raises:
            MedSegZooError: a new class that the model already predicts.
        """
        existing = self.class_names
        if existing is not None and class_names is not None:
            again = sorted(set(existing) & set(class_names))
            if again:
                raise MedSegZooError(f"add_classes: the model already predicts {again}")
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)
        group = ClassGroup(class_embeddings, class_names).to(next(self.parameters()).device)
        self.groups.append(group)
        return group


def extend_universal_model(
    network: UniversalModel,
    new_classes: Sequence[str],
    embedding_file: str | os.PathLike,
    base_checkpoint: str | os.PathLike | None = None,
    width: int | None = None,
    predict_classes: Sequence[str] | None = None,
) -> UniversalModel:
    """Load a trained Universal Model and extend it to new classes, freezing the rest.

    Training (``configs/extend.json``) loads the base weights here; inference of an extended
    model (``configs/inference_extended.json``) builds the same structure without them and then
    loads the extended checkpoint, which holds every group.

    Args:
        network: the base model (same config as it was trained with).
        new_classes: the classes to add (canonical or synonym names).
        embedding_file: text embedding cache of exactly the new classes.
        base_checkpoint: weights of the base model (None: keep ``network`` as it is).
        width: expected embedding width (None: any).
        predict_classes: what ``forward`` returns afterwards, old and new classes alike (None:
            everything; see :meth:`UniversalModel.set_predict_classes`).

    Returns:
        The same object, with one more class group whose parameters alone require grad.

    Raises:
        DataValidationError: the embedding file's classes/width differ from ``new_classes``.
        MedSegZooError: a new class the model already predicts.
    """
    if base_checkpoint is not None:
        load_weights(network, base_checkpoint, hint="train the base model first (models/model.pt)")
    names = [canonical_name(c) for c in new_classes]
    emb = load_text_embeddings(embedding_file, classes=names, width=width)
    network.add_classes(emb.embeddings, names, freeze=True)
    if predict_classes is not None:
        network.set_predict_classes([canonical_name(c) for c in predict_classes])
    return network
