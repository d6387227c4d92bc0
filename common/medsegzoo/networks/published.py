"""The authors' published checkpoints, renamed to the package's networks.

Each method's authors publish weights in their own layout. This module knows those layouts as
facts (key names and shapes, written down in ``tests/data/*.json``) and turns a published state
dict into the state dict of the bundle's inference network, without guessing: every key is
either renamed by a listed rule, dropped for a stated reason, or left as it is for the strict
check (:func:`medsegzoo.networks.weights.compare_state_dicts`) to refuse.

Layouts (see ``docs/published_weights.md``):

* **STU-Net** (nnU-Net v1 ``.model``, weights under ``state_dict``): :class:`~medsegzoo.networks.STUNet`
  uses the published class's names, so nothing is renamed.
* **CLIP-Driven Universal Model** (``.pth``, weights under ``net``, every key prefixed with
  ``module.``). The released Swin UNETR file stores the backbone's parts without their
  ``backbone.`` component (``module.swinViT.*``, ``module.encoder1.*``, ``module.decoder5.*``);
  the released U-Net file keeps it (``module.backbone.down_tr64.*``). Both are accepted, as are
  our own key names. The official names map onto
  :class:`~medsegzoo.networks.universal.UniversalModel` as listed in :data:`UNIVERSAL_RULES`;
  the official controller writes the dynamic head's numbers in the same order as ours (weights
  8x8, 8x8, 8, then biases 8, 8, 1, each weight ``out x in``) and takes ``[image || text]`` in
  the same order, so the controller's tensors are copied unchanged.
  The official Swin UNETR is MONAI 0.9's, whose patch merging gathers the eight voxels of each
  2x2x2 block in another order than MONAI 1.x (it takes two of them twice and two never; see
  :data:`~medsegzoo.networks.universal.V09_MERGING_ORDER`). The names and shapes are the same but
  the computation is not, so the released Swin UNETR weights are only imported into a network
  that merges in the v0.9 order: the bundle's default ``swin_patch_merging: "v0.9"``.
  The official U-Net normalises with a batch norm that has a learned scale and shift and always
  uses the statistics of the batch it is given (its running statistics are never read): the
  bundle's default ``unet_norm: "batch"``
  (:class:`~medsegzoo.networks.universal.BatchStatisticsNorm3d`) takes the scale and shift under
  MONAI's ``adn.N`` names, and the running statistics are dropped. With ``unet_norm: "instance"``
  (no affine parameters) the scale and shift are dropped only when they are the identity (scale 1,
  shift 0); otherwise the import is refused and says why.
* **TCT and TCSeg**: plain state dicts, or this package's checkpoints. TCT's auxiliary task heads
  (``aux_heads.*``) are training-only and dropped, by name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from monai.networks.nets.swin_unetr import PatchMerging
from torch import nn

from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.networks.text_encoders import load_text_embeddings
from medsegzoo.networks.universal import V09_MERGING_ORDER

__all__ = [
    "FAMILIES",
    "FAMILY_TITLES",
    "UNIVERSAL_RULES",
    "Conversion",
    "RenameRule",
    "convert_published",
    "guess_family",
    "merging_order",
    "network_family",
    "read_text_embedding_file",
]

# network family -> (class path, checkpoint key signatures that identify a state dict of it)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "stunet": ("medsegzoo.networks.stunet.STUNet", ("conv_blocks_context.", "seg_outputs.")),
    "universal": (
        "medsegzoo.networks.universal.UniversalModel",
        ("groups.0.controller.", "controller.weight", "organ_embedding", "text_to_vision."),
    ),
    "tct": ("medsegzoo.networks.tct_unet.TCTUNet", ("main_head.", "aux_heads.")),
    "tcseg": ("medsegzoo.networks.vnet_dual.DualDecoderVNet", ("decoders.", "downs.")),
}
FAMILY_TITLES = {
    "stunet": "STU-Net",
    "universal": "CLIP-Driven Universal Model",
    "tct": "TCT U-Net",
    "tcseg": "TCSeg dual-decoder V-Net",
}


@dataclasses.dataclass(frozen=True)
class RenameRule:
    """One renaming of published keys.

    Attributes:
        pattern: regular expression matched at the start of a key.
        replace: replacement (``re.sub`` template, or a function of the match).
        description: the rule as the user reads it in the import's printout.
    """

    pattern: str
    replace: str | Callable[[re.Match[str]], str]
    description: str

    def apply(self, key: str) -> str | None:
        """The renamed key, or None when the rule does not match."""
        match = re.match(self.pattern, key)
        if match is None:
            return None
        new = self.replace(match) if callable(self.replace) else match.expand(self.replace)
        return new + key[match.end():]


# official U-Net blocks (named by their output width) -> our level index
_UNET_DOWN = {"64": 0, "128": 1, "256": 2, "512": 3}
_UNET_UP = {"256": 0, "128": 1, "64": 2}
_SWIN_PARTS = r"(swinViT|encoder\d+|decoder\d+)\."

UNIVERSAL_RULES: tuple[RenameRule, ...] = (
    RenameRule(r"organ_embedding$", "groups.0.embeddings", "organ_embedding -> groups.0.embeddings (class text embeddings)"),
    RenameRule(r"text_to_vision\.", "groups.0.text_projection.0.", "text_to_vision.* -> groups.0.text_projection.0.*"),
    RenameRule(r"controller\.", "groups.0.controller.", "controller.* -> groups.0.controller.*"),
    RenameRule(r"GAP\.", "global_feature.", "GAP.* -> global_feature.*"),
    RenameRule(r"precls_conv\.", "head_input.", "precls_conv.* -> head_input.*"),
    # the released Swin UNETR file lacks the backbone. component; the class has it
    RenameRule(rf"(?:backbone\.)?{_SWIN_PARTS}", r"backbone.swin.\1.", "[backbone.]swinViT|encoderN|decoderN.* -> backbone.swin.*"),
    RenameRule(
        r"backbone\.down_tr(64|128|256|512)\.ops\.(\d)\.conv1\.",
        lambda m: f"backbone.down.{_UNET_DOWN[m.group(1)]}.{m.group(2)}.conv.",
        "backbone.down_trW.ops.J.conv1.* -> backbone.down.I.J.conv.*",
    ),
    RenameRule(
        r"backbone\.up_tr(256|128|64)\.up_conv\.",
        lambda m: f"backbone.up.{_UNET_UP[m.group(1)]}.",
        "backbone.up_trW.up_conv.* -> backbone.up.I.*",
    ),
    RenameRule(
        r"backbone\.up_tr(256|128|64)\.ops\.(\d)\.conv1\.",
        lambda m: f"backbone.dec.{_UNET_UP[m.group(1)]}.{m.group(2)}.conv.",
        "backbone.up_trW.ops.J.conv1.* -> backbone.dec.I.J.conv.*",
    ),
    # the batch norm's scale and shift, in MONAI Convolution's norm slot (unet_norm='batch')
    RenameRule(
        r"backbone\.down_tr(64|128|256|512)\.ops\.(\d)\.bn1\.(weight|bias)$",
        lambda m: f"backbone.down.{_UNET_DOWN[m.group(1)]}.{m.group(2)}.adn.N.{m.group(3)}",
        "backbone.down_trW.ops.J.bn1.weight|bias -> backbone.down.I.J.adn.N.*",
    ),
    RenameRule(
        r"backbone\.up_tr(256|128|64)\.ops\.(\d)\.bn1\.(weight|bias)$",
        lambda m: f"backbone.dec.{_UNET_UP[m.group(1)]}.{m.group(2)}.adn.N.{m.group(3)}",
        "backbone.up_trW.ops.J.bn1.weight|bias -> backbone.dec.I.J.adn.N.*",
    ),
)
# why the official U-Net's batch-norm tensors may be left out (printed beside each key)
_RUNNING_STATISTIC = (
    "batch-norm running statistic, never read: the official U-Net's batch norm (ContBatchNorm3d) always "
    "normalises with the statistics of the batch it is given"
)
_IDENTITY_AFFINE = (
    "identity batch-norm scale/shift (1 and 0): equal to the instance norm without affine parameters "
    "(unet_norm='instance')"
)
_UNET_BN = r"backbone\.(down|up)_tr\d+\.ops\.\d\.bn1\."
# keys only the official layout has (ours never does): they tell the two layouts apart
_UNIVERSAL_OFFICIAL_SIGNS = ("organ_embedding", "controller.", "GAP.", "precls_conv.", "text_to_vision.", "swinViT.",
                             "backbone.swinViT.", "backbone.down_tr")


def merging_order(network: nn.Module) -> tuple[tuple[int, int, int], ...] | None:
    """The order in which the first Swin patch merging of ``network`` gathers voxels (None: none).

    Found by running a fresh module of the same class on one 2x2x2 block whose voxels hold their
    own offsets, with the norm and the reduction taken out, so it also works on a network built
    on the ``meta`` device.
    """
    merging = next((m for m in network.modules() if isinstance(m, PatchMerging)), None)
    if merging is None:
        return None
    probe = type(merging)(dim=1, spatial_dims=3)
    probe.norm, probe.reduction = nn.Identity(), nn.Identity()
    block = torch.tensor([[[[d * 4 + h * 2 + w for w in (0, 1)] for h in (0, 1)] for d in (0, 1)]], dtype=torch.float32)
    with torch.no_grad():
        codes = probe(block[..., None]).flatten().tolist()
    return tuple((int(c) // 4, int(c) // 2 % 2, int(c) % 2) for c in codes)


@dataclasses.dataclass
class Conversion:
    """A published state dict renamed for the bundle's network.

    Attributes:
        state: the tensors under the network's names.
        source_format: the layout recognised, in words.
        renamed: ``(published name, our name)`` of every renamed key.
        rules: rule description -> number of keys it renamed.
        dropped: ``(published name, reason)`` of every key left out.
        hint: what to do when the strict check still refuses the result.
    """

    state: dict[str, torch.Tensor]
    source_format: str
    renamed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    rules: dict[str, int] = dataclasses.field(default_factory=dict)
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    hint: str = ""


def _class_of(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def network_family(network: nn.Module) -> str:
    """The family (``stunet``, ``universal``, ``tct``, ``tcseg``) of a bundle's network.

    Raises:
        MedSegZooError: a network of none of the four methods.
    """
    for family, (path, _) in FAMILIES.items():
        if isinstance(network, _class_of(path)):
            return family
    raise MedSegZooError(
        f"import-weights knows the networks of the four bundles ({', '.join(p for p, _ in FAMILIES.values())}), "
        f"not {type(network).__module__}.{type(network).__name__}"
    )


def guess_family(keys: Sequence[str]) -> str | None:
    """The family whose key signatures a state dict's names carry (for error hints), or None."""
    for family, (_, signs) in FAMILIES.items():
        if any(k.startswith(sign) for k in keys for sign in signs):
            return family
    return None


def _first_rule(key: str, rules: Sequence[RenameRule]) -> tuple[str, RenameRule | None]:
    """``key`` renamed by the first rule that matches it, and that rule (unchanged and None when none does)."""
    for rule in rules:
        new = rule.apply(key)
        if new is not None:
            return new, rule
    return key, None


def _rename(state: Mapping[str, torch.Tensor], rules: Sequence[RenameRule], conversion: Conversion) -> None:
    sources: dict[str, str] = {}
    for key, tensor in state.items():
        new, rule = _first_rule(key, rules)
        if new in sources:  # two layouts mixed in one file: never let one overwrite the other
            raise MedSegZooError(f"checkpoint keys {sources[new]!r} and {key!r} both name the network's {new!r}")
        sources[new] = key
        conversion.state[new] = tensor
        if rule is not None:
            conversion.renamed.append((key, new))
            conversion.rules[rule.description] = conversion.rules.get(rule.description, 0) + 1


def _is_identity_affine(name: str, tensor: torch.Tensor) -> bool:
    target = 1.0 if name.endswith("weight") else 0.0
    return bool(torch.all(tensor == target))


def _convert_universal(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], conversion: Conversion, network: nn.Module | None
) -> None:
    if not any(k.startswith(_UNIVERSAL_OFFICIAL_SIGNS) for k in state):
        conversion.source_format += ", our key names"
        conversion.state.update(state)
        return
    backbone = "U-Net" if any(k.startswith("backbone.down_tr") for k in state) else "Swin UNETR"
    conversion.source_format += f", official Universal_model key names ({backbone} backbone)"
    if backbone == "Swin UNETR" and network is not None:
        order = merging_order(network)
        if order is not None and order != V09_MERGING_ORDER:
            raise MedSegZooError(
                "the official Swin UNETR weights were trained with MONAI 0.9's patch merging, which gathers the "
                f"voxels of each 2x2x2 block as {list(V09_MERGING_ORDER)}; this bundle's network gathers them as "
                f"{list(order)}, so the imported weights would compute something else. Import (and run inference) "
                "with swin_patch_merging='v0.9' (the bundle's default; override: swin_patch_merging=v0.9)"
            )
    kept, affine_left = {}, []
    for key, tensor in state.items():
        if re.match(_UNET_BN, key) and not key.endswith((".weight", ".bias")):
            conversion.dropped.append((key, _RUNNING_STATISTIC))
        elif re.match(_UNET_BN, key) and _first_rule(key, UNIVERSAL_RULES)[0] not in target:
            if _is_identity_affine(key, tensor):
                conversion.dropped.append((key, _IDENTITY_AFFINE))
            else:
                affine_left.append(key)
                kept[key] = tensor  # renamed below; the strict check lists it as unexpected
        else:
            kept[key] = tensor
    _rename(kept, UNIVERSAL_RULES, conversion)
    if affine_left:
        conversion.hint = (
            f"The official U-Net's batch norms have a learned scale and shift ({len(affine_left)} tensors such as "
            f"{affine_left[0]}, renamed ...adn.N.*); this network's U-Net (unet_norm='instance') normalises without "
            "affine parameters, so these weights cannot be represented and the import is refused rather than "
            "changing what the network computes. Import (and run inference) with unet_norm='batch', the bundle's "
            "default (override: unet_norm=batch)."
        )


def convert_published(
    family: str,
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    source_format: str = "",
    network: nn.Module | None = None,
) -> Conversion:
    """Rename a published (or this package's) state dict for a bundle's network.

    Args:
        family: the bundle network's family (:func:`network_family`).
        state: the checkpoint's tensors (wrapper and ``module.`` prefix already removed).
        target: the bundle network's state dict (names and shapes; ``meta`` tensors do).
        source_format: the file layout found so far, in words (extended here).
        network: the bundle's network (any device), to check what the names do not tell (the
            Swin UNETR patch merging order); None skips that check.

    Returns:
        The renamed tensors, what was renamed and dropped, and a hint for the strict check.

    Raises:
        MedSegZooError: two checkpoint keys that name the same tensor, or official Swin UNETR
            weights for a network that merges patches in another order.
    """
    conversion = Conversion({}, source_format or FAMILY_TITLES.get(family, family))
    if family == "universal":
        _convert_universal(state, target, conversion, network)
    elif family == "tct":
        for key, tensor in state.items():
            if key.startswith("aux_heads.") and key not in target:
                conversion.dropped.append((key, "TCT auxiliary task head: training only, inference runs the main head"))
            else:
                conversion.state[key] = tensor
    else:  # STU-Net and TCSeg use the published / our names as they are
        conversion.state.update(state)
    guessed = guess_family(list(state))
    if not conversion.hint and guessed is not None and guessed != family:
        conversion.hint = (
            f"The checkpoint looks like a {FAMILY_TITLES[guessed]} checkpoint; this bundle's network is a "
            f"{FAMILY_TITLES[family]}: import it into the {FAMILY_TITLES[guessed]} bundle."
        )
    return conversion


def read_text_embedding_file(
    path: str | os.PathLike, classes: Sequence[str], width: int | None = None
) -> tuple[torch.Tensor, str, str]:
    """Class text embeddings from the official ``txt_encoding.pth`` or this package's cache file.

    The official file (CLIP-Driven Universal Model repository, ``pretrained_weights/``) is a bare
    float16 tensor ``(32, 512)``: the CLIP ViT-B/32 text features of the prompts "A computerized
    tomography of a [CLS]" for the 32 classes in the universal32 order (no L2 normalisation).

    Args:
        path: the embedding file.
        classes: the classes the bundle expects, in order (their count is checked for the bare
            tensor; names and order for a cache file).
        width: the embedding width the bundle expects; None skips the check.

    Returns:
        ``(embeddings float32 (K, width), encoder id, prompt)``.

    Raises:
        DataValidationError: unreadable file, not an embedding file, or a class count or width
            that differs from the bundle's (the message names the file and both shapes).
    """

    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: text embedding file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled objects
        raise DataValidationError(
            f"{path}: not a readable text embedding file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    if isinstance(payload, Mapping):
        loaded = load_text_embeddings(path, classes=classes, width=width)
        return loaded.embeddings, loaded.encoder, loaded.prompt
    if not torch.is_tensor(payload) or not payload.is_floating_point():
        raise DataValidationError(
            f"{path}: neither the official txt_encoding.pth (a (classes, width) float tensor) nor a medsegzoo "
            f"text embedding file (found {type(payload).__name__})"
        )
    expected = (len(classes), width if width is not None else "any")
    shape = tuple(payload.shape)
    if payload.ndim != 2 or shape[0] != len(classes) or (width is not None and shape[1] != width):
        raise DataValidationError(
            f"{path}: embeddings of shape {shape}; the bundle expects one row per class of its "
            f"{len(classes)} classes and width {expected[1]} ({expected[0]} x {expected[1]})"
        )
    if not bool(torch.isfinite(payload).all()):
        raise DataValidationError(f"{path}: embeddings hold NaN or infinite values")
    return payload.float().contiguous(), f"official:{path.name} (CLIP ViT-B/32)", "A computerized tomography of a {}"
