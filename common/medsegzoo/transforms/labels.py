"""Label conversion and validation as MONAI transforms.

``ConvertLabels`` / ``ConvertLabelsd`` wrap :func:`medsegzoo.taxonomy.convert_label_map`;
``ValidateLabels`` / ``ValidateLabelsd`` check that a label map only holds values of its data
set's map and name the file (``meta["filename_or_obj"]``) when it does not. The dictionary
forms take the source data set either fixed (``source=``) or per case from the datalist's
``dataset`` entry, so one pipeline serves a mix of partially labeled data sets.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_numpy

from medsegzoo.errors import DataValidationError
from medsegzoo.taxonomy import (
    convert_label_map,
    convert_to_multi_hot,
    get_label_system,
    validate_label_values,
)

__all__ = ["ConvertLabels", "ConvertLabelsd", "ValidateLabels", "ValidateLabelsd"]


def _filename(label: Any) -> str | None:
    """The source file of a MONAI-loaded array, for error messages."""
    meta = getattr(label, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return None


def _affine(label: Any) -> np.ndarray | None:
    affine = getattr(label, "affine", None)
    return None if affine is None else convert_to_numpy(affine)


def _spatial(label: np.ndarray, context: str | None) -> tuple[np.ndarray, bool]:
    """Drop MONAI's single channel: (1, H, W, D) -> (H, W, D)."""
    if label.ndim == 4:
        if label.shape[0] != 1:
            raise DataValidationError(
                f"{context or 'label'}: expected one channel (1, H, W, D), got shape {label.shape}"
            )
        return label[0], True
    return label, False


class ConvertLabels(Transform):
    """Convert a label map from a data set's (or system's) values to another system's values.

    The array may be channel-first ``(1, H, W, D)`` or ``(H, W, D)``. When it is a
    ``MetaTensor`` its affine decides left from right for organs that must be split;
    otherwise the array is taken to be in RAS orientation.

    Args:
        source: data set or label system of the input values (None: give it per call).
        target: label system (or data set) of the output values.
        split_left_right: split merged organs into left/right (see ``convert_label_map``).
        multi_hot: output one channel per target class, ``(C, H, W, D)``, with each organ
            channel including its tumors (``convert_to_multi_hot``; sigmoid models).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        source: str | None,
        target: str,
        split_left_right: bool = True,
        multi_hot: bool = False,
    ) -> None:
        get_label_system(target)  # fail at construction, not at the first case
        if source is not None:
            get_label_system(source)
        self.source = source
        self.target = target
        self.split_left_right = split_left_right
        self.multi_hot = multi_hot

    def __call__(self, label: Any, source: str | None = None) -> Any:
        """Convert one label array.

        Args:
            label: numpy array, tensor or MetaTensor.
            source: overrides the source given at construction.

        Returns:
            Same type (and, where it can hold the values, dtype) as ``label``; shape
            ``(C, H, W, D)`` with ``multi_hot``.

        Raises:
            DataValidationError: values not in the source's map (naming the file).
        """
        context = _filename(label)
        source = source or self.source
        if not source:
            raise DataValidationError(
                f"{context or 'label'}: ConvertLabels needs a source data set"
            )
        array, had_channel = _spatial(convert_to_numpy(label), context)
        if self.multi_hot:
            out = convert_to_multi_hot(
                array, source, self.target, affine=_affine(label), context=context
            )
            return convert_to_dst_type(out, label, dtype=label.dtype)[0]
        out = convert_label_map(
            array,
            source,
            self.target,
            split_left_right=self.split_left_right,
            affine=_affine(label),
            context=context,
        )
        if had_channel:
            out = out[None]
        return convert_to_dst_type(out, label, dtype=_output_dtype(label, out))[0]


def _output_dtype(label: Any, out: np.ndarray) -> Any:
    """Keep the input dtype unless it cannot hold the converted values."""
    dtype = label.dtype
    if isinstance(label, torch.Tensor):
        if dtype.is_floating_point:
            return dtype
        limit = torch.iinfo(dtype).max if dtype != torch.bool else 1
    else:
        if np.issubdtype(dtype, np.floating):
            return dtype
        limit = np.iinfo(dtype).max if dtype != np.bool_ else 1
    return dtype if out.size == 0 or int(out.max()) <= limit else out.dtype


class _PerCaseSourceMap(MapTransform):
    """Dictionary transform whose source data set is fixed or read per case.

    Args:
        keys: label key(s).
        source: fixed source data set; None reads it per case from ``d[dataset_key]``.
        dataset_key: datalist entry naming the case's data set.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source: str | None = None,
        dataset_key: str = "dataset",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if source is not None:
            get_label_system(source)  # fail at construction, not at the first case
        self.source = source
        self.dataset_key = dataset_key

    def _apply(self, label: Any, source: str, key: Hashable) -> Any:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = self.source
        if not source:
            if self.dataset_key not in d:
                raise DataValidationError(
                    f"{type(self).__name__}: no source data set given and the case has no "
                    f"{self.dataset_key!r} entry (keys: {sorted(map(str, d))})"
                )
            source = str(d[self.dataset_key])
        for key in self.key_iterator(d):
            d[key] = self._apply(d[key], source, key)
        return d


class ConvertLabelsd(_PerCaseSourceMap):
    """Dictionary form of :class:`ConvertLabels`.

    Args:
        keys: label key(s).
        target: label system of the output.
        source: fixed source data set; None reads it per case from ``d[dataset_key]``.
        dataset_key: datalist entry naming the case's data set.
        split_left_right: split merged organs into left/right.
        multi_hot: one channel per target class, organs including their tumors.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        target: str,
        source: str | None = None,
        dataset_key: str = "dataset",
        split_left_right: bool = True,
        multi_hot: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, source, dataset_key, allow_missing_keys)
        self.converter = ConvertLabels(source, target, split_left_right, multi_hot)

    def _apply(self, label: Any, source: str, key: Hashable) -> Any:
        return self.converter(label, source=source)


class ValidateLabels(Transform):
    """Raise when a label map holds values outside its data set's map; pass it on unchanged.

    Args:
        source: data set (or label system) of the values.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, source: str) -> None:
        get_label_system(source)
        self.source = source

    def __call__(self, label: Any, source: str | None = None) -> Any:
        """Check one label array.

        Args:
            label: numpy array, tensor or MetaTensor (its file name is used in errors).
            source: overrides the source given at construction.

        Returns:
            ``label`` itself.

        Raises:
            DataValidationError: naming the file, the values and the data set.
        """
        validate_label_values(
            convert_to_numpy(label), source or self.source, context=_filename(label)
        )
        return label


class ValidateLabelsd(_PerCaseSourceMap):
    """Dictionary form of :class:`ValidateLabels` (labels pass through unchanged).

    Args:
        keys: label key(s).
        source: fixed data set; None reads it per case from ``d[dataset_key]``.
        dataset_key: datalist entry naming the case's data set.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def _apply(self, label: Any, source: str, key: Hashable) -> Any:
        context = _filename(label) or f"key {key!r}"
        validate_label_values(convert_to_numpy(label), source, context=context)
        return label
