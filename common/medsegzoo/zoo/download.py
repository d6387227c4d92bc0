"""Checksum-verified download and safe extraction of a bundle zip.

The zip is streamed in 1 MiB blocks to ``.<name>_v<version>.zip.part`` beside the target and
hashed on the way (no RAM for its size). It is used only once its SHA-256 (and the SHA-1 MONAI's
index key holds) match the index, so a partial file is never taken for a complete one; a part
left by an interrupted download is resumed (HTTP ``Range``, or a seek in a local file) or, when
the source cannot resume, restarted, and a resumed file that fails the check is fetched once
more from scratch. Every entry is checked (no absolute path, no ``..``, no link leaving the
bundle, everything inside the single top-level folder named after the bundle), extracted into
a staging folder next to the target and only then renamed into place. The files a
``large_files.yml`` names (weights above the model zoo's size limit, served beside the zip)
are fetched into the staging folder and verified against their hash before that rename. A
refused zip or large file leaves no file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from medsegzoo.errors import DataValidationError, LayoutError, MedSegZooError
from medsegzoo.utils import atomic_path
from medsegzoo.utils.atomic import atomic_dir
from medsegzoo.zoo.index import IndexEntry, open_location, read_index, resolve_entry
from medsegzoo.zoo.pack import BLOCK_BYTES, file_digest, index_key


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


def safe_extract(zip_path: str | os.PathLike, name: str, dest: str | os.PathLike, replace: bool = False,
                 fetch_large: bool = True) -> Path:
    """Extract the bundle ``name`` from a zip into ``dest/name`` atomically.

    Args:
        zip_path: the (already verified) zip.
        name: bundle name = the zip's single top-level folder.
        dest: folder that receives ``name/`` (created).
        replace: replace an existing ``dest/name`` (only once the new one is extracted).
        fetch_large: also fetch and verify the files its ``large_files.yml`` names
            (:func:`fetch_large_files`) before the bundle is renamed into place.

    Returns:
        ``dest/name``.

    Raises:
        LayoutError: a bad entry (see :func:`check_member`), no ``configs/metadata.json``, or
            ``dest/name`` exists already without ``replace``. Nothing is left behind.
        DataValidationError: a large file could not be fetched or verified. Nothing is left behind.
    """
    dest = Path(dest)
    target = dest / name
    if target.exists() and not replace:
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
        # staged beside the target and renamed: the bundle appears complete or not at all (a
        # replaced bundle stays until then; a killed run's stage is removed by the next one)
        with atomic_dir(target) as root:
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
                    shutil.copyfileobj(src, dst, BLOCK_BYTES)
            if fetch_large:
                fetch_large_files(root, label=f"{zip_name}: {name}")
    return target


LARGE_FILE_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")


def read_large_files(bundle_root: str | os.PathLike, label: str | None = None) -> list[dict[str, str]]:
    """The entries of a bundle's ``large_files.yml`` (or ``.yaml``/``.json``), checked.

    Args:
        bundle_root: the bundle folder.
        label: how errors name the bundle (default: the file's path).

    Returns:
        ``{"path", "url", "hash_val", "hash_type"}`` per file (none without such a file).

    Raises:
        DataValidationError: the file does not parse, an entry lacks ``path``, ``url`` or a
            hash (medsegzoo fetches verified files only), or names an unknown hash type.
        LayoutError: a path leaves the bundle folder.
    """
    import yaml

    root = Path(bundle_root)
    found = [root / n for n in LARGE_FILE_NAMES if (root / n).is_file()]
    if not found:
        return []
    source = found[0]
    where = f"{label}/{source.name}" if label else str(source)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataValidationError(f"{where}: cannot read it ({err})") from err
    items = data.get("large_files") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataValidationError(f"{where}: needs a 'large_files' list of {{path, url, hash_val, hash_type}}")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("path") or not item.get("url"):
            raise DataValidationError(f"{where}: large_files[{i}] needs 'path' and 'url'")
        hash_type = str(item.get("hash_type") or "md5").lower()  # MONAI's default hash type
        if not item.get("hash_val"):
            raise DataValidationError(
                f"{where}: large_files[{i}] ({item['path']}) has no hash_val; medsegzoo downloads verified files only "
                "(python -m monai.bundle download_large_files fetches it unverified)"
            )
        if hash_type not in HASH_TYPES:
            raise DataValidationError(f"{where}: large_files[{i}] hash_type {hash_type!r} is not one of {HASH_TYPES}")
        rel = str(item["path"])
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise LayoutError(f"{where}: large_files[{i}] path {rel!r} leaves the bundle folder; refusing it")
        entries.append({"path": "/".join(parts), "url": str(item["url"]), "hash_val": str(item["hash_val"]).lower(),
                        "hash_type": hash_type})
    return entries


def fetch_large_files(bundle_root: str | os.PathLike, label: str | None = None) -> list[Path]:
    """Fetch the files a bundle's ``large_files.yml`` names into the bundle, verified.

    Each file is streamed (1 MiB blocks) to a temporary file beside its target, hashed on the
    way, and renamed into place only when its hash matches. A file already there with the
    right hash is kept.

    Args:
        bundle_root: the bundle folder.
        label: how errors name the bundle.

    Returns:
        The files now in place.

    Raises:
        DataValidationError: see :func:`read_large_files`; a download failed or its hash differs
            (the message names the URL and the file; nothing is left of it).
    """

    root = Path(bundle_root)
    done = []
    for entry in read_large_files(root, label):
        target = root / entry["path"]
        if target.is_file() and file_digest(target, entry["hash_type"]) == entry["hash_val"]:
            done.append(target)
            continue
        digest = hashlib.new(entry["hash_type"])
        try:
            with atomic_path(target) as part:
                stream, _ = open_location(entry["url"])
                with stream, open(part, "wb") as dst:
                    for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
                        dst.write(block)
                        digest.update(block)
                if digest.hexdigest() != entry["hash_val"]:
                    raise DataValidationError(
                        f"{entry['url']}: {entry['hash_type']} checksum mismatch for {entry['path']} (large_files.yml says "
                        f"{entry['hash_val']}, file has {digest.hexdigest()}); nothing was kept"
                    )
        except (OSError, ValueError) as err:
            if isinstance(err, DataValidationError):
                raise
            raise DataValidationError(f"{entry['url']}: download of {entry['path']} failed ({err})") from err
        done.append(target)
    return done


def part_path(entry: IndexEntry, dest: str | os.PathLike) -> Path:
    """Where ``entry``'s zip is downloaded to before it is verified (kept to resume)."""
    return Path(dest) / f".{index_key(entry.name, entry.version)}.zip.part"


@contextlib.contextmanager
def _locked_part(path: Path) -> Iterator[BinaryIO]:
    """Open (create) ``path`` for reading and writing under an exclusive lock.

    A second download of the same zip into the same folder waits here; if the first removed
    the part meanwhile (a checksum mismatch), the second opens the new file, not the removed one.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        fcntl = None  # type: ignore[assignment]
    while True:
        handle = open(path, "a+b")  # noqa: SIM115 - closed below
        if fcntl is None:
            break
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield handle
    finally:
        handle.close()


def _stream_into(entry: IndexEntry, part: BinaryIO, digests: dict[str, Any]) -> bool:
    """Hash what ``part`` holds, append the rest of ``entry.source`` (or rewrite the part when
    the source cannot resume) and hash it; returns whether the existing bytes were kept."""
    part.seek(0)
    offset = 0
    for block in iter(lambda: part.read(BLOCK_BYTES), b""):  # what an interrupted run fetched
        offset += len(block)
        for digest in digests.values():
            digest.update(block)
    stream, resumed = open_location(entry.source, offset)
    with stream:
        if not resumed:
            part.seek(0)
            part.truncate()
            for name in digests:
                digests[name] = hashlib.new(name)
        for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
            part.write(block)  # a+b: always at the end
            for digest in digests.values():
                digest.update(block)
    part.flush()
    os.fsync(part.fileno())  # verified bytes must be on disk before they are trusted
    return resumed and offset > 0


def fetch_verified(entry: IndexEntry, dest: str | os.PathLike) -> Path:
    """Download ``entry.source`` to ``dest/.<name>_v<version>.zip.part`` and verify it.

    An existing part (an interrupted download) is resumed; the SHA-256 (when the index has it)
    and the SHA-1 must match. A resumed part that does not match is fetched once more from the
    start (the old part may come from a changed source).

    Returns:
        The verified zip (the caller removes it).

    Raises:
        DataValidationError: the download failed (the part is kept to resume) or a checksum
            differs (the part is removed).
    """
    part = part_path(entry, dest)
    expected = {"sha1": entry.checksum, **({"sha256": entry.sha256} if entry.sha256 else {})}
    with _locked_part(part) as handle:
        for attempt in range(2):
            digests = {name: hashlib.new(name) for name in expected}
            try:
                resumed = _stream_into(entry, handle, digests)
            except (OSError, ValueError) as err:
                raise DataValidationError(
                    f"{entry.source}: download failed ({err}); run the same command again to resume"
                ) from err
            wrong = {name: d.hexdigest() for name, d in digests.items() if d.hexdigest() != expected[name]}
            if not wrong:
                return part
            if resumed and attempt == 0:
                handle.seek(0)
                handle.truncate()  # the kept bytes may come from a changed source: start over
                continue
            part.unlink(missing_ok=True)
            name = "sha256" if "sha256" in wrong else "sha1"
            raise DataValidationError(
                f"{entry.source}: {name} checksum mismatch (index says {expected[name]}, file has {wrong[name]}); "
                "the zip was changed or the download is corrupt - nothing was extracted"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_and_extract(entry: IndexEntry, dest: Path, force: bool) -> Path:
    """Fetch and verify the zip into ``dest``, extract it, and remove the verified zip."""
    if (dest / entry.name).exists() and not force:  # before any download
        raise LayoutError(f"{dest / entry.name}: exists already; remove it (or pass --force) to download {entry.name} again")
    zip_file = fetch_verified(entry, dest)
    try:
        return safe_extract(zip_file, entry.name, dest, replace=force)
    finally:
        zip_file.unlink(missing_ok=True)


def download_bundle(
    name: str,
    index: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    version: str | None = None,
    force: bool = False,
) -> Path:
    """Download a bundle from a zoo index, verify it and extract it to ``bundle_dir/name``
    (with the files of its ``large_files.yml``, verified).

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
        DataValidationError: unreadable index, failed download (kept to resume: run the same
            command again), checksum mismatch (nothing kept), or a file of the bundle's
            ``large_files.yml`` that cannot be fetched or verified (nothing kept).
        LayoutError: unsafe or malformed zip, or an existing target without ``force``.
    """
    entry = resolve_entry(read_index(index), name, version)
    dest = Path(bundle_dir)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        target = _fetch_and_extract(entry, dest, force)
    except MedSegZooError:
        if created and not part_path(entry, dest).exists():
            with contextlib.suppress(OSError):
                dest.rmdir()  # only when empty: never delete what someone else put there
        raise
    return target
