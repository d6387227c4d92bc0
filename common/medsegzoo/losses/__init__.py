"""Losses of the four methods (partial-label, universal-model, TCSeg, nnU-Net).

Names are resolved lazily (PEP 562) so that ``import medsegzoo.losses`` stays cheap and a
bundle config (``"_target_": "medsegzoo.losses.TCTLoss"``) imports only the module it needs.
To add a loss, add one line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medsegzoo.losses' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
