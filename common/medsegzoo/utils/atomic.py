"""Atomic file and folder writes: write to a temporary beside the target, then rename.

A crash or an exception while writing never leaves a half-written output behind: either
the old file (or none) or the complete new file exists. :func:`atomic_dir` does the same for
a folder of files (a report): it is written into a staging folder that is renamed into place
when complete. :func:`check_output_path` finds an unwritable output before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medsegzoo.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Args:
        path: final destination.
        suffix: suffix of the temporary file. Defaults to the full suffix of ``path`` (so
            that writers choosing a format by extension, e.g. ``.nii.gz``, still work).

    Yields:
        The temporary path to write to. It is removed if the block raises.

    Raises:
        OSError: the write failed; an error that names no file (a full disk met by a
            library's ``write()``) is raised again naming ``path``.
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix is None:
            suffix = "".join(path.suffixes)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            # mkstemp creates 0600; give the file the permissions a plain open() would have
            os.chmod(tmp_path, 0o666 & ~_current_umask())
            os.replace(tmp_path, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an :class:`OSError` that names no file as the same error naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        # OSError(errno, ...) builds the matching subclass (PermissionError, ...)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 4) -> Path:
    """Serialise ``obj`` as JSON (4-space indent, like MONAI datalists) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def check_output_path(
    path: str | os.PathLike, *, folder: bool = False, may_replace: Callable[[Path], bool] | None = None
) -> Path:
    """Check that ``path`` can be written, before any work starts.

    Args:
        path: the output file or folder.
        folder: the output is a folder (a report); otherwise a file.
        may_replace: for a folder that exists and is not empty: whether its content may be
            replaced (e.g. it holds an earlier report). None: any folder may be replaced.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: a file (or folder) stands where the output or one of its parent folders
            should be, a parent folder is not writable, or a folder holds something that
            ``may_replace`` refuses. The message names the path and the problem.
    """
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.name in ("", "..") or path.absolute() == Path.cwd():
        # replacing the folder one stands in (or its parent) would pull it away under the user
        raise OutputError(f"{path}: name a new {kind} (e.g. {path / 'report'}), not the current folder or its parent")
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            raise OutputError(f"{path}: exists and is a file; the output is a folder, choose another path")
        if not folder and path.is_dir():
            raise OutputError(f"{path}: exists and is a folder; the output is a file, choose another path")
        if folder and may_replace is not None and any(path.iterdir()) and not may_replace(path):
            raise OutputError(
                f"{path}: folder exists and holds files that are not an earlier output of this command; "
                "choose a new or empty folder (nothing was overwritten)"
            )
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{path}: cannot create the {kind}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot create the {kind}: no permission to write in {existing}")
    return path


# staging/old folders of atomic_dir: ".<name>.<pid>.<random>.staging" beside the target
def _stage_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[A-Za-z0-9_]+\.(staging|old)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_stages(path: Path) -> None:
    """Remove staging folders a killed run left beside ``path`` (never those of a live process)."""
    pattern = _stage_pattern(path.name)
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, may_replace: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; rename it onto ``path`` when the block succeeds.

    The output is checked (:func:`check_output_path`) and the staging folder created on entry,
    so an unwritable output fails before the work the block does. An existing ``path`` is
    replaced as a whole only after the new folder is complete; an exception or a kill leaves
    the old folder (or nothing) at ``path``, never a mix. Staging folders of killed runs are
    removed by the next run for the same ``path``.

    Args:
        path: the output folder.
        may_replace: see :func:`check_output_path`.

    Yields:
        The staging folder to write into (removed if the block raises).

    Raises:
        OutputError: the output cannot be written (see :func:`check_output_path`).
        OSError: creating or renaming the folders failed (the error names the path).
    """
    path = check_output_path(path, folder=True, may_replace=may_replace)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_stages(path)
        prefix = f".{path.name}.{os.getpid()}."
        staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=".staging", dir=path.parent))
    try:
        yield staging
        with _naming(path):
            # mkdtemp creates 0700; give the folder the permissions a plain mkdir would have
            os.chmod(staging, 0o777 & ~_current_umask())
            if not path.exists():
                os.rename(staging, path)
                return
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=path.parent))
            os.rename(path, old / path.name)  # between these two renames nothing is at path
            os.rename(staging, path)
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        # name the file as the user knows it (report/per_case.csv), not its hidden staging path
        inside = str(err.filename or "")
        if err.errno is None or not (inside == str(staging) or inside.startswith(f"{staging}{os.sep}")):
            raise
        raise OSError(err.errno, err.strerror or str(err), f"{path}{inside[len(str(staging)):]}") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
