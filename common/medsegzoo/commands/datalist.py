"""``medsegzoo datalist``: build a MONAI datalist JSON from a data set folder, or check one.

Examples::

    medsegzoo datalist btcv /data/BTCV --out btcv.json
    medsegzoo datalist totalsegmentator /data/Totalsegmentator_dataset_v201 --out ts.json --validate
    medsegzoo datalist kits19 /data/kits19 --out kits.json --split 0.8/0.0/0.2 --seed 1
    medsegzoo datalist la "/data/LA" --out la.json --split "training=train.list,test=test.list"
    medsegzoo datalist --check btcv.json --base-dir /data/BTCV
    medsegzoo datalist --combine /data/tct/kits19/kits.json /data/tct/liver/liver.json::/data/tct/liver \
        --dataset-dir /data/tct --out /data/tct/datalist.json --name tct_mix
    medsegzoo datalist --list-layouts

The datalist is validated before it is written and is written atomically: a failed run leaves
no file behind. By default every file named by the layout must exist and its header is read
(readable, not truncated, a 3D volume, image and label of the same shape and affine);
``--validate`` also reads the voxels (NaN/inf, label values within the data set's map);
``--no-check`` skips the header reads (existence is still checked). ``--out`` is checked before
any folder is scanned.

Where a layout labels every case of a part (BTCV/MSD ``imagesTr``, AMOS/WORD training and
validation, FLARE22 ``FLARE22_Tr_*``, KiTS19 cases 0-209, LiTS training volumes, CHAOS and
BraTS training sets, AbdomenAtlas), an image without its label is an error naming the case;
``--allow-unlabeled`` lists such cases as a warning and puts them under ``unlabeled``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any

from medsegzoo.data.combine import combine_datalists
from medsegzoo.data.datalist import SPLIT_KEYS, load_datalist
from medsegzoo.data.readers import _READERS, build_datalist, write_datalist
from medsegzoo.data.validation import DEFAULT_AFFINE_TOL, validate_datalist
from medsegzoo.taxonomy import get_dataset
from medsegzoo.utils.atomic import check_output_path

HELP = "build a MONAI datalist JSON from a data set folder in its public layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``datalist`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument(
        "layout", nargs="?", help="layout name (see --list-layouts) or one of its data sets"
    )
    parser.add_argument("root", nargs="?", help="the data set folder as downloaded")
    parser.add_argument("--out", "-o", help="datalist JSON to write")
    parser.add_argument(
        "--split",
        default="official",
        help="'official' (default), 'random', TRAIN/VAL/TEST fractions like 0.7/0.1/0.2, "
        "a JSON split file, or 'training=train.list,test=test.list'",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.0, help="random validation fraction (default 0)"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.0, help="random test fraction (default 0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random splits (default 0)")
    parser.add_argument("--name", help="datalist name (default: the layout)")
    checks = parser.add_mutually_exclusive_group()
    checks.add_argument(
        "--validate",
        action="store_true",
        help="also read every voxel before writing (NaN/inf, label values); headers are read by default",
    )
    checks.add_argument(
        "--no-check",
        action="store_true",
        help="skip the header checks (readable, 3D, image/label shapes and affines); files must still exist",
    )
    parser.add_argument(
        "--allow-unlabeled",
        action="store_true",
        help="list images of a fully labeled layout part that lack their label as unlabeled (warning), not an error",
    )
    parser.add_argument(
        "--check", metavar="DATALIST", help="validate an existing datalist instead of building one"
    )
    parser.add_argument("--base-dir", help="folder the paths of --check's datalist are relative to")
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="DATALIST[::DIR]",
        help="merge several data sets' datalists into --out, paths relative to --dataset-dir (DIR: the "
        "folder a datalist's paths start from, when it is not recorded in the file)",
    )
    parser.add_argument("--dataset-dir", help="with --combine: common folder of the data sets (the bundles' dataset_dir)")
    parser.add_argument(
        "--headers-only", action="store_true", help="with --check: read headers, not voxels"
    )
    parser.add_argument(
        "--affine-tol", type=float, default=None, help="tolerance on affine entries in mm (1e-3)"
    )
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="threads reading files"
    )
    parser.add_argument(
        "--list-layouts", action="store_true", help="print the known layouts and exit"
    )


def _validation_kwargs(args: argparse.Namespace) -> dict[str, Any]:

    return {
        "affine_tol": DEFAULT_AFFINE_TOL if args.affine_tol is None else args.affine_tol,
        "workers": max(1, args.workers),
    }


def _print_layouts() -> int:

    for name, reader in _READERS.items():
        print(f"{name:18s} {reader.title}: {reader.expected}")
        print(
            f"{'':18s} data sets: {', '.join(reader.datasets)}; official split: {reader.official_split}"
        )
    return 0


def _summary(datalist: dict[str, Any]) -> str:

    counts = ", ".join(f"{k} {len(datalist.get(k, []))}" for k in SPLIT_KEYS if datalist.get(k))
    datasets = Counter(e["dataset"] for k in SPLIT_KEYS for e in datalist.get(k, []))
    classes = sorted(
        {c for k in SPLIT_KEYS for e in datalist.get(k, []) for c in e.get("labeled_classes", [])}
    )
    lines = [
        f"cases: {counts or 'none'}",
        f"data sets: {', '.join(f'{d} ({n})' for d, n in datasets.items())}",
        f"labeled classes ({len(classes)}): {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}",
    ]
    if datalist.get("excluded_cases"):
        lines.append(f"left out by the split: {len(datalist['excluded_cases'])} labeled cases")
    incomplete = _incomplete_mask_cases(datalist)
    if incomplete:
        shown = "; ".join(
            f"{case} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            for case, missing in incomplete[:5]
        )
        lines.append(
            f"note: {len(incomplete)} case(s) have fewer mask files than their data set defines, so they "
            f"label fewer classes (a partial download?): {shown}{' ...' if len(incomplete) > 5 else ''}"
        )
    return "\n".join(lines)


def _incomplete_mask_cases(datalist: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(case id, classes of its data set without a mask file) of per-class-mask cases."""

    out = []
    for key in SPLIT_KEYS:
        for entry in datalist.get(key, []):
            if not entry.get("masks"):
                continue
            missing = [c for c in get_dataset(entry["dataset"]).classes if c not in entry["masks"]]
            if missing:
                out.append((str(entry.get("case_id", entry["image"])), missing))
    return out


def _combine(args: argparse.Namespace) -> int:

    if not args.dataset_dir or not args.out:
        print("medsegzoo datalist: error: --combine needs --dataset-dir and --out", file=sys.stderr)
        return 2
    parts = [(p.split("::", 1)[0], p.split("::", 1)[1] if "::" in p else None) for p in args.combine]
    path = combine_datalists(parts, args.out, args.dataset_dir, name=args.name or "combined")
    print(f"wrote {path}")
    print(_summary(load_datalist(path)))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (errors are raised as MedSegZooError)."""

    if args.list_layouts:
        return _print_layouts()
    if args.out and not args.check:
        check_output_path(args.out)  # a file in the way or no permission: fail before scanning
    if args.check:
        summary = validate_datalist(
            args.check,
            args.base_dir,
            check_voxels=not args.headers_only,
            **_validation_kwargs(args),
        )
        print(f"{args.check}: {summary.cases} cases, {summary.files} files: no problem found")
        return 0
    if args.combine:
        return _combine(args)
    if not args.layout or not args.root or not args.out:
        print(
            "medsegzoo datalist: error: LAYOUT, ROOT and --out are required (or --check / --list-layouts)",
            file=sys.stderr,
        )
        return 2


    datalist = build_datalist(
        args.layout,
        args.root,
        split=args.split,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        name=args.name,
        allow_unlabeled=args.allow_unlabeled,
    )
    # Always check structure, data sets, classes and that every file exists; by default the
    # headers too (a truncated or 4D file fails here, not in the first training epoch);
    # --validate reads the voxels. Either way nothing is written when a problem is found.
    validate_datalist(
        datalist,
        args.root,
        check_voxels=args.validate,
        read_headers=not args.no_check,
        **_validation_kwargs(args),
    )
    path = write_datalist(datalist, args.out)
    print(f"wrote {path}")
    print(_summary(datalist))
    if datalist.get("missing_labels"):
        missing = datalist["missing_labels"]
        print(
            f"warning: {len(missing)} image(s) of a labeled part of the layout have no label and are listed as "
            f"unlabeled (--allow-unlabeled): {', '.join(missing)}",
            file=sys.stderr,
        )
    return 0
