"""Load datalist volumes that MONAI's ``LoadImaged`` cannot read: HDF5 (the LA release).

The LA release used by the semi-supervised literature (UA-MT and successors, TCSeg) stores
each case as ``mri_norm2.h5`` with datasets ``image`` and ``label``; a medsegzoo datalist
names that one file as both the case's ``image`` and its ``label``, and the field name
selects the dataset (see :mod:`medsegzoo.data.formats`). :class:`LoadVolumed` reads such
keys through :func:`medsegzoo.data.formats.read_volume` into a channel-first MONAI
``MetaTensor`` whose affine carries the case's ``spacing`` (the files have no geometry), and
hands every other key to MONAI's ``LoadImaged`` unchanged (NIfTI, NRRD, DICOM series).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform

from medsegzoo.data.formats import H5_SUFFIXES, read_volume

__all__ = ["LoadVolumed"]


class LoadVolumed(MapTransform):
    """``LoadImaged`` that also reads HDF5 datasets named after the key.

    Args:
        keys: keys of the paths to load (``image``, ``label``).
        spacing_key: datalist entry with the voxel spacing in mm of HDF5 volumes (identity when absent).
        allow_missing_keys: skip absent keys (unlabeled cases have no ``label``).
        load_kwargs: more arguments of MONAI's ``LoadImaged`` (``image_only=True`` and
            ``ensure_channel_first=True`` are the defaults here).
    """

    def __init__(self, keys: KeysCollection, spacing_key: str = "spacing", allow_missing_keys: bool = False, **load_kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        load_kwargs.setdefault("image_only", True)
        load_kwargs.setdefault("ensure_channel_first", True)
        self.spacing_key = spacing_key
        self.loader = LoadImaged(keys, allow_missing_keys=True, **load_kwargs)

    def _load_h5(self, path: str, field: str, spacing: Sequence[float] | None) -> MetaTensor:
        volume = read_volume(path, field=field, spacing=spacing)
        affine = np.asarray(volume.affine, dtype=np.float64)
        array = np.asarray(volume.array)
        if array.dtype.kind in "ui" and field != "image":
            array = array.astype(np.int64)
        meta = {"filename_or_obj": path, "original_affine": affine.copy(), "spatial_shape": np.asarray(array.shape)}
        return MetaTensor(torch.as_tensor(array[None].astype(np.float32 if field == "image" else array.dtype)), affine=torch.as_tensor(affine), meta=meta)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        h5_keys = [k for k in self.key_iterator(d) if str(d[k]).lower().endswith(H5_SUFFIXES) and Path(str(d[k])).is_file()]
        loaded = {k: self._load_h5(str(d[k]), str(k), d.get(self.spacing_key)) for k in h5_keys}
        rest = self.loader({k: v for k, v in d.items() if k not in loaded})
        rest.update(loaded)
        return rest
