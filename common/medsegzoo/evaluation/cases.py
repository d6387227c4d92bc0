"""Case-level evaluation: pair predictions with ground truth, validate, score in parallel.

Both sides may be a folder in either of two layouts, and the ground truth may also be a
medsegzoo datalist (INTERFACES.md):

* label maps: ``DIR/<case>.nii.gz`` (also ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``);
* per-class masks (AbdomenAtlas / Touchstone / TotalSegmentator):
  ``DIR/<case>/segmentations/<class>.nii.gz``, file stems in any spelling the taxonomy
  knows (``gall_bladder``, ``postcava``, ``ivc``); stems that are no class of the label
  system are ignored.

Every case is checked before it is scored, and a problem stops the run with a message
naming the file: prediction and ground truth of different shapes or affines, label values
outside the label system, per-class masks that are not binary, cases missing on either
side (unless ``allow_missing``, which skips them and records how many). The voxel spacing
is the ground truth header's.

Classes scored per case: the label system's classes that the ground truth labels. A folder
of label maps in the evaluation's own system labels all of them (an absent organ is a real
absence, scored by the empty-mask convention); a datalist entry names its
``labeled_classes`` and data set (converted to the system through the taxonomy); a
per-class mask folder labels the classes it has files for. Classes the ground truth does
not label get no row.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsegzoo.data.datalist import LABELED_SPLITS, load_datalist, load_split
from medsegzoo.data.formats import read_volume
from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError
from medsegzoo.evaluation.conventions import (
    EmptyMaskConvention,
    default_tolerances,
    get_convention,
    get_tolerances,
)
from medsegzoo.evaluation.metrics import METRICS, compute_case_metrics, label_bounding_boxes
from medsegzoo.taxonomy import (
    canonical_name,
    convert_label_map,
    get_label_system,
    labeled_classes,
    resolve_class,
    side_parts,
)

__all__ = [
    "LABEL_SUFFIXES",
    "CasePair",
    "CaseSource",
    "EvaluationResult",
    "EvaluationSettings",
    "cases_from_datalist",
    "discover_cases",
    "evaluate_case",
    "evaluate_cases",
    "evaluate_pairs",
    "load_cases",
    "pair_cases",
]

LABEL_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
MASK_FOLDER = "segmentations"
# datalist fields that are paths or bookkeeping, not case metadata for the table
_NOT_METADATA = frozenset({"case_id", "image", "label", "masks", "labeled_classes", "spacing"})
# affines are compared with this tolerance: NIfTI stores them as float32 (qform as quaternions)
_AFFINE_RTOL, _AFFINE_ATOL_MM = 1e-4, 1e-3


@dataclass(frozen=True)
class CaseSource:
    """Where one side (prediction or ground truth) of one case is stored.

    Attributes:
        case_id: case identifier (file stem or folder name, or the datalist's ``case_id``).
        label: label map file, or ``None`` for per-class masks.
        masks: canonical class -> binary mask file, or ``None`` for a label map.
        label_system: data set or label system name of the label map's values.
        labeled: canonical classes the source labels (``None``: every class of ``label_system``).
        metadata: extra columns for the table (datalist fields such as ``site``, ``age``).
        spacing: voxel size of a label file that stores no geometry (HDF5, the datalist's ``spacing``).
    """

    case_id: str
    label: str | None = None
    masks: Mapping[str, str] | None = None
    label_system: str | None = None
    labeled: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    spacing: tuple[float, ...] | None = None

    @property
    def where(self) -> str:
        """A file that names this source in messages."""
        if self.label is not None:
            return self.label
        files = sorted((self.masks or {}).values())
        return str(Path(files[0]).parent) if files else self.case_id


@dataclass(frozen=True)
class CasePair:
    """A prediction and its ground truth."""

    case_id: str
    pred: CaseSource
    gt: CaseSource


@dataclass(frozen=True)
class EvaluationSettings:
    """What :func:`evaluate_case` needs besides the pair (sent to worker processes).

    Attributes:
        system: the label system of the predictions and of the table's classes.
        convention: empty-mask convention.
        tolerances_mm: NSD tolerance per class.
        metrics: metrics to compute.
        hd_percentile: percentile of the robust Hausdorff distance.
    """

    system: Any  # medsegzoo.taxonomy.LabelSystem (kept lazy: taxonomy import on use)
    convention: EmptyMaskConvention
    tolerances_mm: Mapping[str, float] | None
    metrics: tuple[str, ...] = METRICS
    hd_percentile: float = 95.0


@dataclass
class EvaluationResult:
    """The per-case table and what was skipped.

    Attributes:
        table: tidy per-case table (INTERFACES.md): ``case``, ``class``, metrics,
            ``gt_present``, ``pred_present``, volumes, metadata columns.
        missing_prediction: ground-truth cases without a prediction (skipped).
        missing_ground_truth: predictions without ground truth (skipped).
        settings: the settings used.
        cases: every case that was scored (paired on both sides), to count the classes
            that a case's ground truth does not label (no row in ``table``).
    """

    table: pd.DataFrame
    missing_prediction: list[str]
    missing_ground_truth: list[str]
    settings: EvaluationSettings
    cases: list[str] = field(default_factory=list)

    def unlabeled_counts(self) -> dict[str, int]:
        """Class -> number of scored cases whose ground truth does not label it (no row).

        A per-class mask folder without that class's file, or a data set that does not
        label the class, gives no row rather than a score; this counts them per class.
        """
        scored = self.table.groupby("class")["case"].nunique() if len(self.table) else pd.Series(dtype=int)
        counts = {c: len(self.cases) - int(scored.get(c, 0)) for c in self.settings.system.classes}
        return {c: n for c, n in counts.items() if n > 0}

    def notes(self) -> list[str]:
        """Report lines: the convention, the tolerances and what was skipped."""
        s = self.settings
        lines = [f"label system: {s.system.name} ({len(s.system.classes)} classes)", f"empty masks: {s.convention.description}"]
        if s.tolerances_mm is not None and "nsd" in s.metrics:
            lines.append(f"NSD tolerance (mm): {_describe_tolerances(s.tolerances_mm, s.system.classes)}")
        if "hd95" in s.metrics:
            lines.append(f"HD{s.hd_percentile:g}: DeepMind surface-distance compute_robust_hausdorff(distances, {s.hd_percentile:g})")
        if self.missing_prediction:
            lines.append(f"skipped {len(self.missing_prediction)} ground-truth case(s) without prediction: {_names(self.missing_prediction)}")
        if self.missing_ground_truth:
            lines.append(f"skipped {len(self.missing_ground_truth)} prediction(s) without ground truth: {_names(self.missing_ground_truth)}")
        unlabeled = self.unlabeled_counts()
        if unlabeled:
            total = len(self.cases) * len(s.system.classes)
            lines.append(
                f"skipped {sum(unlabeled.values())} of {total} (case, class) pairs: the ground truth does "
                f"not label the class ({', '.join(f'{c} in {n} case(s)' for c, n in unlabeled.items())})"
            )
        return lines


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _describe_tolerances(tolerances: Mapping[str, float], classes: Sequence[str]) -> str:
    values = {c: tolerances[c] for c in classes}
    distinct = set(values.values())
    if len(distinct) == 1:
        return f"{distinct.pop():g} for every class"
    return ", ".join(f"{c} {v:g}" for c, v in values.items())


# ---- finding cases ------------------------------------------------------------------------


def _label_stem(name: str) -> str | None:
    lower = name.lower()
    for suffix in LABEL_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _mask_files(folder: Path) -> dict[str, str]:
    """Canonical class -> mask file of a ``segmentations`` folder (unknown stems ignored)."""

    masks: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        stem = _label_stem(path.name) if path.is_file() else None
        if stem is None:
            continue
        try:
            name = canonical_name(stem)
        except UnknownNameError:
            continue  # a structure outside the taxonomy cannot be in any label system
        if name in masks:
            raise LayoutError(f"{folder}: {Path(masks[name]).name} and {path.name} are both masks of class {name!r}")
        masks[name] = str(path)
    return masks


def discover_cases(folder: str | os.PathLike, label_system: str | None = None) -> dict[str, CaseSource]:
    """Cases of a folder of label maps or of per-class mask folders (see the module docstring).

    Args:
        folder: the folder.
        label_system: data set or label system of the label maps' values.

    Returns:
        Case id -> :class:`CaseSource`, sorted by case id.

    Raises:
        LayoutError: no such folder, no case found, or a case present as both a file and a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    cases: dict[str, CaseSource] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        stem = _label_stem(path.name) if path.is_file() else None
        if stem is not None:
            source = CaseSource(stem, label=str(path), label_system=label_system)
        elif path.is_dir() and (path / MASK_FOLDER).is_dir():
            masks = _mask_files(path / MASK_FOLDER)
            source = CaseSource(path.name, masks=masks, label_system=label_system, labeled=tuple(masks))
        else:
            continue
        if source.case_id in cases:
            raise LayoutError(f"{root}: case {source.case_id!r} is there twice ({cases[source.case_id].where} and {source.where})")
        cases[source.case_id] = source
    if not cases:
        raise LayoutError(
            f"{root}: no cases found; expected label maps <case>{LABEL_SUFFIXES[0]} or per-class masks "
            f"<case>/{MASK_FOLDER}/<class>{LABEL_SUFFIXES[0]}"
        )
    return cases


def cases_from_datalist(
    path: str | os.PathLike, split: str | None = None, base_dir: str | os.PathLike | None = None
) -> dict[str, CaseSource]:
    """Ground-truth cases of a medsegzoo datalist.

    Args:
        path: datalist JSON file.
        split: split key ("training", "validation", "test"); default: every split whose
            entries have a label or masks.
        base_dir: folder the relative paths start from (default: as MONAI, the datalist's folder
            or its ``dataset_dir``).

    Returns:
        Case id -> :class:`CaseSource` with the entry's data set, labeled classes and metadata.

    Raises:
        DataValidationError: malformed datalist, a case id twice, no labeled entry.
    """

    datalist = load_datalist(path)
    keys = [split] if split else [k for k in LABELED_SPLITS if datalist.get(k)]
    default_system = datalist.get("label_system")
    cases: dict[str, CaseSource] = {}
    for key in keys:
        for entry in load_split(datalist if base_dir is not None else path, key, base_dir):
            if not entry.get("label") and not entry.get("masks"):
                continue
            case_id = str(entry.get("case_id") or _label_stem(Path(entry.get("label") or entry["image"]).name) or "")
            if case_id in cases:
                raise DataValidationError(f"{path}: case id {case_id!r} appears twice (split {key!r})")
            labeled = entry.get("labeled_classes")
            masks = entry.get("masks")
            cases[case_id] = CaseSource(
                case_id,
                label=entry.get("label"),
                masks=dict(masks) if masks else None,
                label_system=entry.get("dataset") or default_system,
                labeled=tuple(labeled) if labeled else (tuple(masks) if masks else None),
                metadata={k: v for k, v in entry.items() if k not in _NOT_METADATA and _scalar(v)},
                spacing=tuple(float(v) for v in entry["spacing"]) if entry.get("spacing") else None,
            )
    if not cases:
        raise DataValidationError(f"{path}: no entry with a label or masks in split(s) {keys}")
    return cases


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def load_cases(source: str | os.PathLike, label_system: str | None = None, split: str | None = None) -> dict[str, CaseSource]:
    """Cases of a folder (:func:`discover_cases`) or a datalist JSON file (:func:`cases_from_datalist`)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".json":
        cases = cases_from_datalist(path, split)
        if label_system is not None:
            cases = {k: _with_system(v, label_system) for k, v in cases.items()}
        return cases
    return discover_cases(path, label_system)


def _with_system(source: CaseSource, system: str) -> CaseSource:
    return dataclasses.replace(source, label_system=system)


def pair_cases(
    pred_cases: Mapping[str, CaseSource],
    gt_cases: Mapping[str, CaseSource],
    allow_missing: bool = False,
    pred_name: str = "predictions",
    gt_name: str = "ground truth",
) -> tuple[list[CasePair], list[str], list[str]]:
    """Match predictions and ground truth by case id.

    Args:
        pred_cases: prediction cases.
        gt_cases: ground-truth cases.
        allow_missing: skip unmatched cases instead of failing.
        pred_name: how to call the prediction source in messages (e.g. its folder).
        gt_name: how to call the ground-truth source in messages.

    Returns:
        ``(pairs, missing_prediction, missing_ground_truth)``: pairs sorted by case id, the
        ground-truth cases without prediction and the predictions without ground truth.

    Raises:
        DataValidationError: unmatched cases and ``allow_missing`` is False, or nothing matches.
    """
    missing_pred = sorted(set(gt_cases) - set(pred_cases))
    missing_gt = sorted(set(pred_cases) - set(gt_cases))
    if (missing_pred or missing_gt) and not allow_missing:
        problems = []
        if missing_pred:
            problems.append(f"{len(missing_pred)} case(s) of {gt_name} have no prediction in {pred_name}: {_names(missing_pred)}")
        if missing_gt:
            problems.append(f"{len(missing_gt)} prediction(s) in {pred_name} have no ground truth in {gt_name}: {_names(missing_gt)}")
        raise DataValidationError("; ".join(problems) + ". Pass --allow-missing (allow_missing=True) to skip them explicitly.")
    pairs = [CasePair(c, pred_cases[c], gt_cases[c]) for c in sorted(set(pred_cases) & set(gt_cases))]
    if not pairs:
        raise DataValidationError(f"no case of {pred_name} matches a case of {gt_name} (case ids are file or folder names)")
    return pairs, missing_pred, missing_gt


# ---- reading and checking one case --------------------------------------------------------


@dataclass
class _Volume:
    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    path: str


def _read(path: str, field: str = "label", spacing: Sequence[float] | None = None) -> _Volume:
    # the package's one reader: NIfTI, DICOM/ITK formats, HDF5 (LA) with the datalist's spacing
    volume = read_volume(path, field=field, spacing=spacing)
    array, affine = np.asarray(volume.array), np.asarray(volume.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataValidationError(f"{path}: expected a 3D volume, got shape {array.shape}")
    return _Volume(array, np.asarray(affine, dtype=np.float64), tuple(float(s) for s in spacing[:3]), path)  # type: ignore[arg-type]


def _same_grid(a: _Volume, b: _Volume) -> None:
    if a.array.shape != b.array.shape:
        raise DataValidationError(f"{a.path} has shape {a.array.shape} but {b.path} has shape {b.array.shape}")
    if not np.allclose(a.affine, b.affine, rtol=_AFFINE_RTOL, atol=_AFFINE_ATOL_MM):
        raise DataValidationError(
            f"{a.path} and {b.path} have different affines (voxel-to-world matrices), so the same "
            f"voxel is not the same place:\n{np.array2string(a.affine, precision=4)}\nvs\n{np.array2string(b.affine, precision=4)}"
        )


def _integer_labels(volume: _Volume) -> np.ndarray:
    array = volume.array
    if array.dtype == bool:
        return array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
        raise DataValidationError(f"{volume.path}: label map holds non-integer values (a probability map?)")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > np.iinfo(np.int32).max:
        raise DataValidationError(f"{volume.path}: label values must lie in [0, 2^31), got {low:g}..{high:g}")
    return array.astype(np.uint8 if high <= 255 else np.uint16 if high <= 65535 else np.int32)


def _check_values(labels: np.ndarray, boxes: Mapping[int, Any], allowed: Iterable[int], path: str, system: str) -> None:
    allowed = {int(v) for v in allowed}
    bad = sorted(v for v in boxes if v not in allowed)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        bad = sorted({int(v) for v in np.unique(labels[labels < 0])} | set(bad))
    if bad:
        raise DataValidationError(
            f"{path}: label values {bad[:20]} are not in label system {system!r} (its values: {sorted(allowed)})"
        )


def _binary_mask(volume: _Volume, name: str) -> np.ndarray:
    array = volume.array
    if array.dtype == bool:
        return array
    low, high = array.min(), array.max()
    if low < 0 or high > 1 or (array.dtype.kind == "f" and not np.all((array == 0) | (array == 1))):
        values = np.unique(array)
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
        raise DataValidationError(f"{volume.path}: mask of class {name!r} is not binary (values {shown})")
    return array.astype(bool)


def _scored_classes(gt: CaseSource, system: Any) -> list[str]:
    """The system's classes that the ground truth labels, in the system's order."""

    target = set(system.classes)
    if gt.masks is not None:
        names = {canonical_name(n) for n in gt.masks}
        return [c for c in system.classes if c in names]
    source = gt.label_system or system.name
    covered = set(labeled_classes(source, system.name)) if source != system.name else set(target)
    if gt.labeled is not None:
        listed = {canonical_name(n) for n in gt.labeled}
        reachable: set[str] = set()
        for name in listed:
            resolution = resolve_class(name, frozenset(target), frozenset(listed))
            if resolution is None:
                continue
            kind, found = resolution
            reachable.update([found] if kind == "direct" else [p for p in (side_parts(found) or ()) if p in target])
        covered &= reachable
    return [c for c in system.classes if c in covered]


def _has_value_aliases(name: str) -> bool:
    from medsegzoo.taxonomy.datasets import (  # taxonomy: loaded on use, as above
        get_dataset,
        resolve_dataset_name,
    )

    key = resolve_dataset_name(name)
    return key is not None and bool(get_dataset(key).value_aliases)


class _LabelSide:
    """One side given as a label map: read, converted to the system, values checked, boxes found."""

    def __init__(self, source: CaseSource, system: Any, role: str) -> None:

        assert source.label is not None
        self.reference = _read(source.label, spacing=source.spacing)
        labels = _integer_labels(self.reference)
        native = source.label_system or system.name
        # a data set whose files use other values for the same class (LA's 255) is converted
        # even when it shares its name with the label system
        if native != system.name or _has_value_aliases(native):
            labels = convert_label_map(labels, native, system, affine=self.reference.affine, context=f"{role} {source.label}")
            self.boxes = label_bounding_boxes(labels)
        else:
            self.boxes = label_bounding_boxes(labels)
            _check_values(labels, self.boxes, get_label_system(native).values, source.label, native)
        self.labels = labels
        self._value_of = {c: v for v, c in zip(system.values, system.classes)}

    def mask(self, name: str) -> np.ndarray:
        return self.labels == self._value_of[name]


class _MaskSide:
    """One side given as per-class mask files, read one class at a time (bounded memory)."""

    def __init__(self, source: CaseSource, classes: Sequence[str]) -> None:

        self.files = {canonical_name(k): v for k, v in (source.masks or {}).items()}
        missing = [c for c in classes if c not in self.files]
        if missing:
            raise DataValidationError(
                f"{source.where}: no mask file for class(es) {missing} (found: {sorted(self.files)}); "
                f"write an empty mask for an organ that is absent"
            )
        if not self.files:
            raise DataValidationError(f"{source.where}: no mask files")
        # the first scored class's file gives the geometry, and is kept for its mask() call
        self._first_name = classes[0] if classes else None
        self.reference = _read(self.files[classes[0]] if classes else min(self.files.values()))
        self.labels = None

    def mask(self, name: str) -> np.ndarray:
        if name == self._first_name:
            volume, self._first_name = self.reference, None
        else:
            volume = _read(self.files[name])
            _same_grid(volume, self.reference)
        return _binary_mask(volume, name)


def _open_side(source: CaseSource, classes: Sequence[str], system: Any, role: str) -> _LabelSide | _MaskSide:
    return _LabelSide(source, system, role) if source.label is not None else _MaskSide(source, classes)


def evaluate_case(pair: CasePair, settings: EvaluationSettings) -> list[dict[str, Any]]:
    """Read, check and score one case (runs in a worker process).

    Args:
        pair: the prediction and ground truth.
        settings: label system, convention, tolerances, metrics.

    Returns:
        One row per scored class: ``case``, ``class``, metrics, presence flags, volumes and
        the ground truth's metadata.

    Raises:
        DataValidationError: unreadable files, different shapes or affines, label values
            outside the system, non-binary masks, missing mask files.
    """
    system = settings.system
    classes = _scored_classes(pair.gt, system)
    common = {
        "tolerances_mm": settings.tolerances_mm,
        "convention": settings.convention,
        "metrics": settings.metrics,
        "hd_percentile": settings.hd_percentile,
    }
    gt = _open_side(pair.gt, classes, system, "ground truth")
    pred = _open_side(pair.pred, classes, system, "prediction")
    _same_grid(pred.reference, gt.reference)
    spacing = gt.reference.spacing
    if isinstance(gt, _LabelSide) and isinstance(pred, _LabelSide):
        value_of = {c: v for v, c in zip(system.values, system.classes)}
        rows = compute_case_metrics(
            pred.labels, gt.labels, spacing, {value_of[c]: c for c in classes}, boxes=(pred.boxes, gt.boxes), **common
        )
    else:
        # one class's two masks at a time: per-class files are never all in memory at once
        triples = ((c, pred.mask(c), gt.mask(c)) for c in classes)
        rows = compute_case_metrics(None, None, spacing, triples, **common)
    return [{"case": pair.case_id, **row, **pair.gt.metadata} for row in rows]


# ---- running many cases -------------------------------------------------------------------


def default_workers() -> int:
    """``min(4, CPU count)``: metric work is memory-bound beyond a few processes."""
    return max(1, min(4, os.cpu_count() or 1))


def evaluate_pairs(
    pairs: Sequence[CasePair],
    settings: EvaluationSettings,
    workers: int | None = None,
    progress: bool = True,
    on_case: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Score every pair, in parallel worker processes, with a progress bar.

    Each worker reads its own files, so only file names and rows cross process borders.
    The first error stops the run (pending cases are cancelled) and is raised as is.

    Args:
        pairs: cases to score.
        settings: label system, convention, tolerances, metrics.
        workers: processes (default :func:`default_workers`; 1 scores in this process).
        progress: show a tqdm progress bar over cases (on stderr).
        on_case: called with each finished case id (e.g. for logging).

    Returns:
        The tidy per-case table, sorted by case and then by the system's class order.
    """
    from tqdm.auto import tqdm

    workers = default_workers() if workers is None else max(1, int(workers))
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(pairs), desc="evaluate", unit="case", disable=not progress)
    try:
        if workers == 1 or len(pairs) <= 1:
            for pair in pairs:
                rows.extend(evaluate_case(pair, settings))
                bar.update(1)
                if on_case:
                    on_case(pair.case_id)
        else:
            # spawn: no fork of a parent that may hold threads (tqdm, torch) or big arrays
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(pairs)), mp_context=context) as pool:
                pending = {pool.submit(evaluate_case, pair, settings): pair.case_id for pair in pairs}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        case_id = pending.pop(future)
                        error = future.exception()
                        if error is not None:
                            pool.shutdown(wait=False, cancel_futures=True)
                            raise error
                        rows.extend(future.result())
                        bar.update(1)
                        if on_case:
                            on_case(case_id)
    finally:
        bar.close()
    return _tidy(rows, settings)


def _tidy(rows: list[dict[str, Any]], settings: EvaluationSettings) -> pd.DataFrame:
    first = ["case", "class", *settings.metrics, "gt_present", "pred_present", "gt_voxels", "pred_voxels", "gt_volume_mm3", "pred_volume_mm3"]
    table = pd.DataFrame.from_records(rows)
    if table.empty:
        return pd.DataFrame(columns=first)
    order = {c: i for i, c in enumerate(settings.system.classes)}
    table = table.sort_values(["case", "class"], key=lambda s: s.map(order) if s.name == "class" else s, kind="stable")
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def _join_metadata(table: pd.DataFrame, metadata: str | os.PathLike | pd.DataFrame | None) -> pd.DataFrame:
    if metadata is None:
        return table
    if isinstance(metadata, pd.DataFrame):
        meta, where = metadata.copy(), "metadata table"
    else:
        where = str(metadata)
        if not Path(where).is_file():
            raise DataValidationError(f"{where}: metadata file does not exist")
        meta = pd.read_csv(where)
    key = next((k for k in ("case", "case_id") if k in meta.columns), None)
    if key is None:
        raise DataValidationError(f"{where}: metadata needs a 'case' (or 'case_id') column; columns: {list(meta.columns)}")
    meta = meta.rename(columns={key: "case"})
    meta["case"] = meta["case"].astype(str)
    if meta["case"].duplicated().any():
        raise DataValidationError(f"{where}: case ids appear twice: {_names(sorted(meta.loc[meta['case'].duplicated(), 'case'].unique()))}")
    reserved = {"class", *METRICS, "gt_present", "pred_present"}
    clash = sorted(reserved & set(meta.columns))
    if clash:
        raise DataValidationError(f"{where}: metadata columns {clash} would overwrite the table's own columns")
    # the file's columns win over the datalist's fields of the same name
    table = table.drop(columns=[c for c in meta.columns if c != "case" and c in table.columns])
    return table.merge(meta, on="case", how="left", validate="many_to_one")


def evaluate_cases(
    pred: str | os.PathLike,
    gt: str | os.PathLike,
    labels: str,
    *,
    gt_labels: str | None = None,
    split: str | None = None,
    convention: str | EmptyMaskConvention = "aeval",
    tolerances: str | float | Mapping[str, float] | None = None,
    metrics: Sequence[str] = METRICS,
    hd_percentile: float = 95.0,
    workers: int | None = None,
    allow_missing: bool = False,
    metadata: str | os.PathLike | pd.DataFrame | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate a folder of predictions against a ground-truth folder or datalist.

    Args:
        pred: prediction folder (label maps in ``labels`` values, or per-class masks).
        gt: ground-truth folder or datalist JSON file.
        labels: label system of the predictions and of the table ("touchstone9", "aeval8", ...).
        gt_labels: data set / label system of ground-truth label maps when it differs from
            ``labels`` (converted through the taxonomy). Datalists name it themselves.
        split: datalist split to use (default: every labeled split).
        convention: empty-mask convention, "aeval" or "touchstone".
        tolerances: NSD tolerance preset, number (mm) or mapping; default: the convention's
            own ("aeval": the FLARE22 table and 2 mm for classes it lacks, "touchstone": 1.5 mm).
        metrics: metrics to compute.
        hd_percentile: percentile of the robust Hausdorff distance (95: HD95).
        workers: worker processes (default ``min(4, CPU count)``).
        allow_missing: skip cases present on one side only (counted in the result) instead of failing.
        metadata: CSV file (or DataFrame) with a ``case`` column, joined on ``case``.
        progress: show a progress bar.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        DataValidationError, LayoutError, UnknownNameError: bad input, with the file named.
    """

    system = get_label_system(labels)
    conv = get_convention(convention)
    metrics = tuple(m.lower() for m in metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UnknownNameError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    if not math.isfinite(hd_percentile) or not 0 <= hd_percentile <= 100:
        raise DataValidationError(f"hd_percentile must be in [0, 100], got {hd_percentile}")
    table = None
    if "nsd" in metrics:
        table = get_tolerances(tolerances) if tolerances is not None else default_tolerances(conv)
        uncovered = [name for name in system.classes if name not in table]  # fail now, not mid-run
        if uncovered:
            raise UnknownNameError(
                f"NSD tolerance table {getattr(table, 'name', 'given')!r} has no tolerance for class(es) "
                f"{uncovered} of label system {system.name!r}; pass a tolerance in mm for every class "
                f"(--tolerance 2) or a table that covers them"
            )
    settings = EvaluationSettings(system, conv, table, metrics, float(hd_percentile))
    if gt_labels is not None:
        get_label_system(gt_labels)  # unknown name -> error before reading anything
    pred_cases = discover_cases(pred, system.name)
    gt_cases = load_cases(gt, gt_labels if gt_labels is not None else (None if _is_datalist(gt) else system.name), split)
    pairs, missing_pred, missing_gt = pair_cases(pred_cases, gt_cases, allow_missing, str(pred), str(gt))
    result = evaluate_pairs(pairs, settings, workers=workers, progress=progress)
    result = _join_metadata(result, metadata)
    return EvaluationResult(result, missing_pred, missing_gt, settings, cases=[p.case_id for p in pairs])


def _is_datalist(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() == ".json"
