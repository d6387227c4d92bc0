"""Reproducible bundle zips and the model-zoo index.

``pack_bundle`` writes ``<name>_v<version>.zip`` holding exactly one top-level folder named
after the bundle (``configs/``, ``docs/``, ``LICENSE`` and ``models/*.pt`` when present), the
zip's ``.sha256`` file, and returns its index entry; ``pack_zoo`` does it for every bundle of a
folder and writes ``model_info.json`` in the MONAI model-zoo format
(``{"<name>_v<version>": {"checksum": <sha1 of the zip>, "sha256": <sha256>, "source": <url>}}``:
MONAI's tools read the sha1 ``checksum``; medsegzoo downloads verify the ``sha256``).

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

INDEX_NAME = "model_info.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can store
FILE_MODE = 0o100644  # regular file, rw-r--r--
DIR_MODE = 0o040755  # directory, rwxr-xr-x
COMPRESS_LEVEL = 9
# what a bundle zip carries: recursive folders, single files, and the weights pattern
PACKED_FOLDERS = ("configs", "docs")
PACKED_FILES = ("LICENSE",)
WEIGHTS_GLOB = "models/*.pt"
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
    """

    name: str
    version: str
    zip_path: Path
    sha1: str
    sha256: str
    members: tuple[str, ...]

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
        POSIX relative paths (``configs/train.json``, ``models/model.pt``, ...) and their files;
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
    for weights in root.glob(WEIGHTS_GLOB):
        if weights.is_file():
            add(weights)
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


def write_reproducible_zip(entries: list[tuple[str, Path]], zip_path: str | os.PathLike, top: str) -> list[str]:
    """Write ``entries`` under the folder ``top`` into ``zip_path`` (atomically, reproducibly).

    Args:
        entries: ``(relative POSIX path, file)`` pairs.
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
        for rel, path in sorted(entries, key=lambda item: item[0]):
            arcname = f"{top}/{rel}"
            info = _zip_info(arcname, is_dir=False)
            # streamed, not read whole: the size known up front picks zip64 for > 2 GiB files as
            # writestr would, and deflate gives the same bytes however its input is chunked
            info.file_size = path.stat().st_size
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, BLOCK_BYTES)
            names.append(arcname)
    return names


def pack_bundle(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike) -> PackedBundle:
    """Pack one bundle into ``out_dir/<name>_v<version>.zip`` plus ``<zip>.sha256``.

    Args:
        bundle_dir: the bundle folder (its name is the bundle name).
        out_dir: the zoo folder (created).

    Returns:
        The packed bundle (paths and checksums).

    Raises:
        LayoutError, DataValidationError: see :func:`read_bundle_metadata` and :func:`bundle_files`.
    """
    bundle_dir = Path(bundle_dir)
    name = bundle_dir.resolve().name
    version = str(read_bundle_metadata(bundle_dir)["version"])
    zip_path = Path(out_dir) / f"{index_key(name, version)}.zip"
    members = write_reproducible_zip(bundle_files(bundle_dir), zip_path, top=name)
    digests = file_digests(zip_path, ("sha1", "sha256"))
    # the `sha256sum -c` format: "<hex>  <file name>"
    sha_file = atomic_write_text(zip_path.with_name(zip_path.name + ".sha256"), f"{digests['sha256']}  {zip_path.name}\n")
    for path in (zip_path, sha_file):
        path.chmod(PUBLISHED_MODE)
    return PackedBundle(name, version, zip_path, digests["sha1"], digests["sha256"], tuple(members))


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
) -> dict[str, dict[str, str]]:
    """Pack every bundle of ``bundles_dir`` into ``out_dir`` and write ``model_info.json``.

    Every bundle is checked before anything is written, so one bad ``metadata.json`` stops the
    run with nothing half done. Entries of an existing index whose zip is still in ``out_dir``
    are kept (older versions stay downloadable, as in the MONAI model zoo).

    Args:
        bundles_dir: folder of bundle folders.
        out_dir: zoo folder (created).
        base_url: URL the zoo folder will be served at (None: sources relative to the index).
        names: pack only these bundles (default: all).

    Returns:
        The index written.

    Raises:
        LayoutError, DataValidationError: a bundle cannot be packed (message names the file).
        UnknownNameError: a requested name is not a bundle folder (the message lists them).
    """
    bundles = find_bundles(bundles_dir)
    if names:
        by_name = {b.name: b for b in bundles}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise UnknownNameError(f"{bundles_dir}: no bundle named {missing}; bundles here: {sorted(by_name)}")
        bundles = [by_name[n] for n in names]
    for bundle in bundles:  # check all first: refuse before writing anything
        read_bundle_metadata(bundle)
        bundle_files(bundle)
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
        for bundle in bundles:
            packed = pack_bundle(bundle, out)
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


def _remove_temporaries(out: Path) -> None:
    """Remove what a killed pack left (called under the zoo lock: no live pack is writing)."""
    if os.name != "posix":
        return  # no lock there (see _locked): a live pack's temporaries may be among them
    for path in out.iterdir():
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
