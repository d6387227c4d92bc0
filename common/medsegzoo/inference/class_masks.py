"""Write one binary mask file per class next to a predicted label map.

Some users want per-organ files (``case_liver.nii.gz``) rather than one label map; the
bundles add :class:`SaveClassMasksd` after ``SaveImaged`` when a config switch asks for it.
Each mask is saved with MONAI's :class:`~monai.transforms.SaveImage`, so names, folders and
geometry follow exactly the label map's (``<image stem>_<postfix>_<class>.nii.gz``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, SaveImage

__all__ = ["SaveClassMasksd"]


class SaveClassMasksd(MapTransform):
    """Save a binary uint8 mask per class of a label-map prediction.

    Args:
        keys: key(s) of the label map (MetaTensor, channel first, one channel).
        class_names: names of values 1..N (a label system's classes).
        output_dir: folder of the masks.
        output_postfix: postfix before the class name (the label map's, e.g. "seg").
        output_ext: file extension.
        separate_folder: as in :class:`~monai.transforms.SaveImage`.
        data_root_dir: as in :class:`~monai.transforms.SaveImage` (keeps input sub-folders).
        enabled: False makes the transform a no-op (a config switch).
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        output_dir: str,
        output_postfix: str = "seg",
        output_ext: str = ".nii.gz",
        separate_folder: bool = False,
        data_root_dir: str = "",
        enabled: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.enabled = enabled
        self.savers = [
            (
                value,
                SaveImage(
                    output_dir=output_dir,
                    output_postfix=f"{output_postfix}_{name}",
                    output_ext=output_ext,
                    output_dtype="uint8",
                    resample=False,
                    separate_folder=separate_folder,
                    data_root_dir=data_root_dir,
                    print_log=False,
                ),
            )
            for value, name in enumerate(class_names, start=1)
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            label = d[key]
            for value, saver in self.savers:
                saver((label == value).to(torch.uint8))
        return d
