"""Post-processing of sigmoid-per-class outputs (CLIP-Driven Universal Model, REFERENCE.md section 2).

The defaults do what the official code does at inference (``threshold_organ`` and
``organ_post_process`` with the functions it calls, ``utils/utils.py`` of the public
repository); every step we did differently before is kept as an option. Steps, in order, on
the ``(K, *spatial)`` output of one image:

1. threshold: ``probability > threshold`` per class, one-vs-all (classes may overlap);
   ``class_thresholds`` gives per-class values (the official table holds 0.5 for all 32);
2. paired organs (lungs by default; kidneys too with :data:`PAIRED_ORGANS_WITH_KIDNEYS`): the
   union of the left and right masks keeps its two largest connected components and is split
   into left/right by components (:func:`medsegzoo.taxonomy.split_left_right`: in RAS the
   component with the smaller mean world x is the left one). With fewer than two components
   both sides are emptied, as the official lung step does (``pair_single_component="side"``
   gives a single component to the side of the volume centre it lies on instead);
3. every other organ keeps its largest 26-connected component, except the organs in
   ``keep_all_components`` (hepatic vessel and portal/splenic vein), which keep them all;
4. ``cut_below``: the portal/splenic vein loses every slice below the lowest slice of the
   (cleaned) pancreas (official ``PSVein_post_process``);
5. lesions with a parent in ``lesion_parents`` (kidney tumor, liver tumor) keep only the voxels
   inside the parent region: the union of the parents' thresholded masks keeps as many largest
   components as it has parents, then a binary closing and one binary dilation with a cube of
   ``parent_cube`` (5) voxels (``parent_region="dilate"``: ``lesion_margin_voxels`` dilations
   with the 6-neighbour element, our earlier rule). Other lesions stay as thresholded;
6. output as per-class masks and/or one label map in the label system's values (overlapping
   organs go to the most probable one; lesions are painted on top of organs).

docs/fidelity.md ("Universal model: post-processing") lists each step beside the official code.
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
    "DEFAULT_CLASS_THRESHOLDS",
    "DEFAULT_CUT_BELOW",
    "DEFAULT_KEEP_ALL_COMPONENTS",
    "DEFAULT_LESION_PARENTS",
    "DEFAULT_PAIRED_ORGANS",
    "EXTENDED_LESION_PARENTS",
    "PAIRED_ORGANS_WITH_KIDNEYS",
    "PAIR_SINGLE_COMPONENT",
    "PARENT_REGIONS",
    "PARENT_SOURCES",
    "UniversalPostprocess",
    "UniversalPostprocessd",
    "channel_thresholds",
    "largest_components",
    "masks_to_label_map",
    "postprocess_class_masks",
]

# lesion -> organs it must lie in; the official code filters kidney and liver tumors only
DEFAULT_LESION_PARENTS: dict[str, tuple[str, ...]] = {
    "kidney_tumor": ("kidney_left", "kidney_right"),
    "liver_tumor": ("liver",),
}
# our earlier, wider filtering: pancreas tumor and kidney cyst kept inside their organ too
EXTENDED_LESION_PARENTS: dict[str, tuple[str, ...]] = {
    **DEFAULT_LESION_PARENTS,
    "kidney_cyst": ("kidney_left", "kidney_right"),
    "pancreas_tumor": ("pancreas",),
}
# (left, right) pairs split by components: the official code splits the lungs only and keeps
# each kidney's largest component; the kidney pair-split is our earlier option
DEFAULT_PAIRED_ORGANS: tuple[tuple[str, str], ...] = (("lung_left", "lung_right"),)
PAIRED_ORGANS_WITH_KIDNEYS: tuple[tuple[str, str], ...] = (*DEFAULT_PAIRED_ORGANS, ("kidney_left", "kidney_right"))
# organs the official code leaves with all their components (vessel trees)
DEFAULT_KEEP_ALL_COMPONENTS: tuple[str, ...] = ("hepatic_vessel", "portal_vein_and_splenic_vein")
# structure -> organ: the structure loses the slices below the organ's lowest slice
DEFAULT_CUT_BELOW: dict[str, str] = {"portal_vein_and_splenic_vein": "pancreas"}
# class -> probability threshold where it is not ``threshold``; the official table
# (THRESHOLD_DIC) holds 0.5 for every class in every published commit
DEFAULT_CLASS_THRESHOLDS: dict[str, float] = {}

PAIR_SINGLE_COMPONENT: tuple[str, ...] = ("drop", "side")
PARENT_SOURCES: tuple[str, ...] = ("raw", "cleaned")
PARENT_REGIONS: tuple[str, ...] = ("close_dilate", "dilate")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataValidationError(f"{name} must be one of {list(choices)}, got {value!r}")


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    # 26-connectivity in 3D (full neighbourhood), as the official cc3d calls
    return ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))


def largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    """Keep the ``count`` largest 26-connected components of a boolean mask.

    MONAI's ``get_largest_connected_component_mask`` needs scikit-image (not a dependency
    here); scipy's labelling does the same job. Equal sizes keep the component met first in
    C (row-major) scan order.

    Args:
        mask: boolean array.
        count: number of components to keep.

    Returns:
        Boolean array of the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    components, found = _components(mask)
    if found <= count:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = np.argsort(-sizes, kind="stable")[:count]
    return np.isin(components, keep)


def channel_thresholds(
    class_names: Sequence[str], threshold: float = 0.5, class_thresholds: Mapping[str, float] | None = None
) -> np.ndarray:
    """Probability threshold of each channel (official ``threshold_organ``: one value per class).

    Args:
        class_names: names of the K channels.
        threshold: threshold of the classes without an entry in ``class_thresholds``.
        class_thresholds: class -> threshold (any synonym the taxonomy knows); None:
            :data:`DEFAULT_CLASS_THRESHOLDS`. Classes that are not channels are ignored.

    Returns:
        ``(K,)`` float array; a voxel is foreground where ``probability > value``.
    """
    table = DEFAULT_CLASS_THRESHOLDS if class_thresholds is None else class_thresholds
    per_class = {canonical_name(k): float(v) for k, v in table.items()}
    return np.array([per_class.get(canonical_name(n), float(threshold)) for n in class_names], dtype=float)


def _split_pair(
    left: np.ndarray, right: np.ndarray, affine: np.ndarray | None, single_component: str
) -> tuple[np.ndarray, np.ndarray]:
    union = left | right
    if not union.any():
        return left, right
    if single_component == "drop" and _components(union)[1] < 2:
        # the official lung step finds no second component and empties both sides
        empty = np.zeros_like(union)
        return empty, empty.copy()
    union = largest_components(union, 2)
    return split_left_right(union, affine)


def _superior_axis(ndim: int, affine: np.ndarray | None) -> tuple[int, int]:
    """Array axis closest to the patient's superior direction and its sign (+1: index grows upward)."""
    if affine is None or ndim != 3:
        return ndim - 1, 1  # RAS array: the last axis runs inferior -> superior
    row = np.asarray(affine, dtype=float)[2, :ndim]  # world S (RAS+) per voxel step
    axis = int(np.argmax(np.abs(row)))
    return axis, (1 if row[axis] >= 0 else -1)


def _cut_below(structure: np.ndarray, organ: np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """Remove the slices of ``structure`` below the lowest slice of ``organ``."""
    axis, sign = _superior_axis(structure.ndim, affine)
    present = np.nonzero(organ.any(axis=tuple(i for i in range(organ.ndim) if i != axis)))[0]
    out = structure.copy()
    index = [slice(None)] * structure.ndim
    # "below" is the low-index side when the axis runs upward, the high-index side otherwise
    index[axis] = slice(None, int(present.min())) if sign > 0 else slice(int(present.max()) + 1, None)
    out[tuple(index)] = False
    return out


def _parent_region(parent: np.ndarray, region: str, cube: int, margin: int) -> np.ndarray:
    """Grow the parent mask into the region a lesion may occupy, inside a padded bounding box.

    Closing then dilation with a cube of side ``cube`` reaches at most ``2 * (cube // 2)``
    voxels beyond the parent, so working in the parent's bounding box padded by that much
    (clipped at the array border, whose zero border value then acts as in the whole array)
    gives the whole-array result at a fraction of the cost.
    """
    reach = 2 * (cube // 2) + 1 if region == "close_dilate" else margin
    box = tuple(
        slice(max(0, int(idx.min()) - reach), min(size, int(idx.max()) + reach + 1))
        for idx, size in zip(np.nonzero(parent), parent.shape)
    )
    sub = parent[box]
    if region == "close_dilate":
        cube_structure = np.ones((cube,) * parent.ndim, dtype=bool)
        sub = ndimage.binary_closing(sub, structure=cube_structure)
        sub = ndimage.binary_dilation(sub, structure=cube_structure)
    elif margin > 0:
        sub = ndimage.binary_dilation(sub, ndimage.generate_binary_structure(parent.ndim, 1), iterations=margin)
    out = np.zeros_like(parent)
    out[box] = sub
    return out


def postprocess_class_masks(
    masks: np.ndarray,
    class_names: Sequence[str],
    *,
    largest_component: bool = True,
    split_pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRED_ORGANS,
    pair_single_component: str = "drop",
    keep_all_components: Sequence[str] = DEFAULT_KEEP_ALL_COMPONENTS,
    cut_below: Mapping[str, str] | None = None,
    lesion_parents: Mapping[str, Sequence[str]] | None = None,
    parent_source: str = "raw",
    parent_region: str = "close_dilate",
    parent_cube: int = 5,
    lesion_margin_voxels: int = 3,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Clean thresholded per-class masks (steps 2-5 of the module docstring).

    Args:
        masks: boolean ``(K, *spatial)``.
        class_names: canonical names of the K channels.
        largest_component: keep the largest component of each organ (lesions, paired organs
            and ``keep_all_components`` excepted).
        split_pairs: (left, right) organ pairs split by components (default: the lungs;
            :data:`PAIRED_ORGANS_WITH_KIDNEYS` adds the kidneys, which otherwise keep their
            largest component each).
        pair_single_component: a pair whose union has one component: ``"drop"`` (official:
            both sides empty) or ``"side"`` (the side of the volume centre it lies on).
        keep_all_components: organs that keep every component (default: hepatic vessel,
            portal/splenic vein; ``()`` for our earlier largest-component-everywhere rule).
        cut_below: structure -> organ; the structure loses the slices below the organ's
            lowest slice (None: :data:`DEFAULT_CUT_BELOW`; ``{}`` turns it off). Skipped when
            the organ is absent from the classes or empty.
        lesion_parents: lesion -> parent organs (None: :data:`DEFAULT_LESION_PARENTS`;
            :data:`EXTENDED_LESION_PARENTS` for our earlier wider set); lesions whose parents
            are not among the classes are left as they are.
        parent_source: ``"raw"`` (official: the union of the parents' thresholded masks,
            keeping as many largest components as there are parents) or ``"cleaned"`` (the
            parents after steps 2-4).
        parent_region: ``"close_dilate"`` (official: closing, then one dilation, both with a
            cube of ``parent_cube`` voxels) or ``"dilate"`` (``lesion_margin_voxels``
            dilations with the 6-neighbour element).
        parent_cube: side of the cube, in voxels (official: 5).
        lesion_margin_voxels: dilation iterations of ``parent_region="dilate"``.
        affine: voxel-to-world RAS affine for the left/right split and "below" (None: array
            in RAS, the last axis pointing up).

    Returns:
        Boolean ``(K, *spatial)``.

    Raises:
        DataValidationError: channel count differs from the class list, or an unknown option.
    """
    _check_choice("pair_single_component", pair_single_component, PAIR_SINGLE_COMPONENT)
    _check_choice("parent_source", parent_source, PARENT_SOURCES)
    _check_choice("parent_region", parent_region, PARENT_REGIONS)
    if parent_cube < 1:
        raise DataValidationError(f"parent_cube must be at least 1 voxel, got {parent_cube}")
    raw = np.asarray(masks).astype(bool)
    names = [canonical_name(n) for n in class_names]
    if raw.shape[0] != len(names):
        raise DataValidationError(f"{raw.shape[0]} output channels but {len(names)} class names")
    index = {n: i for i, n in enumerate(names)}
    out = raw.copy()
    paired: set[str] = set()
    for left_name, right_name in split_pairs:
        left_name, right_name = canonical_name(left_name), canonical_name(right_name)
        if left_name in index and right_name in index:
            li, ri = index[left_name], index[right_name]
            out[li], out[ri] = _split_pair(raw[li], raw[ri], affine, pair_single_component)
            paired.update((left_name, right_name))
    if largest_component:
        keep_all = {canonical_name(n) for n in keep_all_components}
        for i, name in enumerate(names):
            if name in paired or name in keep_all or is_lesion(name) or not out[i].any():
                continue
            out[i] = largest_components(out[i])
    for structure, organ in (DEFAULT_CUT_BELOW if cut_below is None else cut_below).items():
        structure, organ = canonical_name(structure), canonical_name(organ)
        if structure in index and organ in index and out[index[organ]].any():
            out[index[structure]] = _cut_below(out[index[structure]], out[index[organ]], affine)
    parents = DEFAULT_LESION_PARENTS if lesion_parents is None else lesion_parents
    for lesion, organs in parents.items():
        lesion = canonical_name(lesion)
        present = [index[o] for o in (canonical_name(o) for o in organs) if o in index]
        if lesion not in index or not present:
            continue
        if parent_source == "raw":
            parent = largest_components(np.any(raw[present], axis=0), len(present))
        else:
            parent = np.any(out[present], axis=0)
        if parent.any():
            parent = _parent_region(parent, parent_region, parent_cube, lesion_margin_voxels)
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
        threshold: probability threshold of the classes without their own (0.5); a voxel
            is foreground where ``probability > threshold``, as the official ``threshold_organ``.
        class_thresholds: class -> threshold (None: :data:`DEFAULT_CLASS_THRESHOLDS`, i.e.
            0.5 for every class, as the official table); see :func:`channel_thresholds`.
        from_logits: apply a sigmoid first.
        largest_component / split_pairs / pair_single_component / keep_all_components /
            cut_below / lesion_parents / parent_source / parent_region / parent_cube /
            lesion_margin_voxels: see :func:`postprocess_class_masks` (defaults: the
            official post-processing).
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
        class_thresholds: Mapping[str, float] | None = None,
        pair_single_component: str = "drop",
        keep_all_components: Sequence[str] = DEFAULT_KEEP_ALL_COMPONENTS,
        cut_below: Mapping[str, str] | None = None,
        parent_source: str = "raw",
        parent_region: str = "close_dilate",
        parent_cube: int = 5,
    ) -> None:
        if output not in ("label_map", "masks", "both"):
            raise DataValidationError(f"output must be 'label_map', 'masks' or 'both', got {output!r}")
        _check_choice("pair_single_component", pair_single_component, PAIR_SINGLE_COMPONENT)
        _check_choice("parent_source", parent_source, PARENT_SOURCES)
        _check_choice("parent_region", parent_region, PARENT_REGIONS)
        self.class_names = [canonical_name(n) for n in class_names]
        self.system = system
        self.output = output
        self.threshold = threshold
        self.thresholds = channel_thresholds(self.class_names, threshold, class_thresholds)
        self.from_logits = from_logits
        self.clean_up: dict[str, Any] = {
            "largest_component": largest_component,
            "split_pairs": [tuple(p) for p in split_pairs],
            "pair_single_component": pair_single_component,
            "keep_all_components": tuple(keep_all_components),
            "cut_below": cut_below,
            "lesion_parents": lesion_parents,
            "parent_source": parent_source,
            "parent_region": parent_region,
            "parent_cube": parent_cube,
            "lesion_margin_voxels": lesion_margin_voxels,
        }

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
        if prob_np.shape[0] != len(self.class_names):
            raise DataValidationError(f"{prob_np.shape[0]} output channels but {len(self.class_names)} class names")
        above = prob_np > self.thresholds.reshape(-1, *(1,) * (prob_np.ndim - 1))
        masks = postprocess_class_masks(above, self.class_names, affine=affine, **self.clean_up)
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
