"""Score written label maps against a test set in a shared label system (A-Eval style).

Every test set labels its organs in its own native map; a model writes its predictions in the
label system it was trained in. Both are mapped to one shared system (A-Eval: ``aeval8``, or
``aeval10``) with :mod:`medsegzoo.taxonomy`, then scored class by class with
:func:`medsegzoo.evaluation.metrics.compute_case_metrics` (DSC and NSD, A-Eval's empty-mask
convention). A shared class that the test set does not label gets a row with NaN metrics
(absent), so that the A-Eval matrix leaves it out instead of counting it as zero.

NSD tolerances: A-Eval uses FLARE22's per-organ tolerances (mm). Its public evaluation code
looks them up by the *index* of the class in its 8-class system inside FLARE22's 13-class
list, which gives esophagus, stomach and left kidney 2 mm instead of 3, 5 and 3 mm. The
default here is the tolerance *by organ name* (``tolerance_indexing="by_name"``);
``"aeval_public_code"`` reproduces the public code's values for comparison with its numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from medsegzoo.data.datalist import load_split
from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.taxonomy import (
    convert_label_map,
    get_dataset,
    get_label_system,
    labeled_classes,
    side_parts,
)

__all__ = [
    "aeval_tolerances",
    "evaluate_predictions",
    "prediction_path",
]

def aeval_tolerances(system: str = "aeval8", tolerance_indexing: str = "by_name") -> dict[str, float]:
    """NSD tolerance (mm) of every class of ``system``.

    Args:
        system: label system of the evaluation.
        tolerance_indexing: ``"by_name"`` (each organ its FLARE22 tolerance) or
            ``"aeval_public_code"`` (the i-th class gets the i-th FLARE22 tolerance, as the
            public A-Eval code does).

    Returns:
        Class name -> tolerance in mm.

    Raises:
        UnknownNameError: unknown system or indexing mode, or a class without a FLARE22
            tolerance.
    """
    from medsegzoo.evaluation.conventions import get_tolerances

    classes = get_label_system(system).classes
    table = get_tolerances("aeval")
    if tolerance_indexing == "aeval_public_code":
        flare_order = [table[name] for _, name in sorted(get_dataset("flare22").labels.items())]
        return {c: flare_order[i] for i, c in enumerate(classes) if i < len(flare_order)}
    if tolerance_indexing != "by_name":
        raise UnknownNameError(
            f"unknown tolerance_indexing {tolerance_indexing!r}; use 'by_name' or 'aeval_public_code'"
        )
    return {c: table[c] for c in classes}


def _strip_nifti(name: str) -> str:
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def prediction_path(
    image: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    postfix: str = "seg",
) -> Path:
    """Where MONAI's ``SaveImaged(separate_folder=False, data_root_dir=dataset_dir)`` writes the
    prediction of ``image``: the image's folder relative to ``dataset_dir`` under
    ``prediction_dir``, file ``<image stem>_<postfix>.nii.gz``.
    """
    image = Path(image)
    folder = Path(prediction_dir)
    if dataset_dir is not None:
        rel = os.path.relpath(image.parent, dataset_dir)
        if rel != "." and not rel.startswith(".."):
            folder = folder / rel
    return folder / f"{_strip_nifti(image.name)}_{postfix}.nii.gz"


def _load(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    if not path.is_file():
        raise DataValidationError(f"{path}: {what} file does not exist")
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    return np.rint(data).astype(np.int32), img.affine, tuple(float(s) for s in img.header.get_zooms()[:3])


def _case_dataset(case: Mapping[str, Any], default: str | None) -> str:
    name = case.get("dataset") or default
    if not name:
        raise DataValidationError(f"case {case.get('case_id', case.get('image'))}: no 'dataset' entry naming its label map")
    return str(name)


def evaluate_predictions(
    datalist: str | os.PathLike,
    prediction_dir: str | os.PathLike,
    prediction_system: str,
    *,
    dataset_dir: str | os.PathLike | None = None,
    split: str = "test",
    evaluation_system: str = "aeval8",
    tolerance_indexing: str = "by_name",
    metrics: Sequence[str] = ("dsc", "nsd"),
    postfix: str = "seg",
    test_dataset: str | None = None,
    report_dir: str | os.PathLike | None = None,
    title: str = "STU-Net evaluation",
) -> pd.DataFrame:
    """Score every prediction of a datalist split in a shared label system.

    Args:
        datalist: datalist JSON of the test set (cases with ``image``, ``label``, ``dataset``).
        prediction_dir: folder the inference config wrote into.
        prediction_system: label system of the predictions (the model's ``label_system``).
        dataset_dir: base folder of the datalist's relative paths (also the ``data_root_dir``
            of the inference writer).
        split: datalist key to evaluate.
        evaluation_system: shared system (``"aeval8"`` or ``"aeval10"``).
        tolerance_indexing: see :func:`aeval_tolerances`.
        metrics: metric columns to compute.
        postfix: file name postfix of the predictions.
        test_dataset: native data set of cases without a ``dataset`` entry.
        report_dir: when given, write the evaluation report there (``write_report``).
        title: report title.

    Returns:
        Tidy per-case table (``case``, ``class``, metrics, ``gt_present``, ``pred_present``,
        ``dataset``, ``labeled``); classes the test set does not label have NaN metrics.

    Raises:
        UnknownNameError: a case's data set (native label map) or a system is unknown; raised
            for the first such case before any case is scored.
        DataValidationError: missing prediction or label file, or shape mismatch (names the file).
    """
    from medsegzoo.evaluation.metrics import compute_case_metrics

    system = get_label_system(evaluation_system)
    get_label_system(prediction_system)
    cases = load_split(datalist, split, base_dir=dataset_dir)
    if not cases:
        raise DataValidationError(f"{datalist}: split {split!r} has no case to evaluate")
    # fail on an unknown native map before any (slow) scoring
    for case in cases:
        name = _case_dataset(case, test_dataset)
        try:
            get_label_system(name)
        except UnknownNameError as err:
            raise UnknownNameError(
                f"{datalist}: case {case.get('case_id')} names data set {name!r}, whose native label map "
                f"is unknown, so its labels cannot be mapped to {evaluation_system!r}: {err}"
            ) from None
        if "label" not in case:
            raise DataValidationError(f"{datalist}: case {case.get('case_id')} has no 'label' map to evaluate against")
    tolerances = aeval_tolerances(system.name, tolerance_indexing)
    rows: list[dict[str, Any]] = []
    for case in cases:
        source = _case_dataset(case, test_dataset)
        gt_path = Path(case["label"])
        pred_path = prediction_path(case["image"], prediction_dir, dataset_dir, postfix)
        gt, gt_affine, spacing = _load(gt_path, "label")
        pred, _, _ = _load(pred_path, "prediction")
        if gt.shape != pred.shape:
            raise DataValidationError(f"{pred_path}: prediction shape {pred.shape} differs from label {gt_path} shape {gt.shape}")
        gt_shared = convert_label_map(gt, source, system.name, affine=gt_affine, context=str(gt_path))
        pred_shared = convert_label_map(pred, prediction_system, system.name, affine=gt_affine, context=str(pred_path))
        labeled = set(labeled_classes(source, system.name))
        if case.get("labeled_classes"):
            labeled &= _shared_names(case["labeled_classes"], system.name)
        case_id = str(case.get("case_id", gt_path.name))
        scored = {i + 1: c for i, c in enumerate(system.classes) if c in labeled}
        results = compute_case_metrics(
            pred_shared, gt_shared, spacing, scored, tolerances_mm=tolerances, convention="aeval", metrics=tuple(metrics)
        ) if scored else []
        for r in results:
            rows.append({**r, "case": case_id, "dataset": source, "labeled": True})
        for i, c in enumerate(system.classes):
            if c not in labeled:  # absent from this test set: NaN, never zero
                rows.append({
                    "case": case_id, "class": c, **{m: np.nan for m in metrics},
                    "gt_present": False, "pred_present": bool((pred_shared == i + 1).any()),
                    "dataset": source, "labeled": False,
                })
    table = pd.DataFrame(rows)
    order = {c: i for i, c in enumerate(system.classes)}
    table = table.sort_values(["case", "class"], key=lambda s: s.map(order) if s.name == "class" else s, kind="stable")
    table = table.reset_index(drop=True)
    if report_dir is not None:
        from medsegzoo.evaluation.reports import write_report

        write_report(table, report_dir, title, metrics=list(metrics), classes=list(system.classes))
    return table



def _shared_names(classes: Sequence[str], system: str) -> set[str]:
    """Classes of ``system`` covered by a case's ``labeled_classes`` (a merged organ covers its sides)."""
    covered = set(classes)
    for name in classes:
        covered.update(side_parts(name) or ())
    return {c for c in get_label_system(system).classes if c in covered}
