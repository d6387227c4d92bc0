"""Training on a mix of partially labeled data sets: the data check and the multi-head step.

* :func:`check_partial_label_datalist` runs before training (a bundle's ``initialize`` list):
  the data helper's :func:`~medsegzoo.data.validation.validate_datalist` (files, geometry,
  label values within each data set's map, known ``labeled_classes``) plus what partial-label
  training needs on top: every case names at least one labeled class, and its classes cover
  at least one class of the training label system (a case that supervises nothing would only
  teach "background").
* The training iteration is :class:`medsegzoo.engines.steps.PartialLabelStep`.
* Written predictions are scored by :func:`medsegzoo.evaluation.scoring.score_predictions`,
  which counts only the classes each case is labeled for.

Several data sets' datalists are merged into the one datalist a bundle takes with
:func:`medsegzoo.data.combine.combine_datalists` (``medsegzoo datalist --combine``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from medsegzoo.data.datalist import (
    load_datalist,
    resolve_base_dir,
)
from medsegzoo.data.validation import validate_datalist
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.transforms.partial import LabeledClassesMask

__all__ = [
    "check_partial_label_datalist",
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
