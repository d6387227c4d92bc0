"""Datalists from the public data set layouts as distributed.

``build_datalist("btcv", "/data/BTCV")`` finds the layout's files, maps each case to its native
data set (and so to canonical class names through :mod:`medsegzoo.taxonomy`), reads the
official split and metadata where the layout has them, and returns a datalist dict
(:mod:`medsegzoo.data.datalist`). ``write_datalist`` writes it atomically.

Layout names: see :func:`list_layouts`. Besides the layout names, every data set a reader can
produce is accepted as a layout name and restricts the datalist to that data set
(``msd_spleen``: an MSD folder that must hold Task09_Spleen; ``chaos_mr``: only the MR cases
of a CHAOS download; ``amos_mr``: only AMOS' MR scans).

Splits (``split=``):

* ``None`` / ``"official"``: the layout's official split; labeled cases without one go to
  training. ``val_fraction`` / ``test_fraction`` then carve a random validation / test set out
  of training, only for a split the layout does not provide.
* ``"random"``: ignore official splits; every labeled case is split at random.
* ``"0.7/0.1/0.2"``: random, with these train/validation/test fractions.
* a mapping ``{"training": [case ids], "validation": [...], "test": [...], "unlabeled": [...]}``,
  a JSON file holding one (``train``/``val`` spellings and nnU-Net's ``splits_final.json``
  fold 0 accepted), or ``"training=train.list,test=test.list"`` (text files, one case id per
  line). Labeled cases the split does not name are left out (listed under
  ``excluded_cases``); cases put in ``unlabeled`` lose their labels.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsegzoo.data.datalist import (
    LABELED_SPLITS,
    SPLIT_KEYS,
    format_problems,
    make_case,
    new_datalist,
    random_split,
    relative_path,
    save_datalist,
)
from medsegzoo.data.readers.abdomenatlas import AbdomenAtlasReader
from medsegzoo.data.readers.abdomenct1k import AbdomenCT1KReader
from medsegzoo.data.readers.amos import AMOSReader
from medsegzoo.data.readers.base import LayoutReader, ScannedCase
from medsegzoo.data.readers.brats2019 import BraTS2019Reader
from medsegzoo.data.readers.btcv import BTCVReader
from medsegzoo.data.readers.chaos import CHAOSReader
from medsegzoo.data.readers.ct_org import CTORGReader
from medsegzoo.data.readers.flare22 import FLARE22Reader
from medsegzoo.data.readers.kits19 import KiTS19Reader
from medsegzoo.data.readers.la import LAReader
from medsegzoo.data.readers.lits import LiTSReader
from medsegzoo.data.readers.msd import MSDReader
from medsegzoo.data.readers.pancreas_ct import PancreasCTReader
from medsegzoo.data.readers.totalsegmentator import TotalSegmentatorReader
from medsegzoo.data.readers.word import WORDReader
from medsegzoo.errors import DataValidationError, LayoutError, UnknownNameError
from medsegzoo.taxonomy import get_dataset

__all__ = [
    "LayoutReader",
    "ScannedCase",
    "SplitSpec",
    "build_datalist",
    "get_reader",
    "list_layouts",
    "read_split_file",
    "write_datalist",
]

_READERS: dict[str, LayoutReader] = {
    reader.name: reader
    for reader in (
        MSDReader(),
        BTCVReader(),
        AMOSReader(),
        WORDReader(),
        FLARE22Reader(),
        TotalSegmentatorReader(),
        AbdomenAtlasReader(),
        KiTS19Reader(),
        LiTSReader(),
        CHAOSReader(),
        CTORGReader(),
        AbdomenCT1KReader(),
        PancreasCTReader(),
        LAReader(),
        BraTS2019Reader(),
    )
}
# data set name -> layout reading it (used when a data set is given as the layout)
_BY_DATASET: dict[str, str] = {d: r.name for r in _READERS.values() for d in r.datasets}

SplitSpec = str | os.PathLike | Mapping[str, Sequence[str]] | None
_FRACTIONS = re.compile(r"\s*([\d.]+)\s*/\s*([\d.]+)\s*/\s*([\d.]+)\s*")
_SPLIT_SYNONYMS = {
    "train": "training",
    "val": "validation",
    "valid": "validation",
    "testing": "test",
}


def list_layouts() -> tuple[str, ...]:
    """Names of every layout reader, in the order of the docs."""
    return tuple(_READERS)


def get_reader(layout: str) -> tuple[LayoutReader, str | None]:
    """The reader of a layout, and the data set the layout name restricts to (if any).

    Args:
        layout: a layout name ("msd", "btcv", ...) or a data set name one of them produces
            ("msd_spleen", "chaos_mr", "amos_mr").

    Returns:
        ``(reader, dataset or None)``.

    Raises:
        UnknownNameError: unknown layout; the message lists the known ones.
    """
    key = str(layout).strip().lower().replace("-", "_")
    if key in _READERS:
        return _READERS[key], None
    if key in _BY_DATASET:
        return _READERS[_BY_DATASET[key]], key
    raise UnknownNameError(
        f"unknown layout {layout!r}; known layouts: {', '.join(_READERS)} "
        f"(or a data set of one of them: {', '.join(sorted(_BY_DATASET))})"
    )


def build_datalist(
    layout: str,
    root: str | os.PathLike,
    split: SplitSpec = None,
    seed: int = 0,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    *,
    name: str | None = None,
    allow_unlabeled: bool = False,
) -> dict[str, Any]:
    """Build a MONAI datalist from a data set folder in its public layout.

    Args:
        layout: layout name (see :func:`get_reader`).
        root: the data set folder (the paths of the datalist are relative to it).
        split: how to split labeled cases (module docstring).
        seed: seed of random splits.
        val_fraction: validation fraction for random splits.
        test_fraction: test fraction for random splits.
        name: datalist name (default: the layout name).
        allow_unlabeled: where the layout labels every case of a part (``imagesTr/``), accept
            an image without its label as an unlabeled case (listed under ``missing_labels``)
            instead of failing.

    Returns:
        The datalist dict (:func:`medsegzoo.data.datalist.new_datalist`).

    Raises:
        UnknownNameError: unknown layout.
        LayoutError: the folder does not hold the layout, holds no case, or contradicts it;
            a split names cases that do not exist.
        DataValidationError: bad fractions or split file; files the layout lists are missing;
            without ``allow_unlabeled``, images of a labeled part without their label (every
            such case named, with the label file expected).
    """
    reader, only_dataset = get_reader(layout)
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(
            f"{root}: data set folder does not exist"
            if not root.exists()
            else f"{root}: not a folder"
        )
    top = reader.locate(root)
    cases = reader.scan(top)
    if only_dataset is not None:
        seen = sorted({c.dataset for c in cases})
        cases = [c for c in cases if c.dataset == only_dataset]
        if not cases:
            raise LayoutError(
                f"{top}: no {only_dataset} case in this {reader.title} folder (found data sets: {seen})"
            )
    if not cases:
        raise reader.error(top, f"holds no {reader.title} case")
    for case in cases:
        if case.label is not None and not case.label.exists():
            # named by the layout's own file list (MSD dataset.json) but absent: a lost label
            case.missing_label, case.label = case.label, None
    _check_files_exist(cases, top)
    missing_labels = _missing_labels(cases, top, allow_unlabeled)
    _add_manifest_metadata(cases, root, top)
    splits, excluded = _assign_splits(cases, split, seed, val_fraction, test_fraction)
    entries = {key: [_entry(c, root, key) for c in splits[key]] for key in SPLIT_KEYS}
    datalist = new_datalist(
        entries, name=name or (only_dataset or reader.name), layout=reader.name, dataset_dir=root
    )
    if excluded:
        datalist["excluded_cases"] = sorted(excluded)
    if missing_labels:
        datalist["missing_labels"] = missing_labels
    return datalist


def _missing_labels(cases: list[ScannedCase], top: Path, allow: bool) -> list[str]:
    """Case ids of images whose label the layout should have but does not.

    Raises:
        DataValidationError: without ``allow``, naming every such case and its expected label.
    """
    missing = sorted((c for c in cases if c.missing_label is not None and not c.is_labeled), key=lambda c: c.case_id)
    if missing and not allow:
        raise DataValidationError(
            format_problems(
                f"{top}: images without their label in a labeled part of the layout (deleted or misnamed? "
                "restore the label files, or pass --allow-unlabeled to list these cases as unlabeled)",
                [f"{c.image}: case {c.case_id} has no label (expected {c.missing_label})" for c in missing],
            )
        )
    return [c.case_id for c in missing]


def write_datalist(datalist: Mapping[str, Any], out_path: str | os.PathLike) -> Path:
    """Write a datalist atomically (checked first; nothing is written when it is malformed).

    Args:
        datalist: datalist dict from :func:`build_datalist`.
        out_path: JSON file to write.

    Returns:
        The written path.
    """
    return save_datalist(datalist, out_path)


# Written by ``medsegzoo phantoms`` beside the layout (medsegzoo.data.phantoms.layouts.MANIFEST_NAME):
# per-case metadata most real layouts do not carry. Read by name so that reading real data
# never imports the phantom generator.
PHANTOM_MANIFEST = "phantom_manifest.json"
# manifest record field -> datalist entry field
_MANIFEST_FIELDS = {
    "site": "site",
    "manufacturer": "manufacturer",
    "scanner": "scanner",
    "age": "age",
    "sex": "sex",
    "has_tumor": "has_tumor",
    "grade": "grade",
    "contrast_phase": "phase",
}


def _add_manifest_metadata(cases: list[ScannedCase], root: Path, top: Path) -> None:
    """Fill metadata the layout lacks from a phantom manifest, matching cases by image path."""
    folders = [top, *[p for p in top.parents if p == root or root in p.parents]]
    manifest = next(
        (f / PHANTOM_MANIFEST for f in folders if (f / PHANTOM_MANIFEST).is_file()), None
    )
    if manifest is None:
        return
    try:
        records = json.loads(manifest.read_text(encoding="utf-8")).get("records", [])
    except (OSError, ValueError, AttributeError) as err:
        raise LayoutError(f"{manifest}: cannot read the phantom manifest ({err})") from None
    by_image = {
        os.path.normpath(manifest.parent / r["image"]): r
        for r in records
        if isinstance(r, dict) and isinstance(r.get("image"), str)
    }
    for case in cases:
        record = by_image.get(os.path.normpath(case.image))
        if record is None:
            continue
        for source, target in _MANIFEST_FIELDS.items():
            if record.get(source) is not None and target not in case.metadata:
                case.metadata[target] = record[source]


def _check_files_exist(cases: list[ScannedCase], top: Path) -> None:
    missing = []
    for case in cases:
        paths = [("image", case.image)] + ([("label", case.label)] if case.label else [])
        paths += [(f"mask {k!r}", p) for k, p in (case.masks or {}).items()]
        missing += [
            f"{p}: {role} of case {case.case_id} does not exist"
            for role, p in paths
            if not p.exists()
        ]
    if missing:
        head = f"{top}: {len(missing)} file{'s' if len(missing) > 1 else ''} named by the layout do not exist"
        raise DataValidationError(
            "\n  - ".join([head, *missing[:50]]) + ("\n  ..." if len(missing) > 50 else "")
        )


def _entry(case: ScannedCase, root: Path, key: str) -> dict[str, Any]:

    spec = get_dataset(case.dataset)
    keep_labels = (
        key != "unlabeled"
    )  # a labeled case placed in "unlabeled" by a split loses its label
    label = relative_path(case.label, root) if case.label is not None and keep_labels else None
    masks = (
        {k: relative_path(p, root) for k, p in (case.masks or {}).items()} if keep_labels else None
    )
    if not (label or masks):
        classes: Sequence[str] = ()
    elif case.labeled_classes is not None:
        classes = case.labeled_classes
    else:
        classes = spec.classes
    metadata = {"modality": spec.modality, **case.metadata}
    return make_case(
        case.case_id,
        relative_path(case.image, root),
        dataset=case.dataset,
        labeled_classes=list(classes),
        label=label,
        masks=masks or None,
        **metadata,
    )


def _assign_splits(
    cases: list[ScannedCase], split: SplitSpec, seed: int, val_fraction: float, test_fraction: float
) -> tuple[dict[str, list[ScannedCase]], list[str]]:
    """Put every case under one split key; returns the splits and the excluded case ids."""
    by_id: dict[str, ScannedCase] = {}
    for case in cases:
        if case.case_id in by_id:
            raise LayoutError(
                f"{case.image}: case id {case.case_id!r} also names {by_id[case.case_id].image}"
            )
        by_id[case.case_id] = case
    # official placement first: labeled cases by their split, the others by theirs
    home: dict[str, str] = {}
    for case in cases:
        if case.is_labeled and case.split not in ("unlabeled", "unlabeled_test"):
            home[case.case_id] = case.split if case.split in LABELED_SPLITS else "training"
        else:
            home[case.case_id] = "unlabeled_test" if case.split == "unlabeled_test" else "unlabeled"
    labeled_ids = [i for i, key in home.items() if key in LABELED_SPLITS]
    mode, fractions, mapping = _parse_split(split)
    if fractions is not None:
        val_fraction, test_fraction = fractions
    excluded: list[str] = []
    if mode == "random":
        for case_id in labeled_ids:
            home[case_id] = "training"
    elif mode == "mapping":
        assert mapping is not None
        unknown = sorted({i for ids in mapping.values() for i in ids} - set(by_id))
        if unknown:
            raise LayoutError(
                f"split names {len(unknown)} case{'s' if len(unknown) > 1 else ''} this folder does not hold: "
                f"{', '.join(unknown[:10])}" + (" ..." if len(unknown) > 10 else "")
            )
        placed: dict[str, str] = {}
        for key, ids in mapping.items():
            for case_id in ids:
                if case_id in placed:
                    raise DataValidationError(
                        f"split puts case {case_id!r} in both {placed[case_id]!r} and {key!r}"
                    )
                if key in LABELED_SPLITS and not by_id[case_id].is_labeled:
                    raise DataValidationError(
                        f"split puts case {case_id!r} in {key!r} but the case has no label"
                    )
                placed[case_id] = key
        excluded = [i for i in labeled_ids if i not in placed]
        for case_id in excluded:
            del home[case_id]
        home.update(placed)
    out: dict[str, list[ScannedCase]] = {key: [] for key in SPLIT_KEYS}
    for case_id, key in home.items():
        out[key].append(by_id[case_id])
    # carve validation/test at random out of training where no split provides them
    wanted = {"validation": val_fraction, "test": test_fraction}
    carve = {k: f if (mode == "random" or not out[k]) else 0.0 for k, f in wanted.items()}
    if any(carve.values()):
        train, val, test = random_split(
            out["training"],
            val_fraction=carve["validation"],
            test_fraction=carve["test"],
            seed=seed,
            key=lambda c: c.case_id,
        )
        out["training"], out["validation"], out["test"] = (
            train,
            out["validation"] + val,
            out["test"] + test,
        )
    for key in SPLIT_KEYS:
        out[key].sort(key=lambda c: c.case_id)
    return out, excluded


def _parse_split(
    split: SplitSpec,
) -> tuple[str, tuple[float, float] | None, dict[str, list[str]] | None]:
    """``(mode, (val, test) fractions or None, mapping or None)``; mode official/random/mapping."""
    if split is None:
        return "official", None, None
    if isinstance(split, Mapping):
        return "mapping", None, _normalise_mapping(split, "split")
    text = str(split).strip()
    if text.lower() in ("official", ""):
        return "official", None, None
    if text.lower() == "random":
        return "random", None, None
    match = _FRACTIONS.fullmatch(text)
    if match:
        train, val, test = (float(g) for g in match.groups())
        if abs(train + val + test - 1.0) > 1e-6:
            raise DataValidationError(f"split fractions {text!r} must add up to 1 (train/val/test)")
        return "random", (val, test), None
    return "mapping", None, read_split_file(text)


def _normalise_mapping(mapping: Mapping[str, Any], source: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, ids in mapping.items():
        name = _SPLIT_SYNONYMS.get(str(key).lower(), str(key).lower())
        if name not in SPLIT_KEYS or name == "unlabeled_test":
            raise DataValidationError(
                f"{source}: unknown split {key!r}; use training, validation, test or unlabeled"
            )
        if (
            not isinstance(ids, Sequence)
            or isinstance(ids, str)
            or not all(isinstance(i, str) for i in ids)
        ):
            raise DataValidationError(f"{source}: split {key!r} must be a list of case ids")
        out.setdefault(name, []).extend(ids)
    return out


def read_split_file(spec: str | os.PathLike) -> dict[str, list[str]]:
    """Read a split given as a JSON file or as ``key=file,key=file`` text lists.

    Args:
        spec: JSON path (``{"training": [ids], ...}``, or nnU-Net's ``splits_final.json``, a
            list of folds whose first ``{"train", "val"}`` is used), or comma-separated
            ``key=path`` pairs of text files with one case id per line.

    Returns:
        Split key -> case ids.

    Raises:
        DataValidationError: unreadable file, unknown key, malformed content.
    """
    text = str(spec)
    if "=" in text and not Path(text).exists():
        out: dict[str, list[str]] = {}
        for pair in text.split(","):
            key, _, file = pair.partition("=")
            path = Path(file.strip())
            if not path.is_file():
                raise DataValidationError(f"{path}: split list file does not exist")
            ids = [
                line.strip().split("/")[0]
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            out.update(_normalise_mapping({key.strip(): ids}, str(path)))
        return out
    path = Path(text)
    if not path.is_file():
        raise DataValidationError(
            f"{path}: split file does not exist (split must be 'official', 'random', "
            "'TRAIN/VAL/TEST' fractions, a JSON file or 'key=list.txt,...')"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{path}: split file is not valid JSON ({err})") from None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # nnU-Net splits_final.json: fold 0
    if not isinstance(data, dict):
        raise DataValidationError(f"{path}: split file must map split names to lists of case ids")
    return _normalise_mapping({k: v for k, v in data.items() if isinstance(v, list)}, str(path))
