"""The medsegzoo datalist: MONAI datalist JSON with one entry per case.

A datalist is the JSON file MONAI's :func:`monai.data.load_decathlon_datalist` reads, with a
few extra fields that every medsegzoo bundle relies on::

    {
        "name": "btcv",                  # free text, the layout's data set by default
        "layout": "btcv",                # the reader that built it
        "label_system": "btcv",          # native data set name of the label maps (None if mixed)
        "datasets": ["btcv"],            # every data set named by an entry
        "dataset_dir": "/data/BTCV",     # the folder the paths are relative to (a hint)
        "training": [entry, ...], "validation": [...], "test": [...],
        "unlabeled": [...],              # images without labels meant for (semi-)unsupervised use
        "unlabeled_test": [...]          # official test images whose labels are withheld
    }

One entry per case::

    {"case_id": "btcv_0001", "image": "RawData/Training/img/img0001.nii.gz",
     "label": "RawData/Training/label/label0001.nii.gz",   # OR "masks": {canonical: path}
     "dataset": "btcv", "labeled_classes": ["spleen", ...], "modality": "CT",
     "site": ..., "age": ..., "sex": "F", "manufacturer": ..., "spacing": [...]}

Paths are stored relative to the data set folder (``dataset_dir``), as MONAI expects with
``load_decathlon_datalist(path, base_dir=dataset_dir)``. MONAI joins ``image`` and ``label``
with ``base_dir`` but leaves dictionaries (``masks``) untouched and joins *any other string*
that happens to name an existing path under ``base_dir`` (a ``case_id`` equal to a case
folder's name, e.g. TotalSegmentator's ``s0000``, becomes an absolute path). :func:`load_split`
resolves exactly the path fields (``image``, ``label``, every mask) and nothing else; use it
when the datalist has per-class masks or when the case ids matter.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from medsegzoo.errors import DataValidationError
from medsegzoo.utils import atomic_write_json

__all__ = [
    "LABELED_SPLITS",
    "SPLIT_KEYS",
    "entry_paths",
    "format_problems",
    "load_datalist",
    "load_split",
    "make_case",
    "new_datalist",
    "random_split",
    "relative_path",
    "resolve_base_dir",
    "save_datalist",
    "schema_problems",
]

# Keys of a datalist that hold case lists, in the order they are written.
SPLIT_KEYS: tuple[str, ...] = ("training", "validation", "test", "unlabeled", "unlabeled_test")
# The keys whose entries carry labels (a label map or per-class masks).
LABELED_SPLITS: tuple[str, ...] = ("training", "validation", "test")
# Optional per-case metadata fields and the type each must have in JSON.
METADATA_FIELDS: dict[str, tuple[type, ...]] = {
    "modality": (str,),
    "site": (str,),
    "age": (int, float),
    "sex": (str,),
    "manufacturer": (str,),
    "scanner": (str,),
    "spacing": (list,),
    "study_type": (str,),
    "pathology": (str,),
    "grade": (str,),
    "has_tumor": (bool,),
    "phase": (str,),
    "sequence": (str,),
    "split": (str,),
}

T = TypeVar("T")


def make_case(
    case_id: str,
    image: str,
    *,
    dataset: str,
    labeled_classes: Sequence[str] = (),
    label: str | None = None,
    masks: Mapping[str, str] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    """Build one datalist entry (the schema of INTERFACES.md).

    Args:
        case_id: unique id of the case within the datalist.
        image: image path, relative to the data set folder (POSIX separators).
        dataset: native data set name (``medsegzoo.taxonomy.get_dataset`` key).
        labeled_classes: canonical names of the classes the case's label covers.
        label: label map path (relative); mutually exclusive with ``masks``.
        masks: canonical class name -> binary mask path (relative).
        **metadata: optional fields (``modality``, ``site``, ``age``, ``sex``, ...); ``None``
            values are dropped.

    Returns:
        The entry as a JSON-serialisable dict.

    Raises:
        DataValidationError: both ``label`` and ``masks`` were given.
    """
    if label is not None and masks:
        raise DataValidationError(
            f"case {case_id!r}: give either a label map or per-class masks, not both"
        )
    entry: dict[str, Any] = {"case_id": case_id, "image": image}
    if label is not None:
        entry["label"] = label
    if masks:
        entry["masks"] = dict(masks)
    entry["dataset"] = dataset
    entry["labeled_classes"] = list(labeled_classes)
    for key, value in metadata.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        entry[key] = value
    return entry


def new_datalist(
    splits: Mapping[str, list[dict[str, Any]]],
    *,
    name: str,
    layout: str,
    dataset_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Assemble a datalist from its split lists.

    ``label_system`` is the one data set every entry names, or the first of several whose
    label maps are identical (AMOS CT and MR share one map); ``None`` when entries mix label
    maps, in which case each entry's ``dataset`` tells how to read its label.

    Args:
        splits: split key (one of :data:`SPLIT_KEYS`) -> entries.
        name: datalist name.
        layout: name of the layout reader that produced it.
        dataset_dir: folder the relative paths start from.

    Returns:
        The datalist dict, every split key present (possibly empty).
    """
    # local import: taxonomy is the layer below data, imported lazily to keep this module light
    from medsegzoo.taxonomy import get_dataset

    unknown = set(splits) - set(SPLIT_KEYS)
    if unknown:
        raise DataValidationError(
            f"datalist {name!r}: unknown split keys {sorted(unknown)}; known: {SPLIT_KEYS}"
        )
    datasets: list[str] = []
    for key in SPLIT_KEYS:
        for entry in splits.get(key, []):
            if entry["dataset"] not in datasets:
                datasets.append(entry["dataset"])
    label_system = None
    if datasets:
        maps = {tuple(sorted(get_dataset(d).labels.items())) for d in datasets}
        label_system = datasets[0] if len(maps) == 1 else None
    datalist: dict[str, Any] = {
        "name": name,
        "layout": layout,
        "label_system": label_system,
        "datasets": datasets,
        "dataset_dir": str(Path(dataset_dir).resolve()) if dataset_dir is not None else None,
    }
    for key in SPLIT_KEYS:
        datalist[key] = list(splits.get(key, []))
    return datalist


def entry_paths(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The file paths an entry names, as ``(field, path)`` pairs.

    Args:
        entry: one datalist entry.

    Returns:
        ``("image", p)``, ``("label", p)`` if labeled by a map, and ``("masks.<class>", p)`` per mask.
    """
    out: list[tuple[str, str]] = []
    for key in ("image", "label"):
        if isinstance(entry.get(key), str):
            out.append((key, entry[key]))
    masks = entry.get("masks")
    if isinstance(masks, Mapping):
        out.extend((f"masks.{name}", path) for name, path in masks.items() if isinstance(path, str))
    return out


def schema_problems(entry: Any, where: str) -> list[str]:
    """Structural problems of one entry (types and required fields); no file access.

    Args:
        entry: the entry as loaded from JSON.
        where: where it sits, for messages ("list.json: training[3]").

    Returns:
        One message per problem (empty when the entry is well formed).
    """
    if not isinstance(entry, dict):
        return [f"{where}: entry must be a JSON object, got {type(entry).__name__}"]
    problems: list[str] = []
    case = entry.get("case_id")
    label = f"{where} (case {case!r})" if isinstance(case, str) else where
    if not isinstance(case, str) or not case:
        problems.append(f"{where}: 'case_id' must be a non-empty string")
    if not isinstance(entry.get("image"), str) or not entry.get("image"):
        problems.append(f"{label}: 'image' must be a path string")
    if not isinstance(entry.get("dataset"), str):
        problems.append(f"{label}: 'dataset' must name the case's data set")
    has_label = "label" in entry
    masks = entry.get("masks")
    if has_label and masks:
        problems.append(f"{label}: has both 'label' and 'masks'; give one")
    if has_label and not isinstance(entry["label"], str):
        problems.append(f"{label}: 'label' must be a path string")
    if masks is not None and (
        not isinstance(masks, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in masks.items())
    ):
        problems.append(f"{label}: 'masks' must map class names to path strings")
    classes = entry.get("labeled_classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append(f"{label}: 'labeled_classes' must be a list of class names")
    elif classes and not has_label and not masks:
        problems.append(
            f"{label}: lists labeled_classes {classes[:5]} but has no 'label' or 'masks'"
        )
    for key, types in METADATA_FIELDS.items():
        if key in entry and entry[key] is not None and not isinstance(entry[key], types):
            names = "/".join(t.__name__ for t in types)
            problems.append(f"{label}: metadata {key!r} must be {names}, got {entry[key]!r}")
    return problems


def _datalist_problems(datalist: Any, where: str) -> list[str]:
    if not isinstance(datalist, dict):
        return [f"{where}: a datalist must be a JSON object, got {type(datalist).__name__}"]
    problems: list[str] = []
    if not any(isinstance(datalist.get(k), list) for k in SPLIT_KEYS):
        problems.append(f"{where}: none of the split keys {list(SPLIT_KEYS)} holds a list of cases")
    for key in SPLIT_KEYS:
        cases = datalist.get(key, [])
        if not isinstance(cases, list):
            problems.append(f"{where}: {key!r} must be a list, got {type(cases).__name__}")
            continue
        for i, entry in enumerate(cases):
            problems.extend(schema_problems(entry, f"{where}: {key}[{i}]"))
    return problems


def save_datalist(datalist: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Check a datalist's structure and write it atomically (4-space JSON, like MONAI).

    Args:
        datalist: the datalist dict.
        path: output JSON file; its folder is created.

    Returns:
        The written path.

    Raises:
        DataValidationError: the datalist is malformed; nothing is written.
    """
    problems = _datalist_problems(dict(datalist), str(path))
    if problems:
        raise DataValidationError(format_problems(f"datalist not written to {path}", problems))
    return atomic_write_json(path, dict(datalist))


def load_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """Read a datalist JSON file and check its structure.

    Args:
        path: datalist file.

    Returns:
        The datalist dict, every split key present.

    Raises:
        DataValidationError: missing file, invalid JSON or malformed entries (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: datalist file does not exist")
    try:
        datalist = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataValidationError(f"{path}: not valid JSON ({err})") from None
    problems = _datalist_problems(datalist, str(path))
    if problems:
        raise DataValidationError(format_problems(f"{path}: malformed datalist", problems))
    for key in SPLIT_KEYS:
        datalist.setdefault(key, [])
    return datalist


def resolve_base_dir(
    datalist: Mapping[str, Any],
    datalist_path: str | os.PathLike | None,
    base_dir: str | os.PathLike | None,
) -> Path:
    """The folder relative paths start from.

    Order: the explicit ``base_dir``; else the datalist file's folder (MONAI's default) when
    the paths resolve there; else the recorded ``dataset_dir``; else the current folder.
    """
    if base_dir is not None:
        return Path(base_dir)
    recorded = datalist.get("dataset_dir")
    if datalist_path is not None:
        folder = Path(datalist_path).resolve().parent
        first = next(
            (p for k in SPLIT_KEYS for e in datalist.get(k, []) for _, p in entry_paths(e)), None
        )
        if recorded is None or first is None or (folder / first).exists():
            return folder
    return Path(recorded) if recorded else Path.cwd()


def load_split(
    datalist: str | os.PathLike | Mapping[str, Any],
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Entries of one split with absolute paths (``image``, ``label`` and every mask).

    Like MONAI's ``load_decathlon_datalist`` but it resolves per-class mask paths too and
    never rewrites ``case_id`` or metadata (see the module docstring).

    Args:
        datalist: datalist file or dict.
        key: split key.
        base_dir: folder the relative paths start from (see :func:`resolve_base_dir`).

    Returns:
        Copies of the entries with absolute path strings.

    Raises:
        DataValidationError: unknown split key or malformed datalist.
    """
    path = None
    if not isinstance(datalist, Mapping):
        path = datalist
        datalist = load_datalist(datalist)
    if key not in SPLIT_KEYS:
        raise DataValidationError(f"unknown split {key!r}; known splits: {', '.join(SPLIT_KEYS)}")
    base = resolve_base_dir(datalist, path, base_dir)
    out = []
    for entry in datalist.get(key, []):
        item = dict(entry)
        for field in ("image", "label"):
            if isinstance(item.get(field), str):
                item[field] = os.path.normpath(os.path.join(base, item[field]))
        if isinstance(item.get("masks"), Mapping):
            item["masks"] = {
                c: os.path.normpath(os.path.join(base, p)) for c, p in item["masks"].items()
            }
        out.append(item)
    return out


def relative_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` with POSIX separators (how datalists store paths).

    Args:
        path: a file or folder inside (or outside) ``base``.
        base: the data set folder.

    Returns:
        The relative path string ("imagesTr/a.nii.gz", or "../x/a.nii.gz" outside ``base``).
    """
    return Path(os.path.relpath(Path(path).absolute(), Path(base).absolute())).as_posix()


def random_split(
    items: Iterable[T],
    *,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    key: Any = None,
) -> tuple[list[T], list[T], list[T]]:
    """Deterministic random train/validation/test split.

    The items are sorted (by ``key``) before shuffling, so the split depends only on the set
    of items and the seed, not on the order a file system lists them in. Each non-zero
    fraction gets at least one item as long as one item is left for training.

    Args:
        items: the items to split (e.g. datalist entries).
        val_fraction: fraction for validation, in [0, 1).
        test_fraction: fraction for test, in [0, 1).
        seed: seed of the shuffle.
        key: sort key for the items (default: the items themselves).

    Returns:
        ``(train, val, test)`` lists, each in sorted order.

    Raises:
        DataValidationError: fractions outside [0, 1) or summing to 1 or more.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DataValidationError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise DataValidationError(
            f"val_fraction + test_fraction must leave cases for training, got {val_fraction} + {test_fraction}"
        )
    ordered = sorted(items, key=key) if key is not None else sorted(items)  # type: ignore[type-var]
    n = len(ordered)

    def count(fraction: float) -> int:
        return max(1, round(fraction * n)) if fraction > 0 and n > 0 else 0

    n_test = count(test_fraction)
    n_val = count(val_fraction)
    while n_test + n_val >= n and (n_test or n_val) and n > 0:  # keep one training case
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    test_idx = set(order[:n_test].tolist())
    val_idx = set(order[n_test : n_test + n_val].tolist())
    train = [x for i, x in enumerate(ordered) if i not in test_idx and i not in val_idx]
    val = [x for i, x in enumerate(ordered) if i in val_idx]
    test = [x for i, x in enumerate(ordered) if i in test_idx]
    return train, val, test


def format_problems(title: str, problems: Sequence[str], limit: int = 50) -> str:
    """One message listing problems, one per line.

    Args:
        title: what was checked ("list.json (files under /data)").
        problems: one message per problem.
        limit: how many to list before summarising the rest as a count.

    Returns:
        "title: N problems" followed by one indented line per problem.
    """
    lines = [f"{title}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
    lines += [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
