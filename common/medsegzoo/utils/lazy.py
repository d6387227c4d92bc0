"""Lazy re-exports for package ``__init__`` modules (PEP 562).

``medsegzoo.networks`` and ``medsegzoo.losses`` re-export names from many modules, some of them
heavy (open_clip, MONAI's Swin UNETR). Resolving names on first access keeps ``import
medsegzoo.networks`` cheap and lets a bundle config import only the module it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` resolving ``exports`` on first use.

    Args:
        package: dotted name of the package (for error messages).
        exports: public name -> dotted name of the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
