"""Per-class mask files (TotalSegmentator, AbdomenAtlas) as one native label map.

Datalists of per-class-mask layouts carry ``"masks": {canonical class: file}`` instead of a
label map. :class:`LoadMasksd` loads them with MONAI's ``LoadImage`` (so the result has the
same orientation handling and metadata as an image loaded by ``LoadImaged``) and writes the
data set's native label map under the label key, after which every label transform of the
package (``ConvertLabelsd``, ...) applies unchanged.

Overlaps: masks are painted in the data set's native label order, so where two masks overlap
the class with the higher native value wins (TotalSegmentator's own multi-label export and
AbdomenAtlas' ``combined_labels.nii.gz`` behave the same way: the last class written wins).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.taxonomy import get_dataset

__all__ = ["LoadMasks", "LoadMasksd"]


class LoadMasks(Transform):
    """Load a ``{canonical class: mask file}`` mapping as a native label map.

    Args:
        dataset: data set whose native values the output uses; None: given per call.
        reader: MONAI image reader name or instance passed to ``LoadImage``.
    """

    def __init__(self, dataset: str | None = None, reader: Any = None) -> None:
        self.dataset = dataset
        self.loader = LoadImage(reader=reader, image_only=True)

    def __call__(self, masks: Mapping[str, str], dataset: str | None = None) -> MetaTensor:
        """Paint every mask with its class's native value.

        Args:
            masks: canonical class name -> mask file path.
            dataset: data set name (overrides the one given at construction).

        Returns:
            Integer label map (``uint8``, or ``int16`` when a value exceeds 255) with the
            first mask's metadata (affine, file name).

        Raises:
            UnknownNameError: a class the data set does not label, or no data set given.
            DataValidationError: no masks, or masks of different shapes (message names the file).
        """

        name = dataset or self.dataset
        if name is None:
            raise UnknownNameError(
                "LoadMasks needs the data set whose native values to use (dataset=...)"
            )
        spec = get_dataset(name)
        value_of = {cls: value for value, cls in spec.labels.items()}
        unknown = [cls for cls in masks if cls not in value_of]
        if unknown:
            raise UnknownNameError(
                f"masks {unknown} are not classes of data set {spec.name!r} ({', '.join(spec.classes)})"
            )
        if not masks:
            raise DataValidationError(f"no mask files to load (data set {spec.name!r})")
        dtype = torch.uint8 if max(value_of[c] for c in masks) <= 255 else torch.int16
        label: MetaTensor | None = None
        first = ""
        for cls in sorted(masks, key=value_of.__getitem__):
            mask = self.loader(masks[cls])
            if label is None:
                first = masks[cls]
                label = MetaTensor(torch.zeros(mask.shape, dtype=dtype), meta=mask.meta)
            elif tuple(mask.shape) != tuple(label.shape):
                raise DataValidationError(
                    f"{masks[cls]}: mask shape {tuple(mask.shape)} differs from {first}'s {tuple(label.shape)}"
                )
            label[torch.as_tensor(mask) > 0.5] = value_of[cls]
        assert label is not None
        return label


class LoadMasksd(MapTransform):
    """Dictionary form of :class:`LoadMasks`: ``d[keys]`` (mask mapping) -> ``d[label_key]``.

    Args:
        keys: key of the mask mapping in the datalist entry (``"masks"``).
        label_key: key the label map is written to.
        dataset: fixed data set; None reads it per case from ``d[dataset_key]``.
        dataset_key: entry field naming the case's data set.
        reader: MONAI image reader passed to ``LoadImage``.
        allow_missing_keys: leave entries without masks untouched (label-map cases mixed in).
    """

    def __init__(
        self,
        keys: KeysCollection = "masks",
        label_key: str = "label",
        dataset: str | None = None,
        dataset_key: str = "dataset",
        reader: Any = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key
        self.dataset = dataset
        self.dataset_key = dataset_key
        self.loader = LoadMasks(reader=reader)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.label_key] = self.loader(d[key], dataset=self.dataset or d.get(self.dataset_key))
        return d
