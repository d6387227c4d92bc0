"""Write a trained recipe's settings into a bundle's ``inference.json`` before it is published.

The model zoo runs ``configs/inference.json`` alone. A bundle trained with an override file (the
CPU recipe's narrower network, coarser spacing and smaller patch, a preset, the width of the
text embeddings it was trained with) only predicts with its weights when those values are in
``inference.json`` itself, so a publisher writes them there. Only keys the config already
defines are set: training-only entries of an override (optimizer, schedule) are left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsegzoo.errors import DataValidationError
from medsegzoo.utils import atomic_write_json

__all__ = ["bake_overrides", "declare_output_channels", "read_override_files"]


def read_override_files(bundle: str | os.PathLike, files: list[str]) -> dict[str, Any]:
    """The values of override files of a bundle (relative to it), later files winning."""
    values: dict[str, Any] = {}
    for name in files:
        path = Path(bundle) / name
        try:
            values.update(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise DataValidationError(f"{path}: cannot read the override file ({err})") from err
    return values


def bake_overrides(bundle: str | os.PathLike, values: Mapping[str, Any], config: str = "configs/inference.json") -> list[str]:
    """Set ``values`` in the bundle's ``config`` where it has the key; returns the keys set (file written atomically)."""
    path = Path(bundle) / config
    content = read_override_files(bundle, [config])
    keys = [key for key in values if key in content]
    content.update({key: values[key] for key in keys})
    atomic_write_json(path, content, indent=4)
    return keys


def declare_output_channels(bundle: str | os.PathLike, channels: list[str], output: str = "pred") -> None:
    """Declare the network's output channels in ``configs/metadata.json`` (the zoo checks the count).

    A universal model published with only its trained heads (``predict_classes``) outputs one
    channel per predicted class, not one per class of its label system.
    """
    path = Path(bundle) / "configs" / "metadata.json"
    meta = read_override_files(bundle, ["configs/metadata.json"])
    try:
        declared = meta["network_data_format"]["outputs"][output]
    except KeyError as err:
        raise DataValidationError(f"{path}: no network_data_format.outputs.{output} to declare channels in") from err
    declared["num_channels"] = len(channels)
    declared["channel_def"] = {str(i): name for i, name in enumerate(channels)}
    atomic_write_json(path, meta, indent=4)
