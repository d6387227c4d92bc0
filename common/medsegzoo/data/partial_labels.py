"""Datalists of partially labeled data sets, one split at a time (the universal model's input).

* :func:`load_cases` / :func:`load_partial_split`: one split of one datalist or of several (one
  per data set, as ``medsegzoo datalist`` writes them), every case checked to label at least
  one class of the model (a data set that labels none of them would only add zero-loss
  samples: an error naming it);
* :func:`dataset_balanced_weights`: per-case sampling weights so every data set is drawn
  equally often (the universal model assembles data sets of very different sizes).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsegzoo.data.datalist import load_split
from medsegzoo.data.validation import covered_classes
from medsegzoo.errors import DataValidationError
from medsegzoo.taxonomy import canonical_name, get_label_system, labeled_classes

__all__ = ["dataset_balanced_weights", "load_cases", "load_partial_split"]


def load_cases(
    datalist: str | os.PathLike | Sequence[str | os.PathLike],
    key: str = "test",
    dataset_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Entries of one split of one datalist, or of several concatenated (one per data set).

    Args:
        datalist: datalist JSON file, or a list of them (a partially labeled assembly is
            naturally one datalist per data set, as ``medsegzoo datalist`` writes them).
        key: split.
        dataset_dir: base folder of the relative paths (None: each datalist's own rule,
            :func:`medsegzoo.data.datalist.resolve_base_dir`).

    Returns:
        Entries with absolute paths and a ``case_id`` (the image's name when absent).

    Raises:
        DataValidationError: no datalist, or a case id that appears twice.
    """
    files = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    if not files:
        raise DataValidationError("no datalist given (set 'datalist' to a file or a list of files)")
    cases = []
    for f in files:
        for case in load_split(f, key, dataset_dir):
            case.setdefault("case_id", Path(case["image"]).name.split(".")[0])
            cases.append(case)
    repeated = sorted(k for k, n in Counter(c["case_id"] for c in cases).items() if n > 1)
    if repeated:
        raise DataValidationError(
            f"case ids {repeated[:5]} appear more than once in split {key!r} of {[str(f) for f in files]}; "
            "outputs are named after the case id, so ids must be unique"
        )
    return cases


def load_partial_split(
    datalist: str | os.PathLike | Sequence[str | os.PathLike],
    key: str = "training",
    dataset_dir: str | os.PathLike | None = None,
    system: str = "universal32",
    classes: Sequence[str] | None = None,
    require_labels: bool = True,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Entries of one split, each checked to label at least one class of the model.

    Args:
        datalist: medsegzoo datalist JSON, or a list of them (see :func:`load_cases`).
        key: split ("training", "validation", "test").
        dataset_dir: folder the relative paths start from (None: the datalist's rule).
        system: label system of the label maps after conversion.
        classes: the model's output classes (a subset of ``system``; None: all of them).
        require_labels: every entry must have a ``label`` map or per-class ``masks``.
        allow_empty: an empty or missing split gives ``[]`` (an optional validation split).

    Returns:
        Entries with absolute paths; ``labeled_classes`` filled from the data set when absent.

    Raises:
        DataValidationError: an empty split, a case without label, a case/data set that labels
            none of the system's classes (naming it and what it labels).
        UnknownNameError: a class or data set name unknown to the taxonomy.
    """
    cases = load_cases(datalist, key, dataset_dir)
    if not cases:
        if allow_empty:
            return []
        raise DataValidationError(f"{datalist}: split {key!r} has no cases")
    wanted = {canonical_name(c) for c in classes} if classes is not None else set(get_label_system(system).classes)
    target = "model's classes" if classes is not None else f"{system} classes"
    for case in cases:
        where = f"{datalist}: case {case.get('case_id', '?')!r} (data set {case.get('dataset', '?')!r})"
        if require_labels and "label" not in case and "masks" not in case:
            raise DataValidationError(f"{where} has neither a 'label' label map nor per-class 'masks'")
        if "labeled_classes" not in case:
            if "dataset" not in case:
                raise DataValidationError(f"{where} has neither 'labeled_classes' nor 'dataset'")
            case["labeled_classes"] = labeled_classes(str(case["dataset"]), system)
        if not set(covered_classes(case["labeled_classes"], system)) & wanted:
            raise DataValidationError(
                f"{where} labels none of the {target} (its labeled_classes: "
                f"{list(case['labeled_classes'])}); remove the data set from the training "
                "datalist or add its classes to the model"
            )
    return cases


def dataset_balanced_weights(cases: Sequence[Mapping[str, Any]], key: str = "dataset") -> list[float]:
    """Sampling weight per case: ``1 / (number of cases of its data set)``.

    With ``torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True)``
    each data set is drawn with the same probability regardless of its size.

    Args:
        cases: datalist entries.
        key: entry field naming the data set (cases without it form one group).

    Returns:
        One weight per case (they sum to the number of data sets).
    """
    groups = [str(c.get(key, "")) for c in cases]
    counts = Counter(groups)
    return [1.0 / counts[g] for g in groups]
