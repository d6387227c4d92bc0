"""The medsegzoo wheel served beside the bundles, so that a fresh environment can install it.

A downloaded bundle runs only where ``medsegzoo`` is installed, and medsegzoo is not on the
package registry. ``medsegzoo zoo pack`` therefore builds the project's wheel
(:func:`build_wheel`) into ``<zoo>/packages/``, writes a ``packages/index.html`` that pip's
``--find-links`` reads on any static host, and names the wheel in each bundle's metadata:
``required_packages_version.medsegzoo`` is the wheel's version and, when the zoo's URL is
known, ``pip_requirements`` holds ``medsegzoo @ <url of the wheel>#sha256=<hash>``, which
``pip install`` fetches and verifies.

The wheel is built from a copy of the project's packaging files and package folders (never in
the source tree, which would gain ``build/`` and ``*.egg-info``), with the PEP 517 hook of the
installed setuptools (no network, no build isolation) and ``SOURCE_DATE_EPOCH`` fixed, so the
same sources give the same wheel bytes.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medsegzoo.errors import LayoutError, MedSegZooError
from medsegzoo.utils import atomic_path, atomic_write_text

PACKAGES_DIR = "packages"
PROJECT_NAME = "medsegzoo"
# zip timestamps of the wheel: 1980-01-01, as the bundle zips (reproducible bytes)
SOURCE_DATE_EPOCH = "315532800"
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".*")
_WHEEL_NAME = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl")
BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Wheel:
    """A wheel in the zoo folder.

    Attributes:
        path: the file (``<zoo>/packages/<name>-<version>-...whl``).
        version: the version in its file name.
        sha256: hex SHA-256 of the file.
    """

    path: Path
    version: str
    sha256: str

    def url(self, base_url: str) -> str:
        """Where the wheel is served when the zoo folder is at ``base_url``."""
        return f"{base_url.rstrip('/')}/{PACKAGES_DIR}/{self.path.name}"

    def requirement(self, base_url: str) -> str:
        """The pip requirement (PEP 508 direct reference, hash-checked by pip)."""
        return f"{PROJECT_NAME} @ {self.url(base_url)}#sha256={self.sha256}"


def _read_pyproject(project_dir: Path) -> dict:
    pyproject = project_dir / "pyproject.toml"
    try:
        import tomllib
    except ImportError as err:  # Python 3.10
        raise MedSegZooError(f"{pyproject}: building the medsegzoo wheel needs Python 3.11+ (tomllib)") from err
    try:
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise LayoutError(f"{pyproject}: cannot read it ({err})") from err


def is_project(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds the medsegzoo project (its ``pyproject.toml`` names it)."""
    pyproject = Path(folder) / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        return _read_pyproject(Path(folder)).get("project", {}).get("name") == PROJECT_NAME
    except MedSegZooError:
        return False


def _project_files(project_dir: Path) -> list[str]:
    """What the build needs: pyproject.toml, the readme and license files, the package folders."""
    config = _read_pyproject(project_dir)
    project = config.get("project", {})
    names = ["pyproject.toml"]
    readme = project.get("readme")
    if isinstance(readme, dict):
        readme = readme.get("file")
    if isinstance(readme, str):
        names.append(readme)
    names += [str(f) for f in project.get("license-files", [])]
    find = config.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    names += [str(w) for w in find.get("where", [])]
    missing = [n for n in names if not (project_dir / n).exists()]
    if missing:
        raise LayoutError(f"{project_dir / 'pyproject.toml'}: names {missing}, which do not exist in {project_dir}")
    return list(dict.fromkeys(names))


def build_wheel(project_dir: str | os.PathLike, zoo_dir: str | os.PathLike) -> Wheel:
    """Build the project's wheel into ``<zoo_dir>/packages/`` (atomically) and index it.

    Args:
        project_dir: the medsegzoo project (the folder of its ``pyproject.toml``).
        zoo_dir: the zoo folder.

    Returns:
        The written wheel.

    Raises:
        LayoutError: ``project_dir`` is not the medsegzoo project.
        MedSegZooError: the build failed (the message carries the build's output tail).
    """
    from medsegzoo.zoo.pack import PUBLISHED_MODE, file_digest  # pack imports this module

    project_dir = Path(project_dir).resolve()
    if not is_project(project_dir):
        raise LayoutError(f"{project_dir}: no pyproject.toml of the {PROJECT_NAME} project; cannot build its wheel")
    packages = Path(zoo_dir) / PACKAGES_DIR
    with tempfile.TemporaryDirectory(prefix="medsegzoo-wheel-") as tmp:
        stage, out = Path(tmp) / "project", Path(tmp) / "dist"
        stage.mkdir()
        for name in _project_files(project_dir):
            src = project_dir / name
            if src.is_dir():
                shutil.copytree(src, stage / name, ignore=_SKIPPED)
            else:
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, stage / name)
        hook = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_wheel(sys.argv[1]))"
        proc = subprocess.run(
            [sys.executable, "-c", hook, str(out)], cwd=stage, capture_output=True, text=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}, timeout=BUILD_TIMEOUT_S, check=False,
        )
        built = out / proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None
        if built is None or not built.is_file():
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise MedSegZooError(f"{project_dir}: building the {PROJECT_NAME} wheel failed (exit {proc.returncode}):\n{tail}")
        match = _WHEEL_NAME.fullmatch(built.name)
        if match is None:
            raise MedSegZooError(f"{built.name}: not a wheel file name")
        target = packages / built.name
        with atomic_path(target) as part:
            shutil.copyfile(built, part)
    target.chmod(PUBLISHED_MODE)
    write_find_links_page(packages)
    return Wheel(target, match.group("version"), file_digest(target, "sha256"))


def write_find_links_page(packages: str | os.PathLike) -> Path:
    """Write ``index.html`` listing the wheels of a packages folder (pip ``--find-links``).

    Static hosts (object stores) do not list folders; this page does, with each wheel's
    ``#sha256=`` fragment, which pip checks.

    Returns:
        The page.
    """
    from medsegzoo.zoo.pack import PUBLISHED_MODE, file_digest  # pack imports this module

    folder = Path(packages)
    lines = ["<!DOCTYPE html>", "<html><body>"]
    for wheel in sorted(folder.glob("*.whl")):
        href = html.escape(f"{wheel.name}#sha256={file_digest(wheel, 'sha256')}")
        lines.append(f'<a href="{href}">{html.escape(wheel.name)}</a><br>')
    lines.append("</body></html>")
    page = atomic_write_text(folder / "index.html", "\n".join(lines) + "\n")
    page.chmod(PUBLISHED_MODE)
    return page
