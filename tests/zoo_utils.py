"""Test helpers of the zoo tests: a minimal bundle folder and hand-made (bad) zips."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from medsegzoo.zoo import bake as zoo_bake
from medsegzoo.zoo.bake import read_override_files


def make_fake_bundle(root: Path, name: str = "demo_bundle", version: str = "0.1.0",
                     medsegzoo_version: str | None = "0.1.0", weights: bytes | None = b"weights",
                     model_files: dict[str, bytes] | None = None) -> Path:
    """A small bundle folder with configs, docs, LICENSE, weights and files that must not be packed.

    ``model_files`` adds files under ``models/`` (name -> content), e.g. the training state
    (``checkpoint_final.pt``) or what inference reads beside the weights (``fingerprint.json``).
    """
    bundle = root / name
    (bundle / "configs").mkdir(parents=True)
    meta = {"version": version, "required_packages_version": {"nibabel": "5.0"}}
    if medsegzoo_version is not None:
        meta["required_packages_version"]["medsegzoo"] = medsegzoo_version
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4))
    (bundle / "configs" / "inference.json").write_text('{"run": []}\n')
    (bundle / "docs").mkdir()
    (bundle / "docs" / "README.md").write_text("# demo\n")
    (bundle / "LICENSE").write_text("Apache-2.0\n")
    # never packed: caches, evaluation output, logs, hidden files, non-weight files in models/
    (bundle / "configs" / "__pycache__").mkdir()
    (bundle / "configs" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (bundle / "eval").mkdir()
    (bundle / "eval" / "report.md").write_text("x")
    (bundle / "logs").mkdir()
    (bundle / "logs" / "train.log").write_text("x")
    (bundle / "docs" / ".notes.swp").write_text("x")
    (bundle / "models").mkdir()
    (bundle / "models" / "events.out").write_text("x")
    if weights is not None:
        (bundle / "models" / "model.pt").write_bytes(weights)
    for fname, content in (model_files or {}).items():
        (bundle / "models" / fname).write_bytes(content)
    return bundle


def write_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A zip with the given file entries and Unix symbolic links (name -> target)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777) << 16
            archive.writestr(info, target)
    return path


def bake_overrides(bundle: Path, overrides: str = "smoke.json", config: str = "inference.json") -> list[str]:
    """Write an override file's values into a bundle copy's config, as a publisher of a small model does."""
    values = read_override_files(bundle, [f"configs/{overrides}"])
    return zoo_bake.bake_overrides(bundle, values, config=f"configs/{config}")
