"""Synthetic CT/MR phantoms written in the public data set layouts.

* :mod:`.anatomy` (package): organ geometry (RAS body coordinates), tissue table, random
  deformation; ``tissues`` (tissue and MR tables, class tuples), ``shapes`` (solids,
  structures, body frame, painting), ``abdomen``, ``left_atrium``, ``brain`` (the three
  anatomies) and ``lesions``.
* :mod:`.sites`: per-site acquisition (spacing, field of view, contrast phase, blur, noise,
  calibration, file orientation).
* :mod:`.generator`: :func:`make_phantom`, one case as a :class:`Phantom`.
* :mod:`.layouts` (package): :func:`write_phantom_dataset`, a whole data set in a public
  layout; the registry in its ``__init__``, ``base`` (:class:`~.layouts.LayoutSpec`,
  :class:`~.layouts.LayoutContext`), ``_writing`` (shared helpers) and one writer module per
  public layout, named like its reader in :mod:`medsegzoo.data.readers` (``mask_folders``
  for TotalSegmentator and AbdomenAtlas).
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Phantom": "medsegzoo.data.phantoms.generator",
    "make_phantom": "medsegzoo.data.phantoms.generator",
    "Site": "medsegzoo.data.phantoms.sites",
    "get_site": "medsegzoo.data.phantoms.sites",
    "list_phantom_layouts": "medsegzoo.data.phantoms.layouts",
    "write_phantom_dataset": "medsegzoo.data.phantoms.layouts",
}

__all__ = [
    "Phantom",
    "Site",
    "get_site",
    "list_phantom_layouts",
    "make_phantom",
    "write_phantom_dataset",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
