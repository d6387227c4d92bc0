"""Checksum-verified download and safe extraction of a bundle zip.

The zip is fetched to a temporary file, its SHA-1 compared with the index, every entry checked
(no absolute path, no ``..``, no link leaving the bundle, everything inside the single top-level
folder named after the bundle), extracted into a temporary folder next to the target and only
then renamed into place. A refused zip leaves no file behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from medsegzoo.errors import DataValidationError, LayoutError, MedSegZooError
from medsegzoo.zoo.index import IndexEntry, read_index, read_location, resolve_entry
from medsegzoo.zoo.pack import file_digest


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def check_member(info: zipfile.ZipInfo, top: str, archive: zipfile.ZipFile, zip_name: str) -> str:
    """Check one zip entry; return its path inside the bundle folder ("" for the folder itself).

    Raises:
        LayoutError: absolute path, ``..`` component, entry outside ``top/`` or a link whose
            target leaves the bundle folder.
    """
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
        raise LayoutError(f"{zip_name}: entry {name!r} has an absolute or non-POSIX path; refusing to extract")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayoutError(f"{zip_name}: entry {name!r} contains '..' (zip-slip); refusing to extract")
    if not parts or parts[0] != top:
        raise LayoutError(
            f"{zip_name}: entry {name!r} is outside the bundle folder {top + '/'!r}; a bundle zip holds "
            "exactly one top-level folder named after the bundle"
        )
    inner = "/".join(parts[1:])
    if _is_link(info):
        target = archive.read(info).decode("utf-8", "replace")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(inner), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise LayoutError(f"{zip_name}: link {name!r} -> {target!r} leaves the bundle folder; refusing to extract")
    return inner


def safe_extract(zip_path: str | os.PathLike, name: str, dest: str | os.PathLike) -> Path:
    """Extract the bundle ``name`` from a zip into ``dest/name`` atomically.

    Args:
        zip_path: the (already verified) zip.
        name: bundle name = the zip's single top-level folder.
        dest: folder that receives ``name/`` (created).

    Returns:
        ``dest/name``.

    Raises:
        LayoutError: a bad entry (see :func:`check_member`), no ``configs/metadata.json``, or
            ``dest/name`` exists already. Nothing is left behind.
    """
    dest = Path(dest)
    target = dest / name
    if target.exists():
        raise LayoutError(f"{target}: exists already; remove it (or pass --force) to download {name} again")
    zip_name = Path(zip_path).name
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise LayoutError(f"{zip_name}: not a zip file ({err})") from err
    with archive:
        infos = archive.infolist()
        checked = [(info, check_member(info, name, archive, zip_name)) for info in infos]
        if not any(inner == "configs/metadata.json" for _, inner in checked):
            raise LayoutError(f"{zip_name}: no {name}/configs/metadata.json; not a bundle zip")
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=dest))
        try:
            root = staging / name
            root.mkdir()
            for info, inner in checked:
                if not inner:
                    continue
                out = root / inner
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                if _is_link(info):
                    os.symlink(archive.read(info).decode("utf-8"), out)
                    continue
                with archive.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            os.rename(root, target)  # same file system: the bundle appears complete or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch_verified(entry: IndexEntry, dest: str | os.PathLike) -> Path:
    """Download ``entry.source`` to a temporary file in ``dest`` and verify its SHA-1.

    Returns:
        The temporary zip (the caller removes it).

    Raises:
        DataValidationError: the download failed or the checksum differs (file removed).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}_v{entry.version}.", suffix=".zip.part", dir=dest)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            tmp_path.write_bytes(read_location(entry.source))
        except (OSError, ValueError) as err:
            raise DataValidationError(f"{entry.source}: download failed ({err})") from err
        got = file_digest(tmp_path, "sha1")
        if got != entry.checksum:
            raise DataValidationError(
                f"{entry.source}: sha1 checksum mismatch (index says {entry.checksum}, file has {got}); "
                "the zip was changed or the download is corrupt - nothing was extracted"
            )
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


def _fetch_and_extract(entry: IndexEntry, dest: Path, force: bool) -> Path:
    """Fetch and verify the zip into ``dest``, extract it, and remove every temporary."""
    zip_tmp = fetch_verified(entry, dest)
    old: Path | None = None
    try:
        if force and (dest / entry.name).exists():
            old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old", dir=dest))
            os.rename(dest / entry.name, old / entry.name)
        try:
            return safe_extract(zip_tmp, entry.name, dest)
        except BaseException:
            if old is not None:  # a refused zip keeps the previous bundle in place
                os.rename(old / entry.name, dest / entry.name)
            raise
    finally:
        zip_tmp.unlink(missing_ok=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def download_bundle(
    name: str,
    index: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    version: str | None = None,
    force: bool = False,
) -> Path:
    """Download a bundle from a zoo index, verify it and extract it to ``bundle_dir/name``.

    Args:
        name: bundle name.
        index: path or URL of ``model_info.json``.
        bundle_dir: folder receiving the bundle folder.
        version: version to fetch (default: the latest by version order).
        force: replace an existing ``bundle_dir/name`` (only after the new one extracted).

    Returns:
        The extracted bundle folder.

    Raises:
        UnknownNameError: unknown name or version (the message lists the index's).
        DataValidationError: unreadable index, failed download or checksum mismatch.
        LayoutError: unsafe or malformed zip, or an existing target without ``force``.
    """
    entry = resolve_entry(read_index(index), name, version)
    dest = Path(bundle_dir)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        target = _fetch_and_extract(entry, dest, force)
    except MedSegZooError:
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()  # only when empty: never delete what someone else put there
        raise
    return target
