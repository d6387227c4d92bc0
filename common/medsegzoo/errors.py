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
