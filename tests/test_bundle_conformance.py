"""Every bundle follows the MONAI model zoo's rules, checked here in our own code, offline.

The model zoo checks a bundle with its CI script, its pre-commit hooks and the rules of its
CONTRIBUTING guide. These tests check the same rules on ``bundles/<name>`` without the zoo:

* the files a zoo bundle needs, and no weights (or files above the hooks' 1 MB) in the source
  tree (``medsegzoo zoo pack`` adds the weights, or their ``large_files.yml``);
* ``configs/metadata.json`` against the offline copy of MONAI's metadata schema, plus the keys
  the zoo requires beyond it (``schema``, the version in the changelog, ``image``/``pred``);
* ``configs/inference.json`` standing alone with the keys the zoo expects;
* the network built from ``inference.json`` alone accepting the input shape ``metadata.json``
  declares at ``n = 1`` and returning the declared channels, dtype and spatial size;
* the network compiling with ``torch.jit.script`` and giving the eager output, or the README
  declaring that the bundle does not support TorchScript (and the declaration still true);
* the JSON formatting of the zoo's ``pretty-format-json --indent=4 --no-sort-keys`` hook (no
  duplicate keys) and the text hooks (one final newline, no trailing whitespace, LF endings).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from bundle_utils import BUNDLES_DIR, META_SCHEMA, REPO_ROOT
from packaging.version import InvalidVersion, Version

BUNDLES = ["tct_partial_label_segmentation", "clip_universal_segmentation",
           "tcseg_semi_supervised_segmentation", "stunet_cross_dataset_evaluation"]
REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "configs/train.json",
                  "configs/evaluate.json", "configs/logging.conf", "docs/README.md")
# keys of a standalone inference.json: the zoo's (bundle_root, device, network_def, inferer,
# output_dir) and what its tools and ours read (dataset_dir, dataset, evaluator)
INFERENCE_KEYS = ("bundle_root", "device", "network_def", "inferer", "output_dir", "dataset_dir", "dataset", "evaluator")
RETIRED_OUTPUT_KEYS = ("prediction_dir", "pred_dir")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".ckpt", ".onnx", ".safetensors", ".model", ".bin")
MAX_SOURCE_FILE_BYTES = 1024 * 1024  # check-added-large-files --maxkb=1024
NOT_SCRIPTABLE = re.compile(r"does not support\s+TorchScript", re.IGNORECASE)
SCRIPT_TOLERANCE = 1e-5
BINARY_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".pdf")


def _bundle_files(root: Path) -> list[Path]:
    """The bundle's files in git (tracked, or new and not ignored); every file without git."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", str(root)],
                          cwd=REPO_ROOT, capture_output=True, check=False)
    if proc.returncode != 0:  # not a checkout: the run outputs of models/, eval/, logs/ are not source
        return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in ("models", "eval", "logs")]
    return [REPO_ROOT / name for name in proc.stdout.decode().split("\0") if name and (REPO_ROOT / name).is_file()]


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)


def size_at(expr: int | str, n: int = 1, p: int = 1, any_size: int = 1, where: str = "") -> int:
    """One spatial size of a metadata ``spatial_shape`` entry (``64``, ``"64*n"``, ``"2**p"``, ``"*"``).

    Raises:
        ValueError: an expression of another form (the message names ``where``).
    """
    if isinstance(expr, int) and not isinstance(expr, bool):
        return expr
    text = str(expr).replace(" ", "")
    if text == "*":
        return any_size
    if text.isdigit():
        return int(text)
    for pattern, value in ((r"(\d+)\*n", lambda a: a * n), (r"(\d+)\*\*p", lambda a: a**p)):
        match = re.fullmatch(pattern, text)
        if match:
            return value(int(match.group(1)))
    raise ValueError(f"{where}: spatial size {expr!r} is not an integer, '*', 'K*n' or 'K**p'")


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], torch.nn.Module]]:
    """Each bundle's ``network_def`` parsed from ``inference.json`` alone (CPU, eval mode), built once.

    ``bundle_root`` is a temporary folder holding what building the network reads there: the
    universal model's text embeddings (one-hot codes of its 32 classes at the config's width,
    so that no text model is needed).
    """
    from monai.bundle import ConfigParser

    built: dict[str, torch.nn.Module] = {}

    def build(name: str) -> torch.nn.Module:
        if name not in built:
            root = tmp_path_factory.mktemp(name)
            parser = ConfigParser()
            parser.read_config(str(BUNDLES_DIR / name / "configs" / "inference.json"))
            parser["bundle_root"] = str(root)
            if name == "clip_universal_segmentation":
                from medsegzoo.networks.text_encoders import compute_text_embeddings, save_text_embeddings

                classes = parser.get_parsed_content("class_names")
                width = parser.get_parsed_content("text_embedding_width")
                save_text_embeddings(compute_text_embeddings(classes, "onehot", width=width),
                                     parser.get_parsed_content("text_embedding_file"))
            torch.manual_seed(0)
            built[name] = parser.get_parsed_content("network_def").cpu().eval()
        return built[name]

    yield build


@pytest.mark.parametrize("name", BUNDLES)
def test_required_files_and_no_weights_in_the_source_tree(name: str) -> None:
    root = BUNDLES_DIR / name
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    assert not missing, f"{root}: missing {missing}"
    files = _bundle_files(root)
    assert files, f"{root}: no files"
    rel = {f.relative_to(root).as_posix(): f for f in files}
    weights = [r for r in rel if r.endswith(WEIGHT_SUFFIXES) or r.startswith("models/")]
    assert not weights, f"{root}: weights in the source tree {weights}; `medsegzoo zoo pack` adds them to the zip"
    lists = [r for r in rel if r.startswith("large_files.")]
    assert not lists, f"{root}: {lists} in the source tree; `medsegzoo zoo pack` writes it for the files above 25 MB"
    big = {r: f.stat().st_size for r, f in rel.items() if f.stat().st_size > MAX_SOURCE_FILE_BYTES}
    assert not big, f"{root}: files above the zoo's 1024 KB for added files: {big}"


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_follows_the_schema_and_the_zoo(name: str) -> None:
    import jsonschema

    meta_file = BUNDLES_DIR / name / "configs" / "metadata.json"
    meta = _read_json(meta_file)
    errors = sorted(jsonschema.Draft7Validator(_read_json(META_SCHEMA)).iter_errors(meta), key=lambda e: list(e.path))
    assert not errors, f"{meta_file}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # what the zoo's own schema and CI require beyond the offline schema
    assert isinstance(meta.get("schema"), str) and meta["schema"].endswith(".json"), f"{meta_file}: no 'schema' URL"
    assert meta["version"] in meta.get("changelog", {}), f"{meta_file}: version {meta['version']} is not in the changelog"
    for key in ("version", "monai_version", "pytorch_version", "numpy_version", *meta["required_packages_version"]):
        value = meta.get(key, meta["required_packages_version"].get(key))
        try:
            Version(str(value))
        except InvalidVersion as err:
            raise AssertionError(f"{meta_file}: {key} {value!r} is not a version pip understands") from err
    assert "medsegzoo" in meta["required_packages_version"], f"{meta_file}: does not name medsegzoo"
    io = meta["network_data_format"]
    assert list(io["inputs"]) == ["image"] and list(io["outputs"]) == ["pred"], f"{meta_file}: inputs must be image, outputs pred"
    pred = io["outputs"]["pred"]
    assert len(pred["channel_def"]) == pred["num_channels"], f"{meta_file}: pred channel_def does not name every channel"


@pytest.mark.parametrize("name", BUNDLES)
def test_inference_json_stands_alone_with_the_zoo_keys(name: str) -> None:
    config_file = BUNDLES_DIR / name / "configs" / "inference.json"
    config = _read_json(config_file)
    missing = [k for k in INFERENCE_KEYS if k not in config]
    assert not missing, f"{config_file}: missing top-level keys {missing}"
    retired = [k for k in RETIRED_OUTPUT_KEYS if k in config]
    assert not retired, f"{config_file}: output folder key must be 'output_dir', not {retired}"
    assert config["bundle_root"] == ".", f"{config_file}: bundle_root must be '.' (no personal path)"
    assert config.get("inference") == "%run", f"{config_file}: 'inference' must be the alias of 'run' (\"%run\")"


def _declares_no_torchscript(name: str) -> bool:
    return NOT_SCRIPTABLE.search((BUNDLES_DIR / name / "docs" / "README.md").read_text(encoding="utf-8").replace("*", "")) is not None


@pytest.mark.parametrize("name", BUNDLES)
def test_network_takes_the_declared_shape_and_scripts(name: str, networks: Callable[[str], torch.nn.Module]) -> None:
    """Data shape at n=1 on inference.json alone, and TorchScript (or its declared absence)."""
    meta_file = BUNDLES_DIR / name / "configs" / "metadata.json"
    io = _read_json(meta_file)["network_data_format"]
    image, pred = io["inputs"]["image"], io["outputs"]["pred"]
    shape = [size_at(s, n=1, where=f"{meta_file} image") for s in image["spatial_shape"]]
    out_shape = [size_at(s, n=1, where=f"{meta_file} pred") for s in pred["spatial_shape"]]
    net = networks(name)
    torch.manual_seed(1)
    x = torch.rand(1, image["num_channels"], *shape, dtype=getattr(torch, image["dtype"]))
    with torch.no_grad():
        out = net(x)
    assert torch.is_tensor(out), f"{name}: network_def returns {type(out).__name__}, not a tensor"
    assert out.shape[1] == pred["num_channels"], f"{meta_file}: pred has {out.shape[1]} channels, metadata says {pred['num_channels']}"
    assert list(out.shape[2:]) == out_shape, f"{meta_file}: pred spatial size {list(out.shape[2:])}, metadata says {out_shape}"
    assert out.dtype == getattr(torch, pred["dtype"]), f"{meta_file}: pred dtype {out.dtype}, metadata says {pred['dtype']}"
    if _declares_no_torchscript(name):
        # the declaration must stay true: once the network scripts, the README must say so
        with pytest.raises(Exception):  # noqa: B017 - TorchScript raises several error types
            torch.jit.script(net)
        return
    scripted = torch.jit.script(net)
    with torch.no_grad():
        difference = float((scripted(x) - out).abs().max())
    assert difference < SCRIPT_TOLERANCE, f"{name}: scripted network differs from the eager one by {difference}"


def test_only_the_universal_bundle_declares_no_torchscript() -> None:
    assert [n for n in BUNDLES if _declares_no_torchscript(n)] == ["clip_universal_segmentation"]


def _text_files(root: Path) -> list[Path]:
    files = []
    for path in _bundle_files(root):
        if path.suffix.lower() in BINARY_SUFFIXES or b"\0" in path.read_bytes()[:8192]:
            continue
        files.append(path)
    return files


@pytest.mark.parametrize("name", BUNDLES)
def test_json_and_text_formatting_as_the_zoo_hooks(name: str) -> None:
    root = BUNDLES_DIR / name
    problems = []
    for path in _text_files(root):
        rel = path.relative_to(REPO_ROOT)
        data = path.read_bytes()
        text = data.decode("utf-8")
        if path.suffix == ".json":
            try:
                parsed = _read_json(path)
            except ValueError as err:
                problems.append(f"{rel}: {err}")
                continue
            if text != json.dumps(parsed, indent=4) + "\n":
                problems.append(f"{rel}: not formatted as pretty-format-json --indent=4 --no-sort-keys")
        if data and not data.endswith(b"\n") or data.endswith(b"\n\n"):
            problems.append(f"{rel}: must end with exactly one newline")
        if b"\r" in data:
            problems.append(f"{rel}: CR line endings")
        trailing = [i + 1 for i, line in enumerate(text.split("\n")) if line != line.rstrip()]
        if trailing:
            problems.append(f"{rel}: trailing whitespace on lines {trailing[:5]}")
    assert not problems, "\n".join(problems)


def test_formatting_check_fails_on_what_the_hooks_refuse(tmp_path: Path) -> None:
    """The formatting rules above reject compact lists, duplicate keys, missing newlines."""
    compact = '{\n    "patch_size": [32, 32]\n}\n'
    assert compact != json.dumps(json.loads(compact), indent=4) + "\n"
    with pytest.raises(ValueError, match=r"duplicate keys \['a'\]"):
        json.loads('{"a": 1, "a": 2}', object_pairs_hook=_no_duplicate_keys)
    assert size_at("64*n", n=2) == 128 and size_at("*", any_size=3) == 3 and size_at(16) == 16
    with pytest.raises(ValueError, match="metadata.json: spatial size 'n\\+1'"):
        size_at("n+1", where="metadata.json")
