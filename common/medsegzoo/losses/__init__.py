"""Losses of the four methods (partial-label, universal-model, TCSeg, nnU-Net-style).

Names resolve lazily (see :mod:`medsegzoo.utils.lazy`).
To add a loss, add one line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "UniversalLoss": "medsegzoo.losses.universal",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
