"""Read a model-zoo index (``model_info.json``) and resolve a bundle name and version.

MONAI's own index functions read only GitHub and sort versions as strings (``0.10.0`` before
``0.9.0``); this reader takes a local path, a ``file://`` or an ``http(s)://`` URL and sorts
versions with :class:`packaging.version.Version`.
"""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packaging.version import InvalidVersion, Version

from medsegzoo.errors import DataValidationError, UnknownNameError

URL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class IndexEntry:
    """One bundle version of an index.

    Attributes:
        name: bundle name.
        version: version string.
        checksum: hex SHA-1 of the zip (MONAI's index key).
        source: where the zip is (absolute URL or path, already resolved against the index).
        sha256: hex SHA-256 of the zip (None in indexes written before medsegzoo added it, or
            by other tools).
    """

    name: str
    version: str
    checksum: str
    source: str
    sha256: str | None = None


def is_url(location: str) -> bool:
    """True for ``http://``, ``https://`` and ``file://`` locations."""
    return urllib.parse.urlparse(str(location)).scheme in ("http", "https", "file")


def read_location(location: str | os.PathLike, timeout: float = URL_TIMEOUT_S) -> bytes:
    """The bytes at a local path or a URL (for small files: the index)."""
    with open_location(location, timeout=timeout)[0] as stream:
        return stream.read()


def open_location(
    location: str | os.PathLike, offset: int = 0, timeout: float = URL_TIMEOUT_S
) -> tuple[BinaryIO, bool]:
    """A binary stream of a local path or a URL, from byte ``offset`` when the source allows it.

    Args:
        location: path, ``file://`` or ``http(s)://`` URL.
        offset: first byte wanted (to resume a download). HTTP asks with a ``Range`` header; a
            server that ignores it answers from byte 0.
        timeout: seconds an HTTP connection or read may stall.

    Returns:
        ``(stream, resumed)``: ``resumed`` is True when the stream starts at ``offset``, False
        when it starts at byte 0 (``offset`` 0, or a source that cannot resume). Close the stream.
    """
    text = str(location)
    if not is_url(text):
        handle = open(text, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        if offset:
            handle.seek(offset)
        return handle, offset > 0
    request = urllib.request.Request(text, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if offset and err.code == 416:  # nothing after offset: the part may be complete already
            err.close()
            return io.BytesIO(b""), True
        raise
    # 206 with a Content-Range starting at offset is a resumed body; anything else starts at 0
    resumed = offset > 0 and response.status == 206 and str(response.headers.get("Content-Range", "")).startswith(f"bytes {offset}-")
    if offset > 0 and response.status == 206 and not resumed:
        response.close()
        return open_location(location, 0, timeout)
    return response, resumed


def resolve_source(source: str, index_location: str | os.PathLike) -> str:
    """Resolve an entry's ``source`` against the index's location (relative names allowed)."""
    if is_url(source) or Path(source).is_absolute():
        return source
    base = str(index_location)
    if is_url(base):
        return urllib.parse.urljoin(base, source)
    return str(Path(base).resolve().parent / source)


def split_key(key: str) -> tuple[str, str]:
    """``"<name>_v<version>"`` -> ``(name, version)``.

    Raises:
        DataValidationError: the key has no ``_v<version>`` suffix.
    """
    name, sep, version = key.rpartition("_v")
    if not sep or not name:
        raise DataValidationError(f"index key {key!r} is not '<name>_v<version>'")
    return name, version


def read_index(location: str | os.PathLike) -> list[IndexEntry]:
    """Read an index and return its entries with sources resolved.

    Args:
        location: path or URL of ``model_info.json``.

    Returns:
        The entries, in the index's order.

    Raises:
        DataValidationError: the index cannot be read, is not JSON or has malformed entries.
    """
    try:
        raw = read_location(location)
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{location}: cannot read the zoo index ({err})") from err
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataValidationError(f"{location}: the zoo index is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DataValidationError(f"{location}: the zoo index must be a JSON object of '<name>_v<version>' keys")
    entries = []
    for key, value in data.items():
        name, version = split_key(key)
        if not isinstance(value, dict) or not value.get("checksum") or not value.get("source"):
            raise DataValidationError(f"{location}: entry {key!r} needs 'checksum' and 'source'")
        sha256 = value.get("sha256")
        entries.append(IndexEntry(name, version, str(value["checksum"]).lower(),
                                  resolve_source(str(value["source"]), location),
                                  str(sha256).lower() if sha256 else None))
    return entries


def _version_key(version: str) -> tuple[int, Version | str]:
    # versions that do not parse sort below every valid one (and among themselves as text)
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def sorted_versions(entries: list[IndexEntry], name: str) -> list[str]:
    """The versions of ``name`` in the index, oldest first (0.9.0 before 0.10.0)."""
    return sorted((e.version for e in entries if e.name == name), key=_version_key)


def resolve_entry(entries: list[IndexEntry], name: str, version: str | None = None) -> IndexEntry:
    """Pick ``name`` at ``version`` (default: the latest by version order).

    Raises:
        UnknownNameError: the name or the version is not in the index; the message lists what is.
    """
    names = sorted({e.name for e in entries})
    if name not in names:
        raise UnknownNameError(f"bundle {name!r} is not in the zoo index; it has: {', '.join(names) or 'nothing'}")
    versions = sorted_versions(entries, name)
    wanted = versions[-1] if version is None else version
    for entry in entries:
        if entry.name == name and _version_key(entry.version) == _version_key(wanted):
            return entry
    raise UnknownNameError(f"bundle {name!r} has no version {version!r} in the zoo index; versions: {', '.join(versions)}")
