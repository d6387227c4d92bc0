"""Partial-label support: which classes of a label system a case is annotated for.

A partially labeled training set (KiTS labels kidneys, MSD Spleen the spleen, ...) must tell
the loss which output channels are supervised for each case. ``LabeledClassesMaskd`` turns
the datalist's ``labeled_classes`` list (canonical names, in the data set's own terms such as
``kidney``) into a multi-hot tensor over the label system's classes (``kidney`` ->
``kidney_left`` + ``kidney_right``). Lists of different lengths cannot be collated into a
batch; a fixed-length tensor can, so by default the list is replaced by the tensor in place
and MONAI's ``list_data_collate`` stacks it to ``(batch, num_classes)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from medsegzoo.errors import DataValidationError
from medsegzoo.taxonomy import canonical_name, get_label_system, labeled_classes, side_parts
from medsegzoo.taxonomy.convert import resolve_class

__all__ = ["ForegroundUnion", "ForegroundUniond", "LabeledClassesMask", "LabeledClassesMaskd"]


class LabeledClassesMask(Transform):
    """Multi-hot vector over a label system's classes from a list of labeled class names.

    Args:
        system: label system name ("tct5", "universal32", ...).
        include_background: prepend a channel for background (always 1), so the vector lines
            up with a softmax output of ``num_classes + 1`` channels.
        dtype: output dtype (float32 multiplies straight into per-class losses; bool works too).
    """

    def __init__(
        self, system: str, include_background: bool = False, dtype: torch.dtype = torch.float32
    ) -> None:
        self.system = get_label_system(system)
        self.include_background = include_background
        self.dtype = dtype

    def __call__(self, names: Iterable[str] | torch.Tensor) -> torch.Tensor:
        """Build the multi-hot vector.

        Args:
            names: labeled class names in any spelling, in the data set's own terms (a merged
                ``kidney`` marks both kidneys; a tumor whose organ is also listed marks the
                organ). A tensor is passed through (already converted).

        Returns:
            Tensor of shape ``(num_classes,)`` or ``(num_classes + 1,)``.

        Raises:
            UnknownNameError: a name that is no known class.
        """
        if isinstance(names, torch.Tensor):
            return names
        if isinstance(names, str):  # a lone string would iterate over characters
            names = [names]
        canonical = {canonical_name(n) for n in names}
        targets = frozenset(self.system.classes)
        hit: set[str] = set()
        for name in canonical:
            res = resolve_class(name, targets, canonical)
            if res is None:
                continue
            kind, cls = res
            hit.update(
                [cls] if kind == "direct" else [p for p in side_parts(cls) or () if p in targets]
            )
        vector = [1.0 if c in hit else 0.0 for c in self.system.classes]
        if self.include_background:
            vector.insert(0, 1.0)
        return torch.tensor(vector, dtype=self.dtype)


class LabeledClassesMaskd(MapTransform):
    """Dictionary form of :class:`LabeledClassesMask`.

    Args:
        keys: key(s) holding the labeled class list (the datalist's "labeled_classes").
        system: label system name.
        output_key: where to write the tensor; None replaces the list in place (so that
            batching never meets lists of different lengths).
        dataset_key: when a case has no class list, its data set (``d[dataset_key]``) gives
            one through :func:`medsegzoo.taxonomy.labeled_classes`.
        include_background: prepend an always-1 background channel.
        dtype: output dtype.
        allow_missing_keys: with a dataset entry, a missing list is derived from it; without,
            the case is skipped instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        system: str,
        output_key: str | None = None,
        dataset_key: str = "dataset",
        include_background: bool = False,
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)  # missing lists are handled below
        self.strict = not allow_missing_keys
        self.mask = LabeledClassesMask(system, include_background, dtype)
        self.output_key = output_key
        self.dataset_key = dataset_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if key in d:
                names = d[key]
            elif self.dataset_key in d:
                names = labeled_classes(str(d[self.dataset_key]), self.mask.system.name)
            elif self.strict:
                raise DataValidationError(
                    f"LabeledClassesMaskd: case {d.get('case_id', '?')!r} has neither {key!r} "
                    f"nor {self.dataset_key!r}"
                )
            else:
                continue
            d[self.output_key or key] = self.mask(names)
        return d


class ForegroundUnion(Transform):
    """One-channel mask of the voxels where any channel of a multi-hot label is set.

    MONAI's positive/negative patch sampler (``RandCropByPosNegLabeld`` through
    ``map_binary_to_indices``) reads a label with more than one channel as one-hot and drops
    channel 0 as background. A multi-hot label (one channel per class, no background channel)
    would lose its first class that way: with the universal32 order, spleen-only MSD Spleen
    cases would never count as foreground. Sampling on this union keeps every class.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        """``(C, *spatial)`` multi-hot label -> ``(1, *spatial)`` mask of the label's dtype.

        Raises:
            DataValidationError: a label without a channel axis.
        """
        if label.ndim < 2:
            raise DataValidationError(f"ForegroundUnion expects a (C, *spatial) label, got shape {tuple(label.shape)}")
        union = (label > 0).any(0, keepdims=True) if isinstance(label, np.ndarray) else (label > 0).any(0, keepdim=True)
        out, *_ = convert_to_dst_type(union, label, dtype=label.dtype)
        return out


class ForegroundUniond(MapTransform):
    """Dictionary form of :class:`ForegroundUnion`: writes the mask to ``output_key``.

    Args:
        keys: multi-hot label key (one key).
        output_key: key of the one-channel mask (use it as ``label_key`` of the sampler and
            drop it afterwards with ``DeleteItemsd``).
    """

    def __init__(self, keys: KeysCollection, output_key: str = "foreground", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ForegroundUniond takes one label key, got {self.keys}")
        self.output_key = output_key
        self.union = ForegroundUnion()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.union(d[key])
        return d


class MaskUnlabeledChannelsd(MapTransform):
    """Fill the label channels of classes the case does not label with ``ignore_value``.

    Args:
        keys: multi-hot label key(s) ``(K, *spatial)``.
        mask_key: key of the ``(K,)`` multi-hot labeled-class tensor
            (:class:`~medsegzoo.transforms.LabeledClassesMaskd` output).
        ignore_value: -1 for the training loss; 0 for validation Dice with ``ignore_empty``.
    """

    def __init__(
        self, keys: KeysCollection, mask_key: str = "labeled_classes", ignore_value: float = -1.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.ignore_value = ignore_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        labeled = torch.as_tensor(d[self.mask_key]).bool()
        for key in self.key_iterator(d):
            label = d[key]
            if labeled.shape[0] != label.shape[0]:
                raise DataValidationError(
                    f"case {d.get('case_id', '?')!r}: {labeled.shape[0]} labeled-class flags for a "
                    f"{label.shape[0]}-channel label"
                )
            out = torch.as_tensor(label).float().clone()  # a MetaTensor keeps its meta data
            out[~labeled] = self.ignore_value
            d[key] = out
        return d


class SelectChannelsd(MapTransform):
    """Keep the channels of named classes from a multi-hot label or labeled-class vector.

    Args:
        keys: keys of ``(C, ...)`` tensors whose channels follow ``system``'s classes.
        system: label system of the channels.
        classes: class names to keep, in output order.
    """

    def __init__(self, keys: KeysCollection, system: str, classes: Sequence[str], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        names = get_label_system(system).classes
        wanted = [canonical_name(c) for c in classes]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataValidationError(f"classes {missing} are not in label system {system!r}")
        self.index = [names.index(c) for c in wanted]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key][self.index]
        return d
