"""Data: image I/O, the datalist schema and its validation, readers of the public layouts,
synthetic phantoms written in those layouts.

Names resolve lazily (:mod:`medsegzoo.utils.lazy`): ``import medsegzoo.data`` stays cheap and a
bundle config that needs only ``load_split`` does not import ITK.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    # datalist schema (medsegzoo.data.datalist)
    "SPLIT_KEYS": "medsegzoo.data.datalist",
    "load_datalist": "medsegzoo.data.datalist",
    "load_split": "medsegzoo.data.datalist",
    "make_case": "medsegzoo.data.datalist",
    "random_split": "medsegzoo.data.datalist",
    "save_datalist": "medsegzoo.data.datalist",
    # validation
    "Problem": "medsegzoo.data.validation",
    "validate_case": "medsegzoo.data.validation",
    "validate_datalist": "medsegzoo.data.validation",
    # readers of the public layouts
    "build_datalist": "medsegzoo.data.readers",
    "get_reader": "medsegzoo.data.readers",
    "list_layouts": "medsegzoo.data.readers",
    "write_datalist": "medsegzoo.data.readers",
    # per-class mask files -> native label map (TotalSegmentator, AbdomenAtlas)
    "LoadMasks": "medsegzoo.data.masks",
    "LoadMasksd": "medsegzoo.data.masks",
    # volume formats (NIfTI header-first, HDF5, DICOM series, PNG slice stacks)
    "read_volume": "medsegzoo.data.formats",
    # image I/O and phantoms (phantoms helper's modules)
    "load_volume": "medsegzoo.data.io",
    "save_volume": "medsegzoo.data.io",
    "make_phantom": "medsegzoo.data.phantoms",
    "write_phantom_dataset": "medsegzoo.data.phantoms",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
