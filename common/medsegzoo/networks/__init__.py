"""Networks of the four methods.

Names are resolved lazily (PEP 562) so that ``import medsegzoo.networks`` stays cheap and a
bundle config (``"_target_": "medsegzoo.networks.STUNet"``) imports only the module it needs.
To add a network, add one line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "STUNet": "medsegzoo.networks.stunet",
    "load_stunet_checkpoint": "medsegzoo.networks.stunet",
    "stunet_parameter_count": "medsegzoo.networks.stunet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medsegzoo.networks' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
