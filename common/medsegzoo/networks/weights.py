"""Loading network weights strictly: every key and shape must match, or the error lists them.

PyTorch's ``load_state_dict(strict=False)`` (and MONAI's ``CheckpointLoader(strict=False)``)
silently keeps the random initialisation of every tensor it cannot match: a checkpoint of
another network, or one whose keys carry a ``module.`` prefix, "loads" and the model predicts
noise. Every loading path of the package goes through :func:`load_weights` instead:

* the checkpoint may be a plain state dict or a dict wrapping it under a known key
  (``network``, ``model``, ``state_dict`` (nnU-Net), ``net`` (CLIP universal model release),
  ``network_weights``);
* a ``module.`` prefix on every key (a model saved from ``DataParallel`` /
  ``DistributedDataParallel``) is removed; that is a rename, not a guess;
* anything else that does not match (missing, unexpected or differently shaped tensors) is a
  :class:`StateDictMismatchError` that names the file and lists each key, unless fine-tuning
  asks to load only the tensors whose names and shapes match (``only_matching_shapes``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medsegzoo.errors import MedSegZooError

__all__ = ["WEIGHT_KEYS", "StateDictMismatchError", "load_weights", "read_state_dict", "with_weights"]

WEIGHT_KEYS: tuple[str, ...] = ("network", "model", "state_dict", "net", "network_weights")
_LISTED = 40


class StateDictMismatchError(MedSegZooError, RuntimeError):
    """A checkpoint whose keys or shapes do not fit the network."""


def read_state_dict(source: str | os.PathLike | Mapping[str, Any], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict held by a checkpoint file or mapping.

    Args:
        source: checkpoint path, or an already loaded checkpoint / state dict.
        map_location: where tensors are loaded.

    Returns:
        ``name -> tensor`` with a whole-dict ``module.`` prefix removed.

    Raises:
        StateDictMismatchError: a missing, unreadable or non-checkpoint file, or a mapping
            without tensors.
    """
    where = str(source) if not isinstance(source, Mapping) else "the given checkpoint"
    if not isinstance(source, Mapping):
        if not os.path.isfile(source):
            raise StateDictMismatchError(f"{source}: checkpoint file does not exist")
        try:
            # weights_only: a checkpoint is data; nnU-Net v1 .model files hold plain Python
            # containers and numbers besides tensors, which the weights-only unpickler accepts
            loaded = torch.load(source, map_location=map_location, weights_only=True)
        except Exception as err:  # truncated, not a torch file, or pickled objects
            raise StateDictMismatchError(f"{source}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    else:
        loaded = source
    state: Any = loaded
    for key in WEIGHT_KEYS:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        keys = list(loaded)[:10] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise StateDictMismatchError(
            f"{where}: holds no state dict of tensors (top-level keys: {keys}; "
            f"weights are looked for at the top level or under {', '.join(WEIGHT_KEYS)})"
        )
    names = list(state)
    if all(n.startswith("module.") for n in names):
        state = {n[len("module."):]: v for n, v in state.items()}
    return dict(state)


def load_weights(
    network: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    only_matching_shapes: bool = False,
    map_location: str | torch.device = "cpu",
    hint: str = "",
) -> dict[str, list[str]]:
    """Load a checkpoint into ``network``, strictly unless ``only_matching_shapes``.

    Args:
        network: the network to load into.
        source: checkpoint path or mapping (see :func:`read_state_dict`).
        only_matching_shapes: fine-tuning to another label set: load every tensor whose name and
            shape match and keep the network's own initialisation for the rest.
        map_location: where tensors are loaded.
        hint: a sentence appended to the error (what to do instead).

    Returns:
        ``{"loaded": [...], "skipped_shape": [...], "missing": [...], "unexpected": [...]}``.

    Raises:
        StateDictMismatchError: strict loading found mismatches; the message names the file and
            lists the missing, unexpected and differently shaped keys (with both shapes).
    """
    weights = read_state_dict(source, map_location)
    own = network.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "skipped_shape": [], "missing": [], "unexpected": []}
    to_load = {}
    for name, tensor in weights.items():
        if name not in own:
            report["unexpected"].append(name)
        elif tuple(own[name].shape) != tuple(tensor.shape):
            report["skipped_shape"].append(f"{name}: checkpoint {tuple(tensor.shape)} vs network {tuple(own[name].shape)}")
        else:
            to_load[name] = tensor
            report["loaded"].append(name)
    report["missing"] = [n for n in own if n not in weights]
    if not only_matching_shapes and (report["skipped_shape"] or report["missing"] or report["unexpected"]):
        where = str(source) if not isinstance(source, Mapping) else "the given checkpoint"
        sections = []
        for title, items in (("missing in the checkpoint", report["missing"]),
                             ("unexpected (not in the network)", report["unexpected"]),
                             ("different shape", report["skipped_shape"])):
            if items:
                listing = "\n    ".join(items[:_LISTED]) + (f"\n    ... {len(items) - _LISTED} more" if len(items) > _LISTED else "")
                sections.append(f"  {len(items)} {title}:\n    {listing}")
        raise StateDictMismatchError(
            f"{where} does not fit {type(network).__name__} ({len(report['loaded'])} of {len(own)} tensors match):\n"
            + "\n".join(sections) + (f"\n{hint}" if hint else "")
        )
    if not to_load:
        raise StateDictMismatchError(f"{source}: no tensor of the checkpoint fits {type(network).__name__}")
    network.load_state_dict(to_load, strict=False)
    return report


def with_weights(
    network: nn.Module,
    checkpoint: str | os.PathLike | None = None,
    only_matching_shapes: bool = False,
) -> nn.Module:
    """``network`` with a checkpoint loaded (none: unchanged); for bundle configs.

    Example (``train.json``)::

        "network": "$medsegzoo.networks.with_weights(@network_def, @pretrained_checkpoint).to(@device)"
    """
    if checkpoint:
        load_weights(
            network, checkpoint, only_matching_shapes=only_matching_shapes,
            hint="To fine-tune to another label set, load with only_matching_shapes=True "
            "(bundle key pretrained_only_matching_shapes).",
        )
    return network
