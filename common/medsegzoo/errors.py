"""Exceptions raised for bad user input.

Every error names the offending file (or data set, or config entry) and the problem, so
that a user pointing a bundle at their own collection can fix it without a debugger.
"""

from __future__ import annotations


class MedSegZooError(Exception):
    """Base class of all medsegzoo input errors."""


class UnknownNameError(MedSegZooError, KeyError):
    """A class, data set, layout or label system name that medsegzoo does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DataValidationError(MedSegZooError, ValueError):
    """An image, label or datalist entry that cannot be used as it is."""


class LayoutError(MedSegZooError, ValueError):
    """A data set folder that does not match the layout it was read as."""


class OutputError(MedSegZooError, ValueError):
    """An output path that cannot be written (a file in the way, no permission, a folder that
    holds something else), found before any work starts."""


def os_error_message(err: OSError, fallback_path: str | None = None) -> str:
    """One line ``"<path>: <reason>"`` for an :class:`OSError` (no traceback needed).

    Args:
        err: the error (``PermissionError``, ``FileExistsError``, a full disk, ...).
        fallback_path: the path to name when the error carries none (a failed ``write()``
            on an open file knows its reason but not its file name).

    Returns:
        The path(s) and the operating system's reason, e.g.
        ``"/data/out/per_case.csv: No space left on device"``.
    """
    reason = err.strerror or str(err) or type(err).__name__
    path = err.filename if err.filename is not None else fallback_path
    if path is None:
        return reason
    if err.filename2 is not None:
        return f"{path} -> {err.filename2}: {reason}"
    return f"{path}: {reason}"
