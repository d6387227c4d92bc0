"""The one scorer of bundle predictions: what every bundle's ``evaluate.json`` calls.

:func:`score_predictions` pairs the predictions an inference run wrote
(:func:`medsegzoo.data.predictions.prediction_path`: ``<output_dir>/<case_id>.nii.gz``) with
the ground truth of a datalist split, scores them with the case engine
(:mod:`medsegzoo.evaluation.cases`) and writes the report folder. What differs between the
methods is a setting, not another scorer:

* ``evaluation_system``: score in another label system than the model's (A-Eval scores every
  model in its 8 shared organs); both sides are converted through the taxonomy;
* partial labels: every case is scored on the classes its own data set labels (the
  datalist's ``dataset`` and ``labeled_classes``), so a KiTS case says nothing about the liver;
* ``classes``: keep only these classes (a model that outputs a subset);
* ``convention`` and ``tolerances``: A-Eval's or Touchstone's empty-mask rule and NSD tolerances;
* lesion classes (tumors, cysts) that are scored also get patient-level detection
  (sensitivity on patients with the lesion, specificity on those without).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.evaluation.cases import (
    CasePair,
    CaseSource,
    EvaluationSettings,
    cases_from_datalist,
    evaluate_pairs,
)
from medsegzoo.evaluation.conventions import default_tolerances, get_convention, get_tolerances
from medsegzoo.evaluation.metrics import METRICS
from medsegzoo.evaluation.protocols.detection import detection_from_table
from medsegzoo.evaluation.reports import report_folder, write_report
from medsegzoo.taxonomy import canonical_name, get_label_system, is_lesion

__all__ = ["score_predictions"]


def score_predictions(
    datalist: str | os.PathLike | Sequence[str | os.PathLike],
    prediction_dir: str | os.PathLike,
    prediction_system: str,
    report_dir: str | os.PathLike | None = None,
    *,
    dataset_dir: str | os.PathLike | None = None,
    split: str = "test",
    evaluation_system: str | None = None,
    classes: Sequence[str] | None = None,
    convention: str = "aeval",
    tolerances: str | float | dict[str, float] | None = None,
    metrics: Sequence[str] = ("dsc",),
    detection_threshold_voxels: float = 0.0,
    group_columns: Sequence[str] = ("dataset",),
    title: str | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Score the predictions of a datalist split and write the report.

    Args:
        datalist: datalist JSON (or a list of them, as the universal model's configs allow).
        prediction_dir: the inference run's ``output_dir``.
        prediction_system: label system of the predicted label maps (the model's).
        report_dir: report folder (per_case.csv, per_class.csv, summary.md/json, plots);
            None scores without writing.
        dataset_dir: base folder of the datalist's relative paths.
        split: the split that was predicted.
        evaluation_system: label system of the scores (default: ``prediction_system``).
        classes: keep only these classes (default: every class of the evaluation system).
        convention: empty-mask convention, ``"aeval"`` or ``"touchstone"``.
        tolerances: NSD tolerances (preset name, mm, or mapping); default: the convention's.
        metrics: metrics of :func:`medsegzoo.evaluation.metrics.compute_case_metrics`.
        detection_threshold_voxels: a predicted lesion larger than this counts as detected.
        group_columns: metadata columns for box plots by group.
        title: report title.
        workers: worker processes of the case engine.

    Returns:
        The tidy per-case table (one row per case and scored class).

    Raises:
        DataValidationError: an empty split, a missing prediction (naming the expected file
            and the command that writes it), grids or label values that do not match.
        UnknownNameError: unknown label system, metric or convention.
    """
    metrics = tuple(m.lower() for m in metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UnknownNameError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    get_label_system(prediction_system)  # an unknown name fails before any file is read
    system = get_label_system(evaluation_system or prediction_system)
    conv = get_convention(convention)
    files = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    truth: dict[str, CaseSource] = {}
    for path in files:
        for case_id, source in cases_from_datalist(path, split, dataset_dir).items():
            if case_id in truth:
                raise DataValidationError(f"{path}: case id {case_id!r} is also in another datalist of this run")
            truth[case_id] = source
    if not truth:
        raise DataValidationError(f"{', '.join(map(str, files))}: split {split!r} has no labeled case to score")
    unknown_sets = []
    for case_id, gt in truth.items():
        try:
            get_label_system(gt.label_system or system.name)
        except UnknownNameError:
            unknown_sets.append(f"case {case_id!r} ({gt.where}): data set {gt.label_system!r}")
    if unknown_sets:
        raise UnknownNameError(
            f"{', '.join(map(str, files))}: the native label map of {len(unknown_sets)} case(s) is unknown to the "
            "taxonomy, so its labels cannot be converted:\n  " + "\n  ".join(unknown_sets)
            + "\nname a known data set in each entry's 'dataset' (medsegzoo datalist --list-layouts)"
        )
    pairs, missing = [], []
    for case_id, gt in truth.items():
        pred_file = prediction_path(prediction_dir, case_id)
        if not pred_file.is_file():
            missing.append(str(pred_file))
            continue
        pairs.append(CasePair(case_id, CaseSource(case_id, label=str(pred_file), label_system=prediction_system), gt))
    if missing:
        shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataValidationError(
            f"{prediction_dir}: no prediction for {len(missing)} of {len(truth)} case(s) of split {split!r}; "
            f"expected:\n  {shown}\nrun the bundle's inference on the same split (infer_split) and output_dir first"
        )
    tolerance_table = None
    if "nsd" in metrics:
        tolerance_table = get_tolerances(tolerances) if tolerances is not None else default_tolerances(conv)
    settings = EvaluationSettings(system, conv, tolerance_table, metrics)
    table = evaluate_pairs(pairs, settings, workers=workers, progress=False)
    if classes is not None:
        keep = {canonical_name(c) for c in classes}
        table = table[table["class"].isin(keep)].reset_index(drop=True)
    scored = set(table["class"]) if len(table) else set()
    detections = [
        detection_from_table(table, c, threshold=detection_threshold_voxels, unit="voxels")
        for c in system.classes
        if c in scored and is_lesion(c)
    ]
    if report_dir is not None:
        order = [c for c in system.classes if classes is None or c in {canonical_name(x) for x in classes}]
        # written into a staging folder and renamed into place: a killed run leaves the old report
        with report_folder(report_dir) as staging:
            write_report(
                table, staging, title or f"{prediction_system} predictions on {split}", metrics=list(metrics),
                classes=order, detection=detections,
                group_columns=[c for c in group_columns if c in table.columns],
            )
    return table


def summary_of(report_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``summary.json`` a report folder holds (for drivers and benchmarks)."""
    import json

    path = Path(report_dir) / "summary.json"
    if not path.is_file():
        raise DataValidationError(f"{path}: no evaluation summary (run the bundle's evaluating workflow first)")
    return json.loads(path.read_text(encoding="utf-8"))
