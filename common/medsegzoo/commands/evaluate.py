"""``medsegzoo evaluate``: score predictions against ground truth and write a report.

Examples::

    medsegzoo evaluate --pred preds/ --gt /data/AbdomenAtlas --labels touchstone9 --out report/ --convention touchstone
    medsegzoo evaluate --pred preds/ --gt flare22.json --labels aeval8 --out report/ --split test
    medsegzoo evaluate --pred preds/ --gt labels/ --gt-labels btcv --labels aeval8 --out report/ --tolerance 2

``--pred`` and ``--gt`` are folders of label maps (``<case>.nii.gz``) or of per-class masks
(``<case>/segmentations/<class>.nii.gz``, AbdomenAtlas/Touchstone layout); ``--gt`` may also
be a medsegzoo datalist JSON. Prediction label values are those of ``--labels``; ground
truth label maps are converted from ``--gt-labels`` (or the datalist's data set). The voxel
spacing is the ground truth header's. Metrics: DSC, NSD at a per-class tolerance, HD95
(DeepMind's robust Hausdorff), ASSD; docs/evaluation.md defines them.

Writes to ``--out``: ``per_case.csv`` (one row per case and class), ``per_class.csv``,
``summary.md``, ``summary.json``, box plots (PNG) and ``evaluation.json`` (the settings and
what was skipped). Cases missing on one side stop the run unless ``--allow-missing``, which
skips them and records the count in the report. Without ``--tolerance``, classes the
convention's preset table lacks are scored at its general tolerance (aeval: 2 mm), named in
evaluation.json and summary.md; a table given with ``--tolerance`` must cover every class.

``--out`` is checked before scoring; it may be missing, empty or an earlier report, which is
replaced as a whole only when the new one is complete (written into a staging folder beside it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from medsegzoo.evaluation.cases import evaluate_cases
from medsegzoo.evaluation.conventions import defaulted_classes, tolerance_notes
from medsegzoo.evaluation.reports import report_folder, write_report
from medsegzoo.utils import atomic_write_json

HELP = "score predictions against ground truth (DSC, NSD, HD95, ASSD) and write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--pred", required=True, help="prediction folder (label maps or per-class masks)")
    parser.add_argument("--gt", required=True, help="ground-truth folder or datalist JSON")
    parser.add_argument("--labels", required=True, help="label system of the predictions and the report (touchstone9, aeval8, ...)")
    parser.add_argument("--out", required=True, help="report folder (created)")
    parser.add_argument("--gt-labels", help="data set / label system of ground-truth label maps, when not --labels")
    parser.add_argument("--split", help="datalist split (default: every labeled split)")
    parser.add_argument("--convention", default="aeval", help="empty-mask convention: aeval (default) or touchstone")
    parser.add_argument(
        "--tolerance",
        help="NSD tolerance: preset flare22/aeval/touchstone or mm for every class (default: the convention's)",
    )
    parser.add_argument("--metrics", default="dsc,nsd,hd95,assd", help="comma-separated metrics (default: all four)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="worker processes (default min(4, CPUs))")
    parser.add_argument("--metadata", help="CSV with a 'case' column joined to the table (site, age, sex, ...)")
    parser.add_argument("--allow-missing", action="store_true", help="skip cases present on one side only (counted in the report)")
    parser.add_argument("--title", help="report title (default: the prediction folder's name)")
    parser.add_argument("--no-plots", action="store_true", help="write tables only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def engine_options(args: argparse.Namespace, metrics: list[str]) -> dict[str, Any]:
    """Keyword arguments of :func:`~medsegzoo.evaluation.cases.evaluate_cases` shared by the
    ``evaluate`` and ``compare`` commands (same flags, same meaning)."""
    return {
        "gt_labels": args.gt_labels,
        "split": args.split,
        "convention": args.convention,
        "tolerances": args.tolerance,  # a preset name or mm, as get_tolerances reads it
        "metrics": metrics,
        "workers": max(1, args.workers),
        "allow_missing": args.allow_missing,
    }


def _print_summary(table: Any, metrics: list[str]) -> None:
    means = table.groupby("class", sort=False)[metrics].mean()
    print(f"{table['case'].nunique()} cases, {len(means)} classes; mean per class (NaN left out):")
    print(means.to_string(float_format=lambda v: f"{v:.4f}"))


def tolerance_fields(settings: Any) -> dict[str, Any]:
    """The NSD tolerance entries of ``evaluation.json``: per class, where they come from, and
    which classes took the table's default (the convention's general tolerance)."""

    table = settings.tolerances_mm
    if table is None:
        return {"nsd_tolerance_mm": None}
    classes = list(settings.system.classes)
    return {
        "nsd_tolerance_mm": {c: table[c] for c in classes},
        "nsd_tolerance_table": getattr(table, "name", "custom"),
        "nsd_tolerance_default_mm": getattr(table, "default", None),
        "nsd_tolerance_defaulted_classes": defaulted_classes(table, classes),
    }


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report and print the per-class means; returns the exit code."""

    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    out = Path(args.out)
    # the report is staged beside --out from the start: an unwritable --out fails before scoring,
    # and a failure (or a kill) while writing leaves the previous report, never a mix
    with report_folder(out) as staging:
        result = evaluate_cases(
            args.pred, args.gt, args.labels, **engine_options(args, metrics),
            metadata=args.metadata, progress=not args.quiet,
        )
        settings = result.settings
        notes = result.notes() + tolerance_notes(settings.tolerances_mm, settings.system.classes)
        title = args.title or f"Evaluation of {Path(args.pred).resolve().name}"
        files = write_report(
            result.table, staging, title, metrics=metrics, classes=list(settings.system.classes),
            notes=notes, plots=not args.no_plots,
            group_columns=[c for c in ("site", "sex", "manufacturer", "modality", "dataset") if c in result.table.columns],
        )
        files["evaluation.json"] = atomic_write_json(
            staging / "evaluation.json",
            {
                "pred": str(Path(args.pred).resolve()),
                "gt": str(Path(args.gt).resolve()),
                "label_system": settings.system.name,
                "classes": list(settings.system.classes),
                "convention": settings.convention.name,
                **tolerance_fields(settings),
                "metrics": list(settings.metrics),
                "hd_percentile": settings.hd_percentile,
                "n_cases": int(result.table["case"].nunique()),
                "skipped_missing_prediction": result.missing_prediction,
                "skipped_missing_ground_truth": result.missing_ground_truth,
                "notes": notes,
            },
        )
    _print_summary(result.table, metrics)
    for line in notes:
        if line.startswith("skipped"):
            print(line, file=sys.stderr)
    print(f"wrote {len(files)} files to {out} (per_case.csv, summary.md, ...)")
    return 0
