"""Training on a mix of partially labeled data sets: the data check and the multi-head step.

* :func:`check_partial_label_datalist` runs before training (a bundle's ``initialize`` list):
  the data helper's :func:`~medsegzoo.data.validation.validate_datalist` (files, geometry,
  label values within each data set's map, known ``labeled_classes``) plus what partial-label
  training needs on top: every case names at least one labeled class, and its classes cover
  at least one class of the training label system (a case that supervises nothing would only
  teach "background").
* The training iteration is :class:`medsegzoo.engines.steps.PartialLabelStep`.
* :func:`score_partial_label_predictions` scores written predictions per class with the
  evaluation engine's metrics, counting only the classes each case is labeled for, and writes
  the report.

Several data sets' datalists are merged into the one datalist a bundle takes with
:func:`medsegzoo.data.datalist.combine_datalists` (``medsegzoo datalist --combine``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from monai.data.utils import create_file_basename

from medsegzoo.data.datalist import (
    load_datalist,
    load_split,
    resolve_base_dir,
)
from medsegzoo.data.validation import validate_datalist
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.transforms.partial import LabeledClassesMask

__all__ = [
    "check_partial_label_datalist",
    "prediction_path",
    "score_partial_label_predictions",
]


def check_partial_label_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    base_dir: str | os.PathLike | None,
    system: str,
    keys: Sequence[str] = ("training", "validation"),
    check_voxels: bool = True,
    workers: int = 1,
) -> int:
    """Check a datalist for partial-label training; raise with every problem at once.

    Args:
        datalist: datalist file or dict.
        base_dir: folder the datalist's paths are relative to.
        system: label system trained (e.g. "tct5").
        keys: splits to check.
        check_voxels: read the label voxels (values within each data set's map).
        workers: threads reading files.

    Returns:
        The number of cases checked.

    Raises:
        DataValidationError: empty or unknown labeled classes, classes outside ``system``,
            unknown data sets, missing files, label values outside a data set's classes, ...
            each naming the datalist entry or file.
    """
    source = str(datalist) if not isinstance(datalist, Mapping) else f"datalist {datalist.get('name')!r}"
    loaded = load_datalist(datalist) if not isinstance(datalist, Mapping) else datalist
    present = [k for k in keys if loaded.get(k)]
    if not keys or not loaded.get(keys[0]):
        raise DataValidationError(f"{source}: the split {keys[0]!r} is empty or missing")
    mask = LabeledClassesMask(system)
    problems: list[str] = []
    usable: dict[str, list[Any]] = {}  # cases whose class list is fine go on to the file checks
    for key in present:
        for i, entry in enumerate(loaded[key]):
            where = f"{key}[{i}] (case {entry.get('case_id')!r})"
            names = entry.get("labeled_classes")
            if not isinstance(names, list) or not names:
                problems.append(f"{where}: 'labeled_classes' is empty or missing; name the classes its label covers")
                continue
            try:
                covered = mask(names)
            except MedSegZooError as err:
                problems.append(f"{where}: {err}")
                continue
            if covered.sum() == 0:
                problems.append(
                    f"{where}: labeled classes {names} cover none of the {system!r} classes "
                    f"({', '.join(mask.system.classes)})"
                )
                continue
            usable.setdefault(key, []).append(entry)
    if usable:
        # files, geometry and label values (within each case's data set map), all at once
        base = resolve_base_dir(loaded, None if isinstance(datalist, Mapping) else datalist, base_dir)
        try:
            validate_datalist(dict(loaded, **{k: usable.get(k, []) for k in present}), base, check_voxels=check_voxels, keys=list(usable),
                              workers=workers)
        except DataValidationError as err:
            problems.append(str(err))
    if problems:
        raise DataValidationError(
            f"{source}: cannot be used for partial-label training ({system}):\n  " + "\n  ".join(problems)
        )
    return sum(len(loaded[k]) for k in present)


def prediction_path(
    image: str | os.PathLike,
    pred_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    postfix: str = "seg",
    ext: str = ".nii.gz",
) -> Path:
    """Where ``SaveImaged(output_dir=pred_dir, output_postfix=postfix, separate_folder=False,
    data_root_dir=dataset_dir)`` writes the prediction of ``image`` (MONAI's own naming rule)."""
    base = create_file_basename(
        postfix, str(image), str(pred_dir), data_root_dir=str(dataset_dir), separate_folder=False, makedirs=False
    )
    return Path(f"{base}{ext}")


def score_partial_label_predictions(
    datalist: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str,
    pred_dir: str | os.PathLike,
    system: str,
    out_dir: str | os.PathLike,
    metrics: Sequence[str] = ("dsc", "hd95"),
    postfix: str = "seg",
    title: str = "TCT partial-label evaluation",
) -> pd.DataFrame:
    """Score written label maps against the datalist's ground truth, labeled classes only.

    The evaluation engine (:mod:`medsegzoo.evaluation.cases`) converts each case's ground
    truth to ``system`` (e.g. KiTS19's kidney is split into left/right by connected
    components), checks grids and label values, and scores only the classes the case is
    labeled for: a kidney-only case says nothing about the liver the model also segments. Fully
    labeled sets (BTCV, WORD, AMOS) thus count every class.

    Args:
        datalist: datalist file.
        dataset_dir: folder the datalist's paths are relative to.
        split: split to score ("test", or "training" for a fully labeled unseen set).
        pred_dir: folder of the predictions (see :func:`prediction_path`).
        system: label system of the predictions.
        out_dir: report folder (per_case.csv, per_class.csv, summary.md, plots).
        metrics: metrics of :func:`medsegzoo.evaluation.compute_case_metrics`.
        postfix: the predictions' output postfix.
        title: report title.

    Returns:
        The tidy per-case table (one row per case and scored class).

    Raises:
        DataValidationError: an empty split, a missing prediction (naming the expected file),
            or grids that differ.
    """
    from medsegzoo.evaluation.conventions import get_convention
    from medsegzoo.evaluation.cases import (
        CaseSource,
        EvaluationSettings,
        cases_from_datalist,
        evaluate_pairs,
        pair_cases,
    )
    from medsegzoo.evaluation.reports import write_report
    from medsegzoo.taxonomy import get_label_system

    entries = load_split(datalist, split, base_dir=dataset_dir)
    if not entries:
        raise DataValidationError(f"{datalist}: split {split!r} has no cases to score")
    predictions: dict[str, CaseSource] = {}
    for entry in entries:
        pred_path = prediction_path(entry["image"], pred_dir, dataset_dir, postfix)
        if not pred_path.is_file():
            raise DataValidationError(
                f"{pred_path}: no prediction for case {entry.get('case_id')!r} (image {entry['image']}); "
                "run the inference config on the same split first"
            )
        predictions[str(entry["case_id"])] = CaseSource(str(entry["case_id"]), label=str(pred_path), label_system=system)
    # the engine converts each case's ground truth to `system` and scores only the classes the
    # case labels (its datalist entry's data set and labeled_classes)
    truth = cases_from_datalist(datalist, split, base_dir=dataset_dir)
    pairs, _, _ = pair_cases(predictions, truth, pred_name=str(pred_dir), gt_name=f"{datalist} [{split}]")
    label_system = get_label_system(system)
    classes = list(label_system.classes)
    settings = EvaluationSettings(
        system=label_system, convention=get_convention("aeval"), tolerances_mm=None,
        metrics=tuple(metrics),
    )
    table = evaluate_pairs(pairs, settings, workers=1, progress=False)
    write_report(table, out_dir, title, metrics=list(metrics), classes=classes, group_columns=("dataset",))
    return table
