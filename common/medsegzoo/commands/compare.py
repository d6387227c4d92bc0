"""``medsegzoo compare``: compare several algorithms on the same cases (Touchstone statistics).

Examples::

    medsegzoo compare unet=preds/unet stunet=preds/stunet --gt /data/BTCV --labels touchstone9 \\
        --metadata meta.csv --out reports/btcv
    medsegzoo compare unet=runs/unet/per_case.csv stunet=runs/stunet/per_case.csv --out reports/cmp

Each ``NAME=PATH`` is an algorithm: PATH is a folder of predictions (scored against
``--gt`` by the evaluation engine, like ``medsegzoo evaluate``) or a ``per_case.csv``
written by an earlier ``evaluate``/``compare`` run. The algorithms are compared on the
cases they all have (cases missing for some algorithm are dropped and counted in the
report; ``--strict`` makes that an error). ``--metadata`` is a CSV with a ``case`` column
and one column per attribute (age, sex, site, manufacturer, ...), used for the metadata
group tests. The report folder gets per_case.csv, per_class.csv, summary.md,
summary.json and PNG plots (significance maps, bootstrap blob plots, box plots).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from medsegzoo.commands.evaluate import engine_options
from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.cases import evaluate_cases
from medsegzoo.evaluation.conventions import tolerance_notes
from medsegzoo.evaluation.protocols.touchstone import touchstone_protocol
from medsegzoo.evaluation.reports import report_folder, write_report

HELP = "compare several algorithms on the same cases (Touchstone statistics)"

# metadata columns that are identifiers, not groups
_NOT_GROUPS = {"case", "case_id", "image", "label", "masks", "prediction", "pred"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("algorithms", nargs="+", metavar="NAME=PATH", help="algorithm name and its prediction folder or per_case.csv")
    parser.add_argument("--gt", help="ground-truth folder or datalist JSON (needed for prediction folders)")
    parser.add_argument("--labels", help="label system of the predictions and ground truth (e.g. touchstone9)")
    parser.add_argument("--metadata", help="CSV with a 'case' column and metadata columns (age, sex, site, ...)")
    parser.add_argument("--group-columns", help="comma-separated metadata columns to test (default: every metadata column)")
    parser.add_argument("--out", "-o", required=True, help="report folder to write")
    parser.add_argument("--title", help="report title (default: the algorithm names)")
    parser.add_argument("--metrics", default="dsc,nsd", help="metrics to analyse, comma-separated (default dsc,nsd)")
    parser.add_argument("--convention", default="touchstone", help="empty-mask convention for prediction folders (default touchstone)")
    parser.add_argument("--tolerance", help="NSD tolerance preset or mm value for prediction folders (default: the convention's, 1.5 mm for touchstone)")
    parser.add_argument("--gt-labels", help="data set / label system of ground-truth label maps when it differs from --labels")
    parser.add_argument("--split", help="datalist split used as ground truth (default: every labeled split)")
    parser.add_argument("--allow-missing", action="store_true", help="skip cases present on one side only (counted in the report) instead of failing")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for ranking stability (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--min-group-size", type=int, default=10, help="metadata groups with fewer cases are left out (default 10)")
    parser.add_argument(
        "--group-correction", default="bonferroni", choices=["bonferroni", "fdr_bh"],
        help="correction of the pairwise Mann-Whitney tests: bonferroni (paper) or fdr_bh (Benjamini-Hochberg)",
    )
    parser.add_argument("--worst-quantile", type=float, default=0.1, help="quantile of the worst-case aggregate (default 0.1)")
    parser.add_argument("--strict", action="store_true", help="fail when some algorithm lacks a case instead of dropping it")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes scoring prediction folders")
    parser.add_argument("--no-plots", action="store_true", help="write tables only")


def parse_algorithm(spec: str) -> tuple[str, Path]:
    """Split ``NAME=PATH``.

    Raises:
        DataValidationError: no ``=``, an empty name, or a path that does not exist.
    """
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path:
        raise DataValidationError(f"algorithm {spec!r}: expected NAME=PATH (a prediction folder or a per_case.csv)")
    p = Path(path)
    if not p.exists():
        raise DataValidationError(f"algorithm {name!r}: {p} does not exist")
    return name.strip(), p


def read_per_case_csv(path: Path, name: str) -> pd.DataFrame:
    """Read a per_case.csv of one algorithm and label its rows with ``name``.

    Raises:
        DataValidationError: missing ``case``/``class`` columns, or several algorithms in
            the file (choose one with a filtered copy).
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{path}: cannot read as CSV ({err})") from err
    missing = [c for c in ("case", "class") if c not in table.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {missing}; is it a medsegzoo per_case.csv?")
    if "algorithm" in table.columns and table["algorithm"].nunique() > 1:
        raise DataValidationError(f"{path}: holds {table['algorithm'].nunique()} algorithms; give one per_case.csv per algorithm")
    table["case"] = table["case"].astype(str)
    return table.assign(algorithm=name)


def evaluate_folder(name: str, pred_dir: Path, args: argparse.Namespace, metrics: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Score one prediction folder with the evaluation engine; returns the table and notes.

    Raises:
        DataValidationError: ``--gt`` or ``--labels`` missing.
    """
    if not args.gt or not args.labels:
        raise DataValidationError(f"algorithm {name!r}: {pred_dir} is a prediction folder; --gt and --labels are needed to score it")

    print(f"scoring {name}: {pred_dir}", file=sys.stderr)
    result = evaluate_cases(
        pred_dir, args.gt, args.labels, **engine_options(args, metrics),
        progress=True,
    )
    # settings lines (label system, convention, tolerances) are the same for every algorithm;
    # run() prints them once; what was skipped is per algorithm
    lines = result.notes() + tolerance_notes(result.settings.tolerances_mm, result.settings.system.classes)
    notes = [f"{name}: {line}" if line.startswith("skipped") else line for line in lines]
    return result.table.assign(algorithm=name), notes


def align_cases(tables: dict[str, pd.DataFrame], strict: bool) -> tuple[pd.DataFrame, list[str]]:
    """Keep the cases every algorithm has; return the stacked table and notes.

    Raises:
        DataValidationError: with ``strict`` when some algorithm lacks a case, or when no
            case is shared by all algorithms.
    """
    case_sets = {n: set(t["case"].astype(str)) for n, t in tables.items()}
    common = set.intersection(*case_sets.values())
    notes = []
    for n, cases in case_sets.items():
        extra = sorted(cases - common)
        if extra:
            msg = f"{n}: {len(extra)} case(s) not scored for every algorithm, left out (e.g. {', '.join(extra[:3])})"
            if strict:
                raise DataValidationError(msg.replace("left out", "and --strict was given"))
            notes.append(msg)
    if not common:
        raise DataValidationError(f"no case is shared by all algorithms {list(tables)}; check the case ids")
    table = pd.concat([t[t["case"].astype(str).isin(common)] for t in tables.values()], ignore_index=True)
    return table, notes


def join_metadata(table: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Join a metadata CSV on ``case``; returns the table, the metadata columns and notes.

    Raises:
        DataValidationError: unreadable CSV, no ``case``/``case_id`` column, or a case listed twice.
    """
    try:
        meta = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{path}: cannot read metadata CSV ({err})") from err
    if "case" not in meta.columns and "case_id" in meta.columns:
        meta = meta.rename(columns={"case_id": "case"})
    if "case" not in meta.columns:
        raise DataValidationError(f"{path}: metadata CSV needs a 'case' (or 'case_id') column; has {list(meta.columns)}")
    meta["case"] = meta["case"].astype(str)
    dup = meta["case"].duplicated()
    if dup.any():
        raise DataValidationError(f"{path}: case {meta.loc[dup, 'case'].iloc[0]!r} is listed more than once")
    columns = [c for c in meta.columns if c not in _NOT_GROUPS]
    notes = []
    clash = [c for c in columns if c in table.columns]
    if clash:
        notes.append(f"metadata columns {clash} from {path.name} replace the per-case table's")
        table = table.drop(columns=clash)
    missing = sorted(set(table["case"].astype(str)) - set(meta["case"]))
    if missing:
        notes.append(f"{len(missing)} case(s) have no metadata row and are left out of group tests (e.g. {', '.join(missing[:3])})")
    return table.merge(meta[["case", *columns]], on="case", how="left"), columns, notes


def run(args: argparse.Namespace) -> int:
    """Run the comparison and write the report; returns the exit code."""

    specs = [parse_algorithm(s) for s in args.algorithms]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise DataValidationError(f"algorithm names must be unique, got {names}")
    if len(specs) < 2:
        raise DataValidationError("compare needs at least two algorithms (NAME=PATH ...); use `medsegzoo evaluate` for one")
    # staged beside --out from the start: an unwritable --out fails before any scoring, and a
    # failure (or a kill) while writing leaves the previous report, never a mix
    with report_folder(args.out) as staging:
        result, n_files = _compare(args, specs, names, staging)
    _print_summary(result, Path(args.out), n_files)
    return 0


def _compare(args: argparse.Namespace, specs: list[tuple[str, Path]], names: list[str], staging: Path) -> tuple[Any, int]:
    """Score, align, test and write the report into ``staging``; returns the Touchstone result
    and the number of files written."""

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for name, path in specs:
        if path.is_dir():
            tables[name], extra = evaluate_folder(name, path, args, metrics)
            notes += extra
        else:
            tables[name] = read_per_case_csv(path, name)
    table, extra = align_cases(tables, args.strict)
    notes = list(dict.fromkeys(notes + extra))
    group_columns: list[str] = []
    if args.metadata:
        table, group_columns, extra = join_metadata(table, Path(args.metadata))
        notes += extra
    if args.group_columns:
        wanted = [c.strip() for c in args.group_columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in table.columns]
        if unknown:
            raise DataValidationError(f"--group-columns {unknown} are not metadata columns; have {group_columns}")
        group_columns = wanted
    result = touchstone_protocol(
        table,
        metrics=metrics,
        metadata_columns=group_columns,
        alpha=args.alpha,
        group_correction=args.group_correction,
        min_group_size=args.min_group_size,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        worst_quantile=args.worst_quantile,
    )
    title = args.title or f"Comparison: {', '.join(names)}"
    files = write_report(table, staging, title, metrics=metrics, touchstone=result, notes=notes, plots=not args.no_plots)
    return result, len(files)


def _print_summary(result, out: Path, n_files: int) -> None:
    first = next(iter(result.analyses.values()))
    agg = first.aggregates()
    print(f"{len(result.algorithms)} algorithms, {result.n_cases} cases; {first.metric} mean (C):")
    for algo, value in agg["mean (C)"].items():
        print(f"  {algo:<24} {value:.4f}")
    if first.pairwise is not None:
        print(f"significant pairs (one-sided Wilcoxon, Holm, alpha={result.settings['alpha']}): {int(first.pairwise['significant'].sum())}")
    print(f"report: {out / 'summary.md'} ({n_files} files)")


def main(argv: list[str] | None = None) -> int:
    """Run ``compare`` without the ``medsegzoo`` dispatcher (for ``python -m``), with its error handling."""
    from medsegzoo.cli import main as cli_main  # the dispatcher sits above every command module

    return cli_main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
