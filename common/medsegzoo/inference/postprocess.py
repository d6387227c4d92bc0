"""Post-processing of sigmoid-per-class outputs (CLIP-Driven Universal Model, REFERENCE.md section 2).

Steps, in order, on the ``(K, *spatial)`` output of one image:

1. threshold: ``sigmoid(logit) > 0.5`` per class (one-vs-all, classes may overlap);
2. paired organs (lungs, kidneys): the union of the left and right masks keeps its two largest
   connected components and is split into left/right by components
   (:func:`medsegzoo.taxonomy.split_left_right`: in RAS the component with the smaller mean
   world x is the left one), so a network confusing the sides still yields two clean organs;
3. every other organ keeps its largest connected component;
4. lesions (kidney/liver/pancreas tumors, kidney cyst) are kept only inside their parent organ
   dilated by a margin, which removes the false positives that hurt patient-level specificity;
5. output as per-class masks and/or one label map in the label system's values (overlapping
   organs go to the most probable one; lesions are painted on top of organs).

``UniversalPostprocess`` / ``UniversalPostprocessd`` wrap this for bundle configs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy
from scipy import ndimage

from medsegzoo.errors import DataValidationError

# lesion = a tumor/cyst edge in the taxonomy's class graph (one definition, the taxonomy's)
from medsegzoo.taxonomy import canonical_name, get_label_system, is_lesion, split_left_right

__all__ = [
    "DEFAULT_LESION_PARENTS",
    "DEFAULT_PAIRED_ORGANS",
    "UniversalPostprocess",
    "UniversalPostprocessd",
    "largest_components",
    "masks_to_label_map",
    "postprocess_class_masks",
]

# lesion -> organs it must lie in (after dilation)
DEFAULT_LESION_PARENTS: dict[str, tuple[str, ...]] = {
    "kidney_tumor": ("kidney_left", "kidney_right"),
    "kidney_cyst": ("kidney_left", "kidney_right"),
    "liver_tumor": ("liver",),
    "pancreas_tumor": ("pancreas",),
}
# (left, right) pairs split by components
DEFAULT_PAIRED_ORGANS: tuple[tuple[str, str], ...] = (("lung_left", "lung_right"), ("kidney_left", "kidney_right"))
def largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    """Keep the ``count`` largest 26-connected components of a boolean mask.

    MONAI's ``get_largest_connected_component_mask`` needs scikit-image (not a dependency
    here); scipy's labelling does the same job.

    Args:
        mask: boolean array.
        count: number of components to keep.

    Returns:
        Boolean array of the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    components, found = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if found <= count:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = np.argsort(-sizes, kind="stable")[:count]
    return np.isin(components, keep)


def _split_pair(
    left: np.ndarray, right: np.ndarray, affine: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    union = left | right
    if not union.any():
        return left, right
    union = largest_components(union, 2)
    return split_left_right(union, affine)


def postprocess_class_masks(
    masks: np.ndarray,
    class_names: Sequence[str],
    *,
    largest_component: bool = True,
    split_pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRED_ORGANS,
    lesion_parents: Mapping[str, Sequence[str]] | None = None,
    lesion_margin_voxels: int = 3,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Clean thresholded per-class masks (steps 2-4 of the module docstring).

    Args:
        masks: boolean ``(K, *spatial)``.
        class_names: canonical names of the K channels.
        largest_component: keep the largest component of each organ (lesions keep all).
        split_pairs: (left, right) organ pairs to split by components.
        lesion_parents: lesion -> parent organs (default :data:`DEFAULT_LESION_PARENTS`);
            lesions whose parents are not among the classes are left as they are.
        lesion_margin_voxels: dilation of the parent organ, in voxels.
        affine: voxel-to-world RAS affine for the left/right split (None: array in RAS).

    Returns:
        Boolean ``(K, *spatial)``.

    Raises:
        DataValidationError: channel count differs from the class list.
    """
    masks = np.asarray(masks).astype(bool)
    names = [canonical_name(n) for n in class_names]
    if masks.shape[0] != len(names):
        raise DataValidationError(f"{masks.shape[0]} output channels but {len(names)} class names")
    index = {n: i for i, n in enumerate(names)}
    out = masks.copy()
    paired: set[str] = set()
    for left_name, right_name in split_pairs:
        if left_name in index and right_name in index:
            li, ri = index[left_name], index[right_name]
            out[li], out[ri] = _split_pair(out[li], out[ri], affine)
            paired.update((left_name, right_name))
    if largest_component:
        for i, name in enumerate(names):
            if name in paired or is_lesion(name) or not out[i].any():
                continue
            out[i] = largest_components(out[i])
    parents = DEFAULT_LESION_PARENTS if lesion_parents is None else lesion_parents
    structure = ndimage.generate_binary_structure(out.ndim - 1, 1)
    for lesion, organs in parents.items():
        present = [index[o] for o in organs if o in index]
        if lesion not in index or not present:
            continue
        parent = np.any(out[present], axis=0)
        if lesion_margin_voxels > 0 and parent.any():
            parent = ndimage.binary_dilation(parent, structure, iterations=lesion_margin_voxels)
        out[index[lesion]] &= parent
    return out


def masks_to_label_map(
    masks: np.ndarray,
    class_names: Sequence[str],
    system: str = "universal32",
    probabilities: np.ndarray | None = None,
) -> np.ndarray:
    """One label map from per-class masks in a label system's values.

    Args:
        masks: boolean ``(K, *spatial)``.
        class_names: canonical names of the K channels (all must be in ``system``, unless
            ``system`` is None: then channel i gets value i + 1).
        system: label system whose values are written; None numbers channels 1..K.
        probabilities: ``(K, *spatial)``; overlapping organs go to the most probable one
            (None: the later channel wins).

    Returns:
        ``uint8`` (or ``uint16`` for more than 255 values) array of the spatial shape.

    Raises:
        DataValidationError: a class not in ``system``.
    """
    names = [canonical_name(n) for n in class_names]
    if system is None:
        values = list(range(1, len(names) + 1))
    else:
        label_system = get_label_system(system)
        lookup = dict(zip(label_system.classes, label_system.values, strict=True))
        missing = [n for n in names if n not in lookup]
        if missing:
            raise DataValidationError(f"classes {missing} are not in label system {system!r}")
        values = [lookup[n] for n in names]
    dtype = np.uint8 if max(values) < 256 else np.uint16
    label = np.zeros(masks.shape[1:], dtype=dtype)
    organs = [i for i, n in enumerate(names) if not is_lesion(n)]
    lesions = [i for i, n in enumerate(names) if is_lesion(n)]
    if organs:
        organ_masks = masks[organs]
        if probabilities is not None:
            score = np.where(organ_masks, probabilities[organs], -np.inf)
        else:
            score = np.where(organ_masks, np.arange(len(organs), dtype=float).reshape(-1, *(1,) * (masks.ndim - 1)), -np.inf)
        winner = np.argmax(score, axis=0)
        any_organ = organ_masks.any(axis=0)
        label[any_organ] = np.asarray(values, dtype=dtype)[np.asarray(organs)][winner[any_organ]]
    for i in lesions:
        label[masks[i]] = values[i]
    return label


class UniversalPostprocess(Transform):
    """Sigmoid, threshold, clean-up and label map for one image's ``(K, *spatial)`` logits.

    Args:
        class_names: canonical names of the K channels.
        system: label system of the label map values ("universal32").
        output: "label_map" (``(1, *spatial)``), "masks" (``(K, *spatial)`` uint8) or "both"
            (returns a dict with ``label_map`` and ``masks``).
        threshold: probability threshold (0.5).
        from_logits: apply a sigmoid first.
        largest_component / lesion_margin_voxels / split_pairs / lesion_parents: see
            :func:`postprocess_class_masks`.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        system: str | None = "universal32",
        output: str = "label_map",
        threshold: float = 0.5,
        from_logits: bool = True,
        largest_component: bool = True,
        lesion_margin_voxels: int = 3,
        split_pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRED_ORGANS,
        lesion_parents: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if output not in ("label_map", "masks", "both"):
            raise DataValidationError(f"output must be 'label_map', 'masks' or 'both', got {output!r}")
        self.class_names = [canonical_name(n) for n in class_names]
        self.system = system
        self.output = output
        self.threshold = threshold
        self.from_logits = from_logits
        self.largest_component = largest_component
        self.lesion_margin_voxels = lesion_margin_voxels
        self.split_pairs = [tuple(p) for p in split_pairs]
        self.lesion_parents = lesion_parents

    def __call__(self, pred: Any) -> Any:
        """Post-process one image.

        Args:
            pred: ``(K, *spatial)`` tensor/array (a MetaTensor keeps its meta data and affine,
                which also decides left from right).

        Returns:
            Label map ``(1, *spatial)``, masks ``(K, *spatial)``, or a dict of both; MetaTensor
            in, MetaTensor out.
        """
        affine = convert_to_numpy(pred.affine) if isinstance(pred, MetaTensor) else None
        values = torch.as_tensor(pred).detach().float()
        prob = torch.sigmoid(values) if self.from_logits else values
        prob_np = prob.cpu().numpy()
        masks = postprocess_class_masks(
            prob_np > self.threshold,
            self.class_names,
            largest_component=self.largest_component,
            split_pairs=self.split_pairs,
            lesion_parents=self.lesion_parents,
            lesion_margin_voxels=self.lesion_margin_voxels,
            affine=affine,
        )
        result: dict[str, Any] = {}
        if self.output in ("label_map", "both"):
            label = masks_to_label_map(masks, self.class_names, self.system, prob_np)[None]
            result["label_map"] = _like(label, pred)
        if self.output in ("masks", "both"):
            result["masks"] = _like(masks.astype(np.uint8), pred)
        if self.output == "both":
            return result
        return result["label_map"] if self.output == "label_map" else result["masks"]


def _like(array: np.ndarray, reference: Any) -> Any:
    tensor = torch.as_tensor(array)
    if isinstance(reference, MetaTensor):
        return MetaTensor(tensor, meta=dict(reference.meta))  # meta carries the affine
    return tensor


class UniversalPostprocessd(MapTransform):
    """Dictionary form of :class:`UniversalPostprocess`.

    Args:
        keys: key(s) of the ``(K, *spatial)`` logits.
        masks_key: with ``output="both"``, the key that receives the per-class masks (the
            label map replaces ``keys``).
        **kwargs: :class:`UniversalPostprocess` arguments.
    """

    def __init__(self, keys: KeysCollection, masks_key: str = "pred_masks", allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.post = UniversalPostprocess(**kwargs)
        self.masks_key = masks_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = self.post(d[key])
            if isinstance(out, dict):
                d[key] = out["label_map"]
                d[self.masks_key] = out["masks"]
            else:
                d[key] = out
        return d
