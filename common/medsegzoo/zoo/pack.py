"""Reproducible bundle zips and the model-zoo index.

``pack_bundle`` writes ``<name>_v<version>.zip`` holding exactly one top-level folder named
after the bundle (``configs/``, ``docs/``, ``LICENSE`` and, when trained, the inference weights
``models/model.pt`` with the files inference reads beside them: :data:`MODEL_FILES`), the
zip's ``.sha256`` file, and returns its index entry; ``pack_zoo`` does it for every bundle of a
folder and writes ``model_info.json`` in the MONAI model-zoo format
(``{"<name>_v<version>": {"checksum": <sha1 of the zip>, "sha256": <sha256>, "source": <url>}}``:
MONAI's tools read the sha1 ``checksum``; medsegzoo downloads verify the ``sha256``).

As in the MONAI model zoo, no file in a zip exceeds 25 MB (:data:`ZOO_FILE_LIMIT_BYTES`): a
larger file (the weights of a full-size network) is served beside the zip, at
``<name>_v<version>_files/<path>``, and the zip carries a ``large_files.yml`` naming its path,
URL and SHA-256 (``python -m monai.bundle download_large_files`` and the zoo's CI fetch it;
``medsegzoo zoo download`` fetches and verifies it). Such a URL must be absolute, so packing
a large file needs ``base_url``.

The packed ``configs/metadata.json`` states the versions installed where the pack runs
(:func:`medsegzoo.zoo.environment.stamp_versions`), and ``pack_zoo`` can build the medsegzoo
wheel into ``packages/`` and name it there (:mod:`medsegzoo.zoo.wheel`).

The same inputs give byte-identical zips: entries are sorted, every entry carries the same
timestamp (1980-01-01, the earliest a zip can store), the same permissions and the same
compression settings, so a zip's checksum identifies its content, not the moment it was packed.

Files are streamed into the zip and hashed in 1 MiB blocks (a multi-GB weights file needs no RAM
for its size). Every output is written atomically, and ``pack_zoo`` holds a lock on the zoo
folder while it writes, so a killed pack leaves no partial zip under a published name; the next
pack removes the hidden temporaries a killed one left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError
from medsegzoo.utils import atomic_path, atomic_write_json, atomic_write_text
from medsegzoo.utils.atomic import check_output_path
from medsegzoo.zoo.environment import PROJECT, stamp_versions

INDEX_NAME = "model_info.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can store
FILE_MODE = 0o100644  # regular file, rw-r--r--
DIR_MODE = 0o040755  # directory, rwxr-xr-x
COMPRESS_LEVEL = 9
# what a bundle zip carries: recursive folders, single files, and from models/ the inference
# weights with the files inference reads beside them (STU-Net's plan, the universal model's
# text embeddings, an exported TorchScript model); training state (checkpoint_*.pt, the
# resumable state; model_best.pt) stays out
PACKED_FOLDERS = ("configs", "docs")
PACKED_FILES = ("LICENSE",)
MODELS_DIR = "models"
MODEL_FILES = ("model.pt", "model.ts", "fingerprint.json", "text_embeddings.pt")
METADATA_FILE = "configs/metadata.json"
# the MONAI model zoo's limit on one file of a bundle; larger files are served beside the zip
ZOO_FILE_LIMIT_BYTES = 25_000_000
LARGE_FILES_NAME = "large_files.yml"
LARGE_FILES_SUFFIX = "_files"  # <name>_v<version>_files/<path>: where large files are served
# never packed even inside the folders above (caches, editor and OS droppings)
SKIPPED_NAMES = {"__pycache__", ".DS_Store", ".ipynb_checkpoints"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".tmp", ".swp")
PUBLISHED_MODE = 0o644  # zoo files are served and shared: readable by all (mkstemp makes 0600)


@dataclass(frozen=True)
class PackedBundle:
    """One packed bundle.

    Attributes:
        name: bundle name (its folder's name).
        version: version from ``configs/metadata.json``.
        zip_path: the written zip.
        sha1: hex SHA-1 of the zip (the model-zoo index checksum).
        sha256: hex SHA-256 of the zip (also written to ``<zip>.sha256``).
        members: the zip's entry names, in order.
        large_files: paths (inside the bundle) of the files served beside the zip and named
            in its ``large_files.yml``.
    """

    name: str
    version: str
    zip_path: Path
    sha1: str
    sha256: str
    members: tuple[str, ...]
    large_files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The index key ``<name>_v<version>``."""
        return index_key(self.name, self.version)


def index_key(name: str, version: str) -> str:
    """``<name>_v<version>``, the model-zoo index key and the zip's stem."""
    return f"{name}_v{version}"


BLOCK_BYTES = 1 << 20  # read, hash and copy in blocks of this size


def file_digests(path: str | os.PathLike, algorithms: Sequence[str] = ("sha1", "sha256")) -> dict[str, str]:
    """Hex digests of a file with several hashlib algorithms, in one streamed pass.

    Args:
        path: the file.
        algorithms: hashlib names ("sha1", "sha256").

    Returns:
        Algorithm -> hex digest.
    """
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file with a hashlib algorithm ("sha1", "sha256"), streamed."""
    return file_digests(path, (algorithm,))[algorithm]


def read_bundle_metadata(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``configs/metadata.json`` of a bundle for packing.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The metadata dictionary.

    Raises:
        LayoutError: the bundle has no ``configs/metadata.json``.
        DataValidationError: the file is not JSON, has no valid ``version``, or does not name
            the medsegzoo version it needs in ``required_packages_version.medsegzoo``.
    """
    meta_file = Path(bundle_dir) / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise LayoutError(f"{meta_file}: missing; every bundle needs configs/metadata.json to be packed")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataValidationError(f"{meta_file}: not valid JSON ({err})") from err
    version = meta.get("version")
    try:
        Version(str(version))
    except InvalidVersion as err:
        raise DataValidationError(f"{meta_file}: 'version' {version!r} is not a version (e.g. \"0.1.0\")") from err
    needed = (meta.get("required_packages_version") or {}).get("medsegzoo")
    if not isinstance(needed, str) or not needed.strip():
        raise DataValidationError(
            f"{meta_file}: required_packages_version has no 'medsegzoo' entry; a downloaded bundle must "
            "say which medsegzoo version to install (e.g. \"required_packages_version\": {\"medsegzoo\": \"0.1.0\"})"
        )
    return meta


def bundle_files(bundle_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """The files a bundle zip carries, as sorted ``(path inside the bundle, file)`` pairs.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        POSIX relative paths (``configs/train.json``, ``models/model.pt``, ...) and their files
        (:data:`PACKED_FOLDERS`, :data:`PACKED_FILES`, :data:`MODEL_FILES` under ``models/``);
        symbolic links are followed only when they point inside the bundle.

    Raises:
        LayoutError: a link inside the bundle points outside it.
    """
    root = Path(bundle_dir).resolve()
    found: list[tuple[str, Path]] = []

    def add(path: Path) -> None:
        real = path.resolve()
        if root not in real.parents:
            raise LayoutError(f"{path}: links outside the bundle {root}; refusing to pack it")
        found.append((path.relative_to(root).as_posix(), path))

    for folder in PACKED_FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_NAMES and not d.startswith(".")]
            for fname in filenames:
                if fname in SKIPPED_NAMES or fname.startswith(".") or fname.endswith(SKIPPED_SUFFIXES):
                    continue
                add(Path(dirpath) / fname)
    for fname in PACKED_FILES:
        if (root / fname).is_file():
            add(root / fname)
    for fname in MODEL_FILES:
        if (root / MODELS_DIR / fname).is_file():
            add(root / MODELS_DIR / fname)
    return sorted(found, key=lambda item: item[0])


def _zip_info(arcname: str, is_dir: bool) -> zipfile.ZipInfo:
    """A ZipInfo with the fixed timestamp, Unix permissions and compression of every entry."""
    info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, so that external_attr means mode bits on every platform
    info.external_attr = (DIR_MODE if is_dir else FILE_MODE) << 16
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    # ZipFile.open(info, "w") takes the level from the entry (writestr sets it the same way);
    # Python 3.13 renamed the attribute
    setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", COMPRESS_LEVEL)
    return info


def write_reproducible_zip(entries: Sequence[tuple[str, Path | bytes]], zip_path: str | os.PathLike,
                           top: str) -> list[str]:
    """Write ``entries`` under the folder ``top`` into ``zip_path`` (atomically, reproducibly).

    Args:
        entries: ``(relative POSIX path, file or content)`` pairs.
        zip_path: destination zip.
        top: the single top-level folder of every entry.

    Returns:
        The entry names in the order written (folder entries first, then files, sorted).
    """
    names: list[str] = []
    folders = {top + "/"}
    for rel, _ in entries:
        parts = rel.split("/")[:-1]
        folders.update(top + "/" + "/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
    ) as archive:
        for folder in sorted(folders):
            archive.writestr(_zip_info(folder, is_dir=True), b"")
            names.append(folder)
        for rel, content in sorted(entries, key=lambda item: item[0]):
            arcname = f"{top}/{rel}"
            info = _zip_info(arcname, is_dir=False)
            if isinstance(content, bytes):  # written by the pack (stamped metadata, large_files.yml)
                archive.writestr(info, content)
            else:
                # streamed, not read whole: the size known up front picks zip64 for > 2 GiB files
                # as writestr would, and deflate gives the same bytes however its input is chunked
                info.file_size = content.stat().st_size
                with open(content, "rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, BLOCK_BYTES)
            names.append(arcname)
    return names


@dataclass(frozen=True)
class BundlePlan:
    """What packing one bundle will write, decided (and checked) before anything is written.

    Attributes:
        name: bundle name.
        version: bundle version.
        entries: zip entries, ``(path inside the bundle, file or generated content)``.
        large: files served beside the zip, ``(path inside the bundle, file)``.
    """

    name: str
    version: str
    entries: tuple[tuple[str, Path | bytes], ...]
    large: tuple[tuple[str, Path], ...]

    @property
    def key(self) -> str:
        """The index key ``<name>_v<version>``."""
        return index_key(self.name, self.version)


def json_bytes(obj: Any) -> bytes:
    """JSON as the bundles' configs are formatted: 4-space indent, key order kept, one final newline."""
    return (json.dumps(obj, indent=4) + "\n").encode("utf-8")


def large_file_url(key: str, rel: str, base_url: str) -> str:
    """The URL of a large file of bundle ``key`` when the zoo folder is served at ``base_url``."""
    return f"{base_url.rstrip('/')}/{key}{LARGE_FILES_SUFFIX}/{rel}"


def large_files_yaml(entries: Sequence[tuple[str, str, str]]) -> bytes:
    """``large_files.yml`` as the model zoo's bundles carry it, for ``(path, url, sha256)`` entries."""
    lines = ["large_files:"]
    for rel, url, sha256 in entries:
        # JSON strings are YAML double-quoted scalars: any path or URL is quoted safely
        lines += [f"  - path: {json.dumps(rel)}", f"    url: {json.dumps(url)}",
                  f"    hash_val: {json.dumps(sha256)}", '    hash_type: "sha256"']
    return ("\n".join(lines) + "\n").encode("utf-8")


def plan_bundle(
    bundle_dir: str | os.PathLike,
    base_url: str | None = None,
    file_limit: int = ZOO_FILE_LIMIT_BYTES,
    medsegzoo_version: str | None = None,
    pip_requirement: str | None = None,
) -> BundlePlan:
    """Decide what packing a bundle writes, checking everything first.

    Args:
        bundle_dir: the bundle folder.
        base_url: URL the zoo folder is served at (needed when a file exceeds ``file_limit``).
        file_limit: largest file (bytes) a zip carries; larger ones are served beside it.
        medsegzoo_version: the medsegzoo version the packed metadata names (default: installed).
        pip_requirement: the pip requirement of medsegzoo written to ``pip_requirements``
            (the served wheel's URL), or None.

    Returns:
        The plan; sizes of the large files are not hashed yet (see :func:`pack_bundle`).

    Raises:
        LayoutError, DataValidationError: see :func:`read_bundle_metadata` and
            :func:`bundle_files`; a file above the limit without ``base_url``; a
            ``large_files.yml`` in the bundle folder; a package the metadata names that is
            not installed here.
    """
    bundle_dir = Path(bundle_dir)
    name = bundle_dir.resolve().name
    meta = read_bundle_metadata(bundle_dir)
    version = str(meta["version"])
    meta_file = bundle_dir / METADATA_FILE
    own = sorted(p.name for p in bundle_dir.glob("large_files.*"))
    if own:
        raise DataValidationError(
            f"{bundle_dir / own[0]}: a source bundle carries no large_files file; `medsegzoo zoo pack` writes it "
            "for the files above the zoo's size limit (remove it)"
        )
    stamped = stamp_versions(meta, {PROJECT: medsegzoo_version} if medsegzoo_version else None, source=str(meta_file))
    if pip_requirement:
        stamped["pip_requirements"] = [pip_requirement]
    entries: list[tuple[str, Path | bytes]] = []
    large: list[tuple[str, Path]] = []
    for rel, path in bundle_files(bundle_dir):
        if rel == METADATA_FILE:
            entries.append((rel, json_bytes(stamped)))
        elif path.stat().st_size > file_limit:
            large.append((rel, path))
        else:
            entries.append((rel, path))
    if large and not base_url:
        rel, path = large[0]
        raise DataValidationError(
            f"{path}: {path.stat().st_size / 1e6:.1f} MB is above the model zoo's limit of {file_limit / 1e6:g} MB per file, "
            f"so it is served beside the zip and named in {LARGE_FILES_NAME} by an absolute URL: pack with --base-url "
            "(the URL the zoo folder will be served at)"
        )
    return BundlePlan(name, version, tuple(entries), tuple(large))


def pack_bundle(
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    base_url: str | None = None,
    file_limit: int = ZOO_FILE_LIMIT_BYTES,
    medsegzoo_version: str | None = None,
    pip_requirement: str | None = None,
) -> PackedBundle:
    """Pack one bundle into ``out_dir/<name>_v<version>.zip`` plus ``<zip>.sha256``.

    Files above ``file_limit`` are copied to ``out_dir/<name>_v<version>_files/<path>`` and
    named in the zip's ``large_files.yml`` (URL under ``base_url``, SHA-256).

    Args:
        bundle_dir: the bundle folder (its name is the bundle name).
        out_dir: the zoo folder (created).
        base_url: URL the zoo folder is served at (required when a file is above the limit).
        file_limit: largest file (bytes) the zip carries.
        medsegzoo_version: medsegzoo version named in the packed metadata (default: installed).
        pip_requirement: pip requirement of medsegzoo for ``pip_requirements`` (or None).

    Returns:
        The packed bundle (paths and checksums).

    Raises:
        LayoutError, DataValidationError: see :func:`plan_bundle`.
    """
    plan = plan_bundle(bundle_dir, base_url, file_limit, medsegzoo_version, pip_requirement)
    entries = list(plan.entries)
    if plan.large:
        assert base_url is not None  # plan_bundle refused it otherwise
        listed = []
        for rel, path in plan.large:
            served = Path(out_dir) / f"{plan.key}{LARGE_FILES_SUFFIX}" / rel
            with atomic_path(served) as part:
                shutil.copyfile(path, part)
            served.chmod(PUBLISHED_MODE)
            listed.append((rel, large_file_url(plan.key, rel, base_url), file_digest(served, "sha256")))
        entries.append((LARGE_FILES_NAME, large_files_yaml(listed)))
    zip_path = Path(out_dir) / f"{plan.key}.zip"
    members = write_reproducible_zip(entries, zip_path, top=plan.name)
    digests = file_digests(zip_path, ("sha1", "sha256"))
    # the `sha256sum -c` format: "<hex>  <file name>"
    sha_file = atomic_write_text(zip_path.with_name(zip_path.name + ".sha256"), f"{digests['sha256']}  {zip_path.name}\n")
    for path in (zip_path, sha_file):
        path.chmod(PUBLISHED_MODE)
    return PackedBundle(plan.name, plan.version, zip_path, digests["sha1"], digests["sha256"], tuple(members),
                        tuple(rel for rel, _ in plan.large))


def find_bundles(bundles_dir: str | os.PathLike) -> list[Path]:
    """Bundle folders (those with ``configs/``) in ``bundles_dir``, sorted by name.

    Raises:
        LayoutError: the folder does not exist or holds no bundle.
    """
    root = Path(bundles_dir)
    if not root.is_dir():
        raise LayoutError(f"{root}: bundles folder does not exist")
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "configs").is_dir())
    if not found:
        raise LayoutError(f"{root}: no bundle folder (a folder with configs/) inside")
    return found


def source_url(zip_name: str, base_url: str | None) -> str:
    """The index ``source`` of a zip: ``<base_url>/<zip>`` or, without a base URL, the bare file
    name, which readers resolve against the index's own location (so the zoo folder can be
    served on any host and port)."""
    return f"{base_url.rstrip('/')}/{zip_name}" if base_url else zip_name


def pack_zoo(
    bundles_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    base_url: str | None = None,
    names: list[str] | None = None,
    project_dir: str | os.PathLike | None = None,
    file_limit: int = ZOO_FILE_LIMIT_BYTES,
) -> dict[str, dict[str, str]]:
    """Pack every bundle of ``bundles_dir`` into ``out_dir`` and write ``model_info.json``.

    Every bundle is checked before anything is written, so one bad ``metadata.json`` (or a
    large file without ``base_url``) stops the run with nothing half done. Entries of an
    existing index whose zip is still in ``out_dir`` are kept (older versions stay
    downloadable, as in the MONAI model zoo).

    Args:
        bundles_dir: folder of bundle folders.
        out_dir: zoo folder (created).
        base_url: URL the zoo folder will be served at (None: sources relative to the index;
            then no file may exceed ``file_limit``).
        names: pack only these bundles (default: all).
        project_dir: the medsegzoo project; its wheel is built into ``out_dir/packages/`` and
            named in every packed metadata (None: no wheel; the installed version is named).
        file_limit: largest file (bytes) a zip carries (the zoo's 25 MB by default).

    Returns:
        The index written.

    Raises:
        LayoutError, DataValidationError: a bundle cannot be packed (message names the file).
        UnknownNameError: a requested name is not a bundle folder (the message lists them).
        MedSegZooError: the wheel could not be built.
    """
    from medsegzoo.zoo.wheel import PROJECT_NAME, build_wheel, is_project  # wheel imports pack

    bundles = find_bundles(bundles_dir)
    if names:
        by_name = {b.name: b for b in bundles}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise UnknownNameError(f"{bundles_dir}: no bundle named {missing}; bundles here: {sorted(by_name)}")
        bundles = [by_name[n] for n in names]
    if project_dir is not None and not is_project(project_dir):
        raise LayoutError(f"{project_dir}: no pyproject.toml of the {PROJECT_NAME} project; cannot build its wheel")
    for bundle in bundles:  # check all first: refuse before writing anything
        plan_bundle(bundle, base_url, file_limit)
    out = Path(out_dir)
    check_output_path(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _remove_temporaries(out)
        index_file = out / INDEX_NAME
        index: dict[str, dict[str, str]] = {}
        if index_file.is_file():
            try:
                old = json.loads(index_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise DataValidationError(f"{index_file}: existing index is not valid JSON ({err})") from err
            index = {k: v for k, v in old.items() if (out / f"{k}.zip").is_file()}
        wheel = build_wheel(project_dir, out) if project_dir is not None else None
        for bundle in bundles:
            packed = pack_bundle(
                bundle, out, base_url=base_url, file_limit=file_limit,
                medsegzoo_version=wheel.version if wheel else None,
                pip_requirement=wheel.requirement(base_url) if wheel and base_url else None,
            )
            index[packed.key] = {
                "checksum": packed.sha1,  # MONAI's key (sha1), kept for its tools
                "sha256": packed.sha256,
                "source": source_url(packed.zip_path.name, base_url),
            }
        index = dict(sorted(index.items()))
        atomic_write_json(index_file, index).chmod(PUBLISHED_MODE)
    return index


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (released by the OS when the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, and no clean-up of others' temporaries either
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a second pack into the same zoo waits here
        yield
    finally:
        os.close(fd)


# hidden temporaries of atomic writes (".<file>.<random>.tmp<suffix>") of the files pack writes
_TEMPORARY = re.compile(r"\.(?P<target>.+\.zip|.+\.zip\.sha256|" + re.escape(INDEX_NAME) + r")\.[A-Za-z0-9_]+\.tmp(\..+)?")
# in the folders of large files and of the wheel, every temporary is one of pack's
_ANY_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp(\..+)?")


def _remove_temporaries(out: Path) -> None:
    """Remove what a killed pack left (called under the zoo lock: no live pack is writing)."""
    if os.name != "posix":
        return  # no lock there (see _locked): a live pack's temporaries may be among them
    from medsegzoo.zoo.wheel import PACKAGES_DIR  # wheel imports pack

    for path in out.iterdir():
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir() and (path.name == PACKAGES_DIR or path.name.endswith(LARGE_FILES_SUFFIX)):
            for dirpath, _, filenames in os.walk(path):
                for fname in filenames:
                    if _ANY_TEMPORARY.fullmatch(fname):
                        Path(dirpath, fname).unlink(missing_ok=True)
