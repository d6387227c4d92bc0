"""Writing a recipe's settings into a bundle's inference.json and its metadata before publishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.zoo.bake import bake_overrides, declare_output_channels, read_override_files


def _bundle(tmp_path: Path) -> Path:
    configs = tmp_path / "b" / "configs"
    configs.mkdir(parents=True)
    (configs / "inference.json").write_text(json.dumps({"spacing": [1.0, 1.0, 1.0], "patch_size": [96, 96, 96], "amp": True}))
    (configs / "cpu.json").write_text(json.dumps({"spacing": [2.0, 2.0, 2.0], "learning_rate": 0.002}))
    (configs / "preset.json").write_text(json.dumps({"spacing": [1.5, 1.5, 1.5], "patch_size": [48, 48, 48]}))
    meta = {"network_data_format": {"outputs": {"pred": {"num_channels": 32, "channel_def": {"0": "spleen"}}}}}
    (configs / "metadata.json").write_text(json.dumps(meta))
    return tmp_path / "b"


def test_only_keys_inference_has_are_set_later_files_winning(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    values = read_override_files(bundle, ["configs/preset.json", "configs/cpu.json"])
    assert values == {"spacing": [2.0, 2.0, 2.0], "patch_size": [48, 48, 48], "learning_rate": 0.002}
    assert bake_overrides(bundle, values) == ["spacing", "patch_size"]  # the optimizer's lr is training-only
    text = (bundle / "configs" / "inference.json").read_text()
    assert text.endswith("}\n") and '\n    "spacing": [' in text  # the zoo's pretty-format-json layout
    assert json.loads(text) == {"spacing": [2.0, 2.0, 2.0], "patch_size": [48, 48, 48], "amp": True}


def test_declared_output_channels_follow_the_predicted_classes(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    declare_output_channels(bundle, ["liver", "spleen", "stomach"])
    pred = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 3 and pred["channel_def"] == {"0": "liver", "1": "spleen", "2": "stomach"}
    with pytest.raises(DataValidationError, match="metadata.json: no network_data_format.outputs.label"):
        declare_output_channels(bundle, ["liver"], output="label")


def test_an_unreadable_override_file_is_named(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    (bundle / "configs" / "broken.json").write_text("{not json")
    with pytest.raises(DataValidationError, match="broken.json: cannot read the override file"):
        read_override_files(bundle, ["configs/broken.json"])
