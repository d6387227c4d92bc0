"""Evaluation reports: CSV tables, a Markdown summary, a JSON summary and PNG plots.

:func:`write_report` turns the tidy per-case table (and optionally protocol results:
Touchstone, A-Eval, multi-run, detection, speed) into a folder a reader can open:

``per_case.csv``
    the per-case table as given (one row per case and class, every metric).
``per_class.csv``
    per algorithm and class: mean, SD, median, count and undefined count of each metric.
``summary.md``
    the main tables and links to the plots.
``summary.json``
    the headline numbers for scripts (per algorithm, per metric: C and I aggregates).
``*.png``
    box plots per class, and the protocols' plots (significance maps, bootstrap blobs,
    metadata box plots, train x test heatmaps).

Every file is written atomically (a crash never leaves a half-written file). The commands
write a whole report through :func:`report_folder`: into a staging folder beside the target,
renamed into place when complete, so an interrupted report leaves the old report (or
nothing), never a mix of old and new files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.protocols.aeval import AEvalResult
from medsegzoo.evaluation.protocols.detection import DetectionResult
from medsegzoo.evaluation.protocols.multirun import MultiRunSummary
from medsegzoo.evaluation.protocols.tables import (
    higher_is_better,
    markdown_table,
    metric_label,
    ordered,
    require_columns,
)
from medsegzoo.evaluation.protocols.touchstone import (
    TouchstoneResult,
    aggregate_c,
    aggregate_i,
    bin_metadata,
    class_summary,
    class_table,
    group_sort_key,
)
from medsegzoo.utils import atomic_path, atomic_write_json, atomic_write_text
from medsegzoo.utils.atomic import atomic_dir

__all__ = ["KNOWN_METRICS", "REPORT_MARKER", "is_report_folder", "report_folder", "write_csv", "write_report"]

# metric columns the engine may write, in report order
KNOWN_METRICS: tuple[str, ...] = ("dsc", "nsd", "hd95", "assd")


# every report folder holds this file; a folder with it may be replaced by a new report
REPORT_MARKER = "summary.json"


def is_report_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a report folder written by :func:`write_report` (it holds ``summary.json``)."""
    return (Path(path) / REPORT_MARKER).is_file()


@contextlib.contextmanager
def report_folder(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Stage a report: yield a folder to write into, renamed onto ``out_dir`` when complete.

    Enter it before the work that fills the report, so that an unwritable ``out_dir`` (a file
    in the way, no permission) fails at once. ``out_dir`` may be missing, empty or an earlier
    report (replaced as a whole); a folder holding anything else is refused.

    Args:
        out_dir: the report folder.

    Yields:
        The staging folder (beside ``out_dir``; removed when the block raises).

    Raises:
        OutputError: ``out_dir`` cannot be written or holds something that is not a report.
    """
    with atomic_dir(out_dir, may_replace=is_report_folder) as staging:
        yield staging


def write_csv(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write ``df`` as CSV atomically and return the path."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index)
    return Path(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_").lower() or "x"


def _per_class_csv(table: pd.DataFrame, metrics: Sequence[str], has_algorithm: bool) -> pd.DataFrame:
    merged: pd.DataFrame | None = None
    for m in metrics:
        s = class_summary(table, m).rename(
            columns={c: f"{m}_{c}" for c in ("mean", "sd", "median", "n", "n_undefined")}
        )
        merged = s if merged is None else merged.merge(s, on=["algorithm", "class"], how="outer", sort=False)
    assert merged is not None
    return merged if has_algorithm else merged.drop(columns="algorithm")


def _json_number(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def write_report(
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    title: str,
    *,
    metrics: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    touchstone: TouchstoneResult | None = None,
    aeval: AEvalResult | None = None,
    multirun: MultiRunSummary | None = None,
    detection: Sequence[DetectionResult] = (),
    speed: pd.DataFrame | None = None,
    group_columns: Sequence[str] = (),
    notes: Sequence[str] = (),
    plots: bool = True,
    scale: float = 100.0,
) -> dict[str, Path]:
    """Write the report folder for a per-case table and any protocol results.

    Args:
        table: tidy per-case table (``algorithm`` column when several algorithms).
        out_dir: folder to write into (created).
        title: first heading of ``summary.md``.
        metrics: metric columns to report (default: those of :data:`KNOWN_METRICS` present).
        classes: class order of the tables and plots (default: order of appearance).
        touchstone: Touchstone result to print and plot (significance maps, bootstrap
            blobs, metadata box plots).
        aeval: A-Eval result (train x test tables and heatmaps).
        multirun: multi-run summary (median / maximum, last / best).
        detection: patient-level detection results.
        speed: :func:`medsegzoo.evaluation.protocols.speed.speed_table` output.
        group_columns: metadata columns for box plots by group (Touchstone's metadata
            columns are added automatically).
        notes: lines printed under the title (e.g. skipped cases and why).
        plots: write PNG plots.
        scale: factor for overlap metrics in Markdown (100: percent); CSVs keep raw values.

    Returns:
        Name -> path of every file written (``per_case.csv``, ``per_class.csv``,
        ``summary.md``, ``summary.json`` and the PNGs).

    Raises:
        DataValidationError: the table lacks ``case``/``class`` or has no metric column.
    """
    require_columns(table, ["case", "class"])
    metrics = [m for m in (metrics if metrics is not None else KNOWN_METRICS) if m in table.columns]
    if not metrics:
        raise DataValidationError(f"per-case table has no metric column of {list(KNOWN_METRICS)}; columns: {list(table.columns)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    has_algorithm = "algorithm" in table.columns
    t = table if has_algorithm else table.assign(algorithm="prediction")
    class_order = ordered(t["class"], classes)
    algorithms = ordered(t["algorithm"])
    files: dict[str, Path] = {}

    sort_cols = [c for c in ("algorithm", "case", "class") if c in table.columns]
    files["per_case.csv"] = write_csv(table.sort_values(sort_cols, kind="stable"), out / "per_case.csv")
    files["per_class.csv"] = write_csv(_per_class_csv(t, metrics, has_algorithm), out / "per_class.csv")

    md: list[str] = [f"# {title}\n\n"]
    md.append(
        f"{t['case'].nunique()} cases, {len(class_order)} classes, {len(algorithms)} algorithm(s); "
        f"written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Overlap metrics in percent "
        f"(x{scale:g}), distances in mm. NaN (undefined, e.g. class absent in the ground truth "
        f"under the chosen convention) is left out of every mean, never counted as zero.\n\n"
    )
    md += [f"- {n}\n" for n in notes]
    if notes:
        md.append("\n")

    summary_json: dict[str, object] = {"title": title, "n_cases": int(t["case"].nunique()), "classes": class_order, "algorithms": algorithms, "metrics": {}}
    md.append("## Per-class results\n\n")
    for m in metrics:
        f = scale if higher_is_better(m) else 1.0
        label = metric_label(m)
        md.append(f"### {label}\n\nMean ± SD over cases (SD with ddof=1); `mean (C)` averages the class means.\n\n")
        # a class with no value at all (absent from every ground truth) would be a column of n/a
        scored = t.groupby("class", sort=False)[m].apply(lambda v: bool(v.notna().any()))
        shown = [c for c in class_order if scored.get(c, False)]
        md.append(markdown_table(class_table(t[t["class"].isin(shown)], m, shown, scale=f)) + "\n")
        undefined = int(t[m].isna().sum())
        if undefined:
            md.append(f"{undefined} of {len(t)} (case, class) values of {label} are undefined (NaN) and left out.")
            unscored = [c for c in class_order if c not in shown]
            if unscored:
                md.append(f" Classes without any value (not in the table): {', '.join(unscored)}.")
            md.append("\n\n")
        agg_c, agg_i = aggregate_c(t, m), aggregate_i(t, m)
        summary_json["metrics"][m] = {  # type: ignore[index]
            a: {
                "mean_c": _json_number(agg_c.get(a)),
                "mean_i": _json_number(agg_i.get(a)),
                "per_class": {
                    c: _json_number(v)
                    for c, v in class_summary(t[t["algorithm"] == a], m).set_index("class")["mean"].items()
                },
            }
            for a in algorithms
        }
        if plots:
            name = f"box_{m}.png"
            files[name] = _plots().box_plot(
                t.assign(**{m: t[m] * f}), m, "class", out / name, hue="algorithm" if len(algorithms) > 1 else None,
                title=f"{label} per class", ylabel=_axis_label(m, f), order=shown, hue_order=algorithms,
            )
            md.append(f"![{label} per class]({name})\n\n")

    if touchstone is not None:
        md.append("## Touchstone statistics\n\n")
        figures = _touchstone_plots(touchstone, t, out, files, scale) if plots else None
        md.append(touchstone.to_markdown(scale=scale, figures=figures))
        group_columns = [c for c in group_columns if c not in _touchstone_columns(touchstone)]
        summary_json["touchstone"] = _touchstone_json(touchstone)

    if group_columns and plots:
        md.append("## Scores by metadata group\n\n")
        md.append(_group_plots(t, metrics[0], group_columns, algorithms, out, files, scale))

    if aeval is not None:
        md.append("## A-Eval cross-dataset matrix\n\n")
        md.append(aeval.to_markdown())
        md.append("\n")
        for m, mat in aeval.matrices.items():
            summary_json.setdefault("aeval", {})[m] = {  # type: ignore[union-attr]
                "matrix": {tr: {te: _json_number(v) for te, v in row.items()} for tr, row in mat.values.to_dict("index").items()},
                "overall_mean": _json_number(mat.overall()[0]),
                "overall_sd": _json_number(mat.overall()[1]),
            }
            if plots:
                name = f"aeval_{m}.png"
                files[name] = _plots().matrix_heatmap(mat.values, out / name, title=f"A-Eval {metric_label(m)} (train x test)")
                md.append(f"![A-Eval {metric_label(m)}]({name})\n\n")

    if multirun is not None:
        md.append("## Multi-run results\n\n")
        md.append(multirun.to_markdown(scale=scale) + "\n")
        summary_json["multirun"] = multirun.long.astype(object).where(multirun.long.notna(), None).to_dict("records")

    if detection:
        md.append("## Patient-level detection\n\n")
        for d in detection:
            md.append(d.to_markdown() + "\n")
        summary_json["detection"] = [{k: (_json_number(v) if isinstance(v, float) else v) for k, v in d.summary().items()} for d in detection]

    if speed is not None and len(speed):
        md.append("## Pipeline speed and memory\n\n")
        md.append("Whole pipeline time per scanned volume (Touchstone asks for < 1 µs/mm³, i.e. > 1e6 mm³/s).\n\n")
        md.append(markdown_table(speed, digits=3) + "\n")

    md.append("## Files\n\n")
    md += [f"- `{name}`\n" for name in ["per_case.csv", "per_class.csv", "summary.json", *sorted(k for k in files if k.endswith(".png"))]]
    files["summary.json"] = atomic_write_json(out / "summary.json", summary_json)
    files["summary.md"] = atomic_write_text(out / "summary.md", "".join(md))
    return files


def _plots():
    # imported on first use: matplotlib costs ~0.5 s and CSV-only reports do not need it
    from medsegzoo.evaluation import plots

    return plots


def _touchstone_columns(result: TouchstoneResult) -> list[str]:
    cols: list[str] = []
    for a in result.analyses.values():
        for _, column in a.groups:  # one key per (algorithm, column): keep each column once
            if column not in cols:
                cols.append(column)
    return cols


def _axis_label(metric: str, factor: float) -> str:
    return f"{metric_label(metric)} (%)" if factor == 100 else metric_label(metric)


def _touchstone_plots(
    result: TouchstoneResult, table: pd.DataFrame, out: Path, files: dict[str, Path], scale: float
) -> dict[str, dict[str, str]]:
    """Write the significance maps, bootstrap blob plots and metadata box plots.

    Returns:
        metric -> section -> Markdown image links, for :meth:`TouchstoneResult.to_markdown`.
    """
    p = _plots()
    figures: dict[str, dict[str, str]] = {}
    for m, a in result.analyses.items():
        label = metric_label(m)
        shown = figures.setdefault(m, {})
        if a.significance is not None:
            order = list(a.aggregates().index)  # best first, as the paper orders its maps
            name = f"significance_{m}.png"
            files[name] = p.significance_map_plot(a.significance.loc[order, order], out / name, title=f"{label}: significance map")
            shown["significance"] = f"![{label} significance map]({name})\n\n"
        if a.bootstrap is not None:
            name = f"bootstrap_{m}.png"
            files[name] = p.bootstrap_blob_plot(a.bootstrap, out / name, title=f"{label}: ranking stability")
            shown["bootstrap"] = f"![{label} bootstrap ranking]({name})\n\n"
    cols = _touchstone_columns(result)
    if cols:
        first = next(iter(result.analyses))
        figures[first]["groups"] = _group_plots(table, first, cols, list(result.algorithms), out, files, scale)
    return figures


def _group_plots(
    table: pd.DataFrame, metric: str, columns: Sequence[str], algorithms: list[str], out: Path, files: dict[str, Path], scale: float
) -> str:
    p = _plots()
    label = metric_label(metric)
    f = scale if higher_is_better(metric) else 1.0
    per_case = (table.groupby(["algorithm", "case"], sort=False)[metric].mean() * f).rename(metric).reset_index()
    md = []
    single: list[str] = []
    for col in columns:
        if col not in table.columns:
            raise DataValidationError(f"metadata column {col!r} is not in the per-case table; columns: {list(table.columns)}")
        meta = table[["case", col]].drop_duplicates("case").set_index("case")[col]
        groups = bin_metadata(meta).dropna().astype(str)
        if groups.nunique() < 2:  # one box says nothing about groups
            single.append(f"{col} ({groups.iloc[0]})" if len(groups) else col)
            continue
        # the number of cases under each group's name: a box of 2 cases is not a box of 200
        sizes = groups.value_counts()
        shown = {g: f"{g}\n(n={n})" for g, n in sizes.items()}
        data = per_case.join(groups.map(shown).rename(col), on="case").dropna(subset=[col])
        order = [shown[g] for g in sorted(shown, key=group_sort_key)]
        name = f"groups_{_slug(col)}_{metric}.png"
        files[name] = p.box_plot(
            data, metric, col, out / name, hue="algorithm" if len(algorithms) > 1 else None,
            title=f"mean {label} over classes per case, by {col}", ylabel=_axis_label(metric, f),
            order=order, hue_order=algorithms,
        )
        md.append(f"![{label} by {col}]({name})\n\n")
    if single:
        md.append(f"Not plotted (every case in one group): {', '.join(single)}.\n\n")
    return "".join(md)


def _touchstone_json(result: TouchstoneResult) -> dict[str, object]:
    out: dict[str, object] = {"settings": result.settings}
    for m, a in result.analyses.items():
        entry: dict[str, object] = {
            "mean_c": {k: _json_number(v) for k, v in a.aggregate_c.items()},
            "mean_i": {k: _json_number(v) for k, v in a.aggregate_i.items()},
            "worst_case_c": {k: _json_number(v) for k, v in a.worst_case.items()},
        }
        if a.pairwise is not None:
            entry["significant_pairs"] = [
                {"better": r.better, "worse": r.worse, "p_adjusted": float(r.p_adjusted)}
                for r in a.pairwise.itertuples(index=False)
                if r.significant
            ]
        if a.bootstrap is not None:
            entry["bootstrap"] = a.bootstrap.summary().to_dict("records")
        if a.groups:
            entry["groups"] = [
                {
                    "algorithm": algo, "column": col, "H": _json_number(g.statistic), "p": _json_number(g.p_value),
                    "dpd": _json_number(g.parity_difference), "excluded": list(g.excluded),
                }
                for (algo, col), g in a.groups.items()
            ]
        out[m] = entry
    return out
