"""The medsegzoo wheel that ``zoo pack`` builds, serves beside the bundles and names in metadata.json.

A fresh environment installs medsegzoo with what the packed metadata names: the test lets pip
fetch that requirement from the loopback-served zoo (``pip download --no-deps --no-index``: no
registry, and pip checks the ``#sha256=`` of the URL) and looks inside the wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from zoo_utils import make_fake_bundle

from medsegzoo.errors import LayoutError
from medsegzoo.zoo.pack import file_digest, pack_zoo
from medsegzoo.zoo.serve import serving
from medsegzoo.zoo.wheel import build_wheel

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the wheel build itself
REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_wheel_is_served_named_in_metadata_and_pip_fetches_it(tmp_path: Path) -> None:
    make_fake_bundle(tmp_path / "bundles", "demo", "0.1.0", medsegzoo_version="0.0.1")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    with serving(zoo) as url:
        pack_zoo(tmp_path / "bundles", zoo, base_url=url, project_dir=REPO_ROOT)
        wheel = zoo / "packages" / f"medsegzoo-{VERSION}-py3-none-any.whl"
        sha256 = file_digest(wheel, "sha256")
        with zipfile.ZipFile(zoo / "demo_v0.1.0.zip") as archive:
            meta = json.loads(archive.read("demo/configs/metadata.json"))
        assert meta["required_packages_version"]["medsegzoo"] == VERSION  # the wheel's, not the typed 0.0.1
        requirement = f"medsegzoo @ {url}packages/{wheel.name}#sha256={sha256}"
        assert meta["pip_requirements"] == [requirement]
        page = (zoo / "packages" / "index.html").read_text()
        assert f'href="{wheel.name}#sha256={sha256}"' in page  # pip --find-links on a static host
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "--disable-pip-version-check",
                               "-d", str(tmp_path / "fetched"), requirement],
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "fetched" / wheel.name).read_bytes() == wheel.read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"medsegzoo-{VERSION}.dist-info"
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert {"medsegzoo/cli.py", "medsegzoo/zoo/pack.py", "medsegzoo/resources/meta_schema.json"} <= names
    assert "medsegzoo = medsegzoo.cli:main" in entry_points
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def _build_outputs() -> set[Path]:
    """What a setuptools build in the project would leave: build/, dist/, *.egg-info."""
    found = set()
    for folder in (REPO_ROOT, REPO_ROOT / "common"):
        found |= {p for p in folder.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}
    return found


def test_wheel_build_is_reproducible_and_leaves_the_source_tree_alone(tmp_path: Path) -> None:
    before = _build_outputs()
    first = build_wheel(REPO_ROOT, tmp_path / "a")
    second = build_wheel(REPO_ROOT, tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes() and first.sha256 == second.sha256
    assert first.version == VERSION
    assert _build_outputs() == before  # built from a copy: no build/, dist/ or egg-info in the project
    with pytest.raises(LayoutError, match="no pyproject.toml of the medsegzoo project"):
        build_wheel(tmp_path, tmp_path / "c")
