"""Conversions of label maps between data sets and label systems.

Rules (docs/taxonomy.md explains them with examples):

1. A source class that the target has keeps its class (new label value).
2. Otherwise its parents are tried, most specific first: a part merges into its whole
   (lung lobes -> lung_left), a subtype into its broader class (prostate -> prostate_uterus),
   a lesion into its organ *only when the source labels that organ* (KiTS kidney tumor ->
   kidney; MSD Colon's colon tumor does not become a tumor-only "colon").
3. A merged organ (kidney, adrenal_gland, lung) whose left/right parts the target has is
   split by connected components (:func:`split_left_right`), together with everything that
   merged into it (a KiTS tumor goes to the side of its kidney).
4. Anything else becomes background 0.
5. A label value that is not in the source's map raises :class:`DataValidationError` naming
   the values and the source.

Where no split is needed, the conversion is one lookup table applied with ``np.take`` (one
pass over the volume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import ndimage

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.taxonomy.datasets import get_dataset, resolve_dataset_name
from medsegzoo.taxonomy.names import class_info, side_parts
from medsegzoo.taxonomy.systems import (
    UNIVERSAL_REFERENCE_LABELED,
    LabelSystem,
    get_label_system,
)

__all__ = [
    "ConversionPlan",
    "conversion_plan",
    "convert_label_map",
    "convert_to_multi_hot",
    "is_lesion",
    "labeled_classes",
    "resolve_class",
    "source_value_map",
    "split_left_right",
    "validate_label_values",
]

Resolution = tuple[Literal["direct", "split"], str]


def _covers(source_classes: frozenset[str], name: str) -> bool:
    """True when the source labels ``name`` itself or every part of it."""
    if name in source_classes:
        return True
    parts = side_parts(name)
    return parts is not None and all(_covers(source_classes, p) for p in parts)


def _search(
    name: str,
    target: frozenset[str],
    source: frozenset[str],
    accept: Callable[[str], Resolution | None],
    seen: frozenset[str] = frozenset(),
) -> Resolution | None:
    """Depth-first walk up the parents of ``name`` until ``accept`` says yes."""
    hit = accept(name)
    if hit is not None:
        return hit
    for parent, relation in class_info(name).parents:
        if parent in seen:
            continue
        if relation == "lesion" and not _covers(source, parent):
            continue
        hit = _search(parent, target, source, accept, seen | {name})
        if hit is not None:
            return hit
    return None


def resolve_class(
    name: str, target_classes: frozenset[str] | set[str], source_classes: frozenset[str] | set[str]
) -> Resolution | None:
    """Decide what a source class becomes in a target label system.

    A direct hit anywhere up the parent graph wins over a split, so a TotalSegmentator
    ``kidney_cyst_left`` becomes ``kidney_cyst`` in universal32 but ``kidney_left`` in tct5.

    Args:
        name: canonical source class.
        target_classes: canonical classes of the target.
        source_classes: every canonical class the source labels (decides lesion merges).

    Returns:
        ``("direct", target_class)``, ``("split", merged_class)`` when the voxels must be split
        into the merged class's left/right parts, or None (background).
    """
    target = frozenset(target_classes)
    source = frozenset(source_classes)

    def direct(n: str) -> Resolution | None:
        return ("direct", n) if n in target else None

    def split(n: str) -> Resolution | None:
        parts = side_parts(n)
        return ("split", n) if parts is not None and any(p in target for p in parts) else None

    return _search(name, target, source, direct) or _search(name, target, source, split)


def source_value_map(source: str) -> tuple[str, dict[int, str], dict[int, int]]:
    """Name, label values and raw-value aliases of a data set or label system.

    Args:
        source: data set or label system name.

    Returns:
        ``(name, {value: canonical class}, {raw value: native value})``.

    Raises:
        UnknownNameError: unknown name.
    """
    if resolve_dataset_name(source) is not None:
        spec = get_dataset(source)
        return spec.name, dict(spec.labels), dict(spec.value_aliases)
    system = get_label_system(source)
    return system.name, system.labels, {}


@dataclass(frozen=True)
class ConversionPlan:
    """A precomputed conversion from one label map to another.

    Attributes:
        source: source name.
        target: target name.
        lut: source value -> output code; ``invalid_code`` marks values not in the source.
        invalid_code: sentinel for values outside the source's map.
        splits: ``(code, merged class, left value, right value)``; 0 where the target lacks
            that side. Codes above the target's values, replaced after the split.
        dtype: output dtype.
        mapping: canonical source class -> what it became (target class, "split:<merged>",
            or None), for reports and docs.
    """

    source: str
    target: str
    lut: np.ndarray
    invalid_code: int
    splits: tuple[tuple[int, str, int, int], ...]
    dtype: np.dtype
    mapping: dict[str, str | None]


@lru_cache(maxsize=256)
def conversion_plan(
    source: str, target: str | LabelSystem, split_left_right: bool = True
) -> ConversionPlan:
    """Build (and cache) the lookup table converting ``source`` label maps to ``target``.

    Args:
        source: data set or label system name of the input labels.
        target: data set or label system (name or :class:`LabelSystem`) of the output labels.
        split_left_right: split merged organs into left/right parts the target has; when
            False they become background.

    Returns:
        The :class:`ConversionPlan`.

    Raises:
        UnknownNameError: unknown source or target.
    """
    source_name, values, aliases = source_value_map(source)
    target_system = target if isinstance(target, LabelSystem) else get_label_system(target)
    target_classes = frozenset(target_system.classes)
    source_classes = frozenset(values.values())

    max_target = max(target_system.values, default=0)
    merged_used: list[str] = []
    code_of: dict[int, int] = {}
    mapping: dict[str, str | None] = {}
    for value, name in values.items():
        res = resolve_class(name, target_classes, source_classes)
        if res is None or (res[0] == "split" and not split_left_right):
            code_of[value] = 0
            mapping[name] = None
        elif res[0] == "direct":
            code_of[value] = target_system.index_of(res[1])
            mapping[name] = res[1]
        else:
            if res[1] not in merged_used:
                merged_used.append(res[1])
            code_of[value] = max_target + 1 + merged_used.index(res[1])
            mapping[name] = f"split:{res[1]}"
    for raw, native in aliases.items():
        code_of[raw] = code_of[native]

    top_code = max_target + len(merged_used)
    dtype = np.dtype(np.uint8) if top_code < np.iinfo(np.uint8).max else np.dtype(np.uint16)
    invalid_code = int(np.iinfo(dtype).max)
    lut = np.full(max([0, *code_of]) + 1, invalid_code, dtype=dtype)
    lut[0] = 0
    for value, code in code_of.items():
        lut[value] = code
    lut.setflags(write=False)

    splits = []
    for j, merged in enumerate(merged_used):
        # resolve_class only returns 'split' for classes that have side parts
        left, right = side_parts(merged)  # type: ignore[misc]
        splits.append(
            (
                max_target + 1 + j,
                merged,
                target_system.index_of(left) if left in target_classes else 0,
                target_system.index_of(right) if right in target_classes else 0,
            )
        )
    return ConversionPlan(
        source=source_name,
        target=target_system.name,
        lut=lut,
        invalid_code=invalid_code,
        splits=tuple(splits),
        dtype=dtype,
        mapping=mapping,
    )


def _as_index_array(label: np.ndarray, source: str, context: str | None) -> np.ndarray:
    """Integer view/copy of a label array; raises on non-integral values."""
    label = np.asarray(label)
    if label.dtype == bool:
        return label.astype(np.uint8)
    if np.issubdtype(label.dtype, np.integer):
        return label
    if not np.issubdtype(label.dtype, np.floating):
        raise DataValidationError(
            f"{_where(source, context)}: label array has dtype {label.dtype}, expected integers"
        )
    if not np.all(np.isfinite(label)):
        raise DataValidationError(f"{_where(source, context)}: label array contains NaN or inf")
    as_int = label.astype(np.int64)
    if np.any(as_int != label):
        bad = np.unique(label[as_int != label])[:10]
        raise DataValidationError(
            f"{_where(source, context)}: label array holds non-integer values {bad.tolist()} "
            "(was it resampled with linear interpolation instead of nearest?)"
        )
    return as_int


def _where(source: str, context: str | None) -> str:
    return f"{context} (data set {source!r})" if context else f"label map of data set {source!r}"


def _raise_unknown_values(
    label: np.ndarray, bad_mask: np.ndarray, plan: ConversionPlan, context: str | None
) -> None:
    bad = np.unique(label[bad_mask])
    valid = sorted(int(v) for v in np.flatnonzero(plan.lut != plan.invalid_code))
    raise DataValidationError(
        f"{_where(plan.source, context)}: label values {bad[:20].tolist()} are not in the "
        "data set's "
        f"label map (valid values: {valid}). Is this the right data set or label system?"
    )


def validate_label_values(label: np.ndarray, source: str, *, context: str | None = None) -> None:
    """Check that every value of a label map belongs to the source's label map.

    Args:
        label: integer (or integral float) label array.
        source: data set or label system name.
        context: what the array is, e.g. its file name; used in the error message.

    Raises:
        DataValidationError: values outside the map (the message names them, the data set
            and ``context``), non-integer or non-finite values.
        UnknownNameError: unknown source.
    """
    plan = conversion_plan(source, source, False)
    _apply_lut(_as_index_array(label, plan.source, context), plan, context)


def _apply_lut(label: np.ndarray, plan: ConversionPlan, context: str | None) -> np.ndarray:
    if label.size == 0:
        return np.zeros(label.shape, dtype=plan.dtype)
    low, high = label.min(), label.max()
    if low < 0 or high >= plan.lut.size:
        _raise_unknown_values(label, (label < 0) | (label >= plan.lut.size), plan, context)
    if not plan.splits and np.array_equal(plan.lut, np.arange(plan.lut.size)):
        # source and target number every class alike (a bundle writing its own label system):
        # the range check above is the whole conversion. The gather below widens the indices to
        # int64 first and took 1.7 s on a 512 x 512 x 300 label map.
        return label.astype(plan.dtype, copy=True)
    out = np.take(plan.lut, label)
    invalid = out == plan.invalid_code
    if invalid.any():
        _raise_unknown_values(label, invalid, plan, context)
    return out


def convert_label_map(
    label: np.ndarray,
    source: str,
    target: str | LabelSystem,
    *,
    split_left_right: bool = True,
    affine: np.ndarray | None = None,
    context: str | None = None,
) -> np.ndarray:
    """Convert a label map from one data set / label system to another.

    Args:
        label: integer label array (any shape; 3D for left/right splitting), values from
            ``source``'s map. Integral floats (as loaded from NIfTI) are accepted.
        source: data set or label system name of ``label``.
        target: data set or label system name of the output.
        split_left_right: split merged organs into the target's left/right classes.
        affine: voxel-to-world (RAS+) affine of ``label``, used to tell left from right;
            None means the array is already in RAS orientation (axis 0 points to the
            patient's right).
        context: what the array is (e.g. its file name), for error messages.

    Returns:
        Label array of the same shape in the target's values (uint8, or uint16 for large
        systems).

    Raises:
        DataValidationError: values not in the source's map, non-integer values.
        UnknownNameError: unknown source or target.
    """
    plan = conversion_plan(source, target, split_left_right)
    out = _apply_lut(_as_index_array(label, plan.source, context), plan, context)
    for code, _merged, left_value, right_value in plan.splits:
        merged_mask = out == code
        if not merged_mask.any():
            continue
        out[merged_mask] = 0
        left, right = _split_by_components(merged_mask, affine)
        out[left] = left_value
        out[right] = right_value
    return out


def is_lesion(name: str) -> bool:
    """True for tumors and cysts: a lesion edge anywhere up the subtype chain.

    Lesions are scored by detection as well as overlap and are kept inside their organ by the
    post-processing; ``is_lesion("liver_tumor")`` and ``is_lesion("kidney_cyst")`` are True,
    ``is_lesion("liver")`` False.
    """
    return any(
        relation == "lesion" or (relation == "subtype" and is_lesion(parent))
        for parent, relation in class_info(name).parents
    )


def convert_to_multi_hot(
    label: np.ndarray,
    source: str,
    target: str,
    *,
    affine: np.ndarray | None = None,
    context: str | None = None,
) -> np.ndarray:
    """Convert a label map to one boolean channel per target class, organs including lesions.

    For sigmoid-per-class models (the Universal Model, REFERENCE.md section 2: "tumors are
    merged into their organ before the organ label is made"): a KiTS tumor voxel is set in
    both the ``kidney_tumor`` channel and the channel of the kidney it lies in. Organ
    channels come from converting to the target without its lesion classes (so lesions merge
    into organs and merged organs split together with their lesions); lesion channels from
    the plain conversion.

    Args:
        label: integer label array, values from ``source``'s map.
        source: data set or label system name of ``label``.
        target: label system name.
        affine: voxel-to-world RAS+ affine for left/right splitting (None: array in RAS).
        context: what the array is (file name), for error messages.

    Returns:
        Boolean array ``(num_classes, *label.shape)``; channel i is the class with value i + 1.

    Raises:
        DataValidationError: values not in the source's map, non-integer values.
        UnknownNameError: unknown source or target.
    """
    system = get_label_system(target)
    lesion = [is_lesion(c) for c in system.classes]
    organs = LabelSystem(
        f"{system.name}_organs",
        tuple(c for c, flag in zip(system.classes, lesion, strict=True) if not flag),
        tuple(v for v, flag in zip(system.values, lesion, strict=True) if not flag),
    )
    fine = convert_label_map(label, source, system, affine=affine, context=context)
    organ_map = convert_label_map(label, source, organs, affine=affine, context=context)
    out = np.zeros((system.num_classes, *np.shape(label)), dtype=bool)
    for channel, (value, lesion_channel) in enumerate(zip(system.values, lesion, strict=True)):
        out[channel] = (fine if lesion_channel else organ_map) == value
    return out


def split_left_right(
    mask: np.ndarray, affine: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split a mask of a paired organ (both kidneys, both lungs) into left and right.

    REFERENCE.md section 2: after RAS orientation, take the two largest connected components;
    the one with the smaller mean index on axis 0 is the left one (in RAS, axis 0 increases
    toward the patient's right). Here "smaller index on axis 0" is generalised to "smaller
    world x" through ``affine``, so arrays in any orientation split correctly. Smaller
    components (fragments) join the side whose main component is nearer along x, so no
    voxel is lost; a single component goes to the side of the volume centre it lies on.
    Components use 26-connectivity (full neighbourhood) so thin bridges do not fragment an organ.

    Args:
        mask: boolean (or 0/1) array, 3D.
        affine: voxel-to-world RAS+ affine (4x4); None means identity (array in RAS).

    Returns:
        ``(left, right)`` boolean arrays of the mask's shape.

    Raises:
        DataValidationError: ``affine`` does not fit the mask's dimensions.
    """
    return _split_by_components(mask, affine)


def _split_by_components(
    mask: np.ndarray, affine: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    # separate from split_left_right because convert_label_map's keyword argument shadows that name
    mask = np.asarray(mask).astype(bool, copy=False)
    left = np.zeros(mask.shape, dtype=bool)
    right = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return left, right
    ndim = mask.ndim
    x_row = np.zeros(ndim + 1)
    x_row[0] = 1.0
    if affine is not None:
        affine = np.asarray(affine, dtype=float)
        if affine.shape != (ndim + 1, ndim + 1):
            raise DataValidationError(
                f"split_left_right: affine of shape {affine.shape} does not fit a {ndim}D mask"
            )
        x_row = affine[0]

    # work inside the bounding box: labelling a whole CT volume is the slow part
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(mask))
    offset = np.array([s.start for s in box], dtype=float)
    sub = mask[box]
    components, count = ndimage.label(sub, structure=ndimage.generate_binary_structure(ndim, ndim))
    sizes = np.bincount(components.ravel())[1:]
    centres = np.atleast_2d(
        np.asarray(ndimage.center_of_mass(sub, components, np.arange(1, count + 1)))
    )
    world_x = (centres + offset) @ x_row[:ndim] + x_row[ndim]

    if count == 1:
        centre_voxel = (np.asarray(mask.shape, dtype=float) - 1.0) / 2.0
        threshold = float(centre_voxel @ x_row[:ndim] + x_row[ndim])
    else:
        largest = np.argsort(-sizes, kind="stable")[:2]
        threshold = float(world_x[largest].mean())
    # side per component: 1 = left (smaller world x), 2 = right
    side = np.zeros(count + 1, dtype=np.uint8)
    side[1:] = np.where(world_x < threshold, 1, 2)
    sides = side[components]
    left[box] = sides == 1
    right[box] = sides == 2
    return left, right


def labeled_classes(dataset: str, system: str, *, convention: str = "derived") -> list[str]:
    """Which classes of a label system a data set labels (after merging and splitting).

    Args:
        dataset: data set (or label system) name.
        system: target label system name.
        convention: "derived" (from the native map, the default) or "reference": for
            ``universal32``, the per-data-set class lists of REFERENCE.md section 2 where one
            exists (they differ from "derived" only for BTCV, whose list includes duodenum).

    Returns:
        Canonical class names in the system's order.

    Raises:
        UnknownNameError: unknown data set, system or convention.
    """
    if convention not in ("derived", "reference"):
        raise UnknownNameError(
            f"unknown labeled_classes convention {convention!r}; use 'derived' or 'reference'"
        )
    target = get_label_system(system)
    source_name, _, _ = source_value_map(dataset)
    if (
        convention == "reference"
        and target.name == "universal32"
        and source_name in UNIVERSAL_REFERENCE_LABELED
    ):
        return [target.classes[i - 1] for i in UNIVERSAL_REFERENCE_LABELED[source_name]]
    plan = conversion_plan(dataset, system, True)
    found: set[str] = set()
    for result in plan.mapping.values():
        if result is None:
            continue
        if result.startswith("split:"):
            found.update(
                p for p in side_parts(result[len("split:") :]) or () if p in target.classes
            )
        else:
            found.add(result)
    return [c for c in target.classes if c in found]
