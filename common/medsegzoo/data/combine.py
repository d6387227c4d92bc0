"""Merging several data sets' datalists into one (``medsegzoo datalist --combine``).

A module of its own because it checks the merged list with :mod:`medsegzoo.data.validation`,
which itself builds on :mod:`medsegzoo.data.datalist`: here both are imported at module level,
and neither of them imports this one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medsegzoo.data.datalist import (
    SPLIT_KEYS,
    load_datalist,
    new_datalist,
    resolve_base_dir,
    save_datalist,
)
from medsegzoo.data.validation import validate_datalist
from medsegzoo.errors import DataValidationError

__all__ = ["combine_datalists"]


def combine_datalists(
    parts: Iterable[tuple[str | os.PathLike, str | os.PathLike | None]],
    out: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    name: str = "partial_label_mix",
    check_files: bool = True,
) -> Path:
    """Merge several data sets' datalists into one whose paths start at ``dataset_dir``.

    Used to train one model on several partially labeled data sets (KiTS19 + MSD Liver + ...);
    ``medsegzoo datalist --combine`` is the command-line form.

    Args:
        parts: ``(datalist file, its data set folder or None for its own hint)`` pairs.
        out: combined datalist to write (atomically).
        dataset_dir: the common folder; every data set folder must lie inside it.
        name: the combined datalist's name.
        check_files: check the merged entries (schema, data sets, classes, every file exists
            under ``dataset_dir``) before writing; nothing is written when a check fails.

    Returns:
        The written path.

    Raises:
        DataValidationError: a data set folder outside ``dataset_dir``, a case id used twice,
            or (``check_files``) a missing file or malformed entry.
    """
    root = Path(dataset_dir).resolve()
    splits: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, str] = {}
    for path, base in parts:
        data = load_datalist(path)
        folder = Path(resolve_base_dir(data, path, base)).resolve()
        try:
            prefix = folder.relative_to(root)
        except ValueError as err:
            raise DataValidationError(f"{path}: its data set folder {folder} is not inside {root}") from err
        for key in SPLIT_KEYS:
            for entry in data.get(key, []):
                item = dict(entry)
                for field in ("image", "label"):
                    if isinstance(item.get(field), str):
                        item[field] = str(prefix / item[field])
                if isinstance(item.get("masks"), Mapping):
                    item["masks"] = {c: str(prefix / p) for c, p in item["masks"].items()}
                case_id = str(item.get("case_id"))
                if case_id in seen:
                    raise DataValidationError(f"{path}: case id {case_id!r} is also in {seen[case_id]}")
                seen[case_id] = str(path)
                splits.setdefault(key, []).append(item)
    combined = new_datalist(splits, name=name, layout="mixed", dataset_dir=root)
    if check_files:
        validate_datalist(combined, root, check_voxels=False, read_headers=False)
    return save_datalist(combined, out)
