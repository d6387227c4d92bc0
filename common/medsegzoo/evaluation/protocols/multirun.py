"""Multi-run reporting (TCSeg): median and maximum over seeds, last and best checkpoints.

TCSeg (paper 004, section 4.2) runs every setting with several seeds and reports, for the
*last* checkpoint and for the *best* one, the median over runs (typical behaviour) and
the maximum (comparable with single-run, best-checkpoint papers). Two rules are kept:

* The "maximum" row is the run with the best selection metric (DSC by default), shown
  with *that run's* other metrics — TCSeg's Table 5 prints the maximum-DSC run's ASD and
  95HD, which can be worse than their medians. The "median" row is the per-metric median.
* A "best" checkpoint needs a validation split to be selected on. Without one it could
  only have been chosen on the test set, which inflates the result; then only "last"
  is honest, and the table marks "best" as not reported and says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.protocols.tables import (
    format_number,
    higher_is_better,
    markdown_table,
    metric_label,
    require_columns,
)

CHECKPOINTS: tuple[str, ...] = ("last", "best")
STATISTICS: tuple[str, ...] = ("median", "maximum")
NOT_REPORTED = "not reported"

NO_VALIDATION_NOTE = (
    "No validation split: a 'best' checkpoint could only have been selected on the test set, "
    "which overstates the result (TCSeg section 4.2). Only the 'last' checkpoint is reported."
)

__all__ = ["CHECKPOINTS", "MultiRunSummary", "multirun_summary", "runs_from_tables"]


def runs_from_tables(tables: Mapping[tuple[object, str], pd.DataFrame], metrics: Sequence[str] = ("dsc", "hd95", "assd")) -> pd.DataFrame:
    """Per-run rows from per-case tables: mean over cases per class, then over classes.

    Args:
        tables: ``{(seed, checkpoint): tidy per-case table}``.
        metrics: metric columns to average (those missing in a table are skipped).

    Returns:
        One row per run with ``seed``, ``checkpoint`` and the metric means.
    """
    rows = []
    for (seed, checkpoint), table in tables.items():
        require_columns(table, ["case", "class"], f"run seed={seed} checkpoint={checkpoint}")
        row: dict[str, object] = {"seed": seed, "checkpoint": checkpoint}
        for m in metrics:
            if m in table.columns:
                row[m] = float(table.groupby("class", sort=False)[m].mean().mean())
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class MultiRunSummary:
    """Median and maximum over seeds per checkpoint.

    Attributes:
        long: one row per (group..., checkpoint, statistic, metric) with ``value``,
            ``n_runs``, ``seed`` (the maximum's run) and ``reported``.
        metrics: metric columns summarised.
        group_by: grouping columns (e.g. data set, labeled fraction).
        has_validation: whether a validation split existed (if not, "best" is withheld).
        selection_metric: metric that picks the maximum run.
    """

    long: pd.DataFrame
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    has_validation: bool
    selection_metric: str

    def table(self) -> pd.DataFrame:
        """Side-by-side numbers: rows (group..., statistic), columns ``"<metric> <checkpoint>"``.

        Withheld or missing cells are NaN; :meth:`to_markdown` prints them as text.
        """
        wide = self.long.assign(column=[f"{m} {c}" for m, c in zip(self.long["metric"], self.long["checkpoint"])])
        out = wide.pivot_table(index=[*self.group_by, "statistic"], columns="column", values="value", aggfunc="first", dropna=False, sort=False)
        cols = [f"{m} {c}" for m in self.metrics for c in CHECKPOINTS]
        out = out.reindex(columns=cols)
        return out.reindex(sorted(out.index, key=lambda k: _stat_order(k)), axis=0)

    def to_markdown(self, scale: float = 100.0, digits: int = 2) -> str:
        """Markdown table (overlap metrics scaled, e.g. to percent) with the honesty note."""
        shown = pd.DataFrame(index=self.table().index, columns=self.table().columns, dtype=object)
        numbers = self.table()
        for col in numbers.columns:
            metric, checkpoint = col.rsplit(" ", 1)
            f = scale if higher_is_better(metric) else 1.0
            for idx, v in numbers[col].items():
                if checkpoint == "best" and not self.has_validation:
                    shown.loc[idx, col] = NOT_REPORTED
                else:
                    shown.loc[idx, col] = "not run" if pd.isna(v) else format_number(v * f, digits)
        shown.columns = [f"{metric_label(c.rsplit(' ', 1)[0])} {c.rsplit(' ', 1)[1]}" for c in shown.columns]
        n = self.long.groupby("checkpoint")["n_runs"].max().to_dict()
        text = (
            f"Median and maximum over runs (seeds: {n.get('last', 0)} last, {n.get('best', 0)} best). "
            f"The maximum row is the run with the best {metric_label(self.selection_metric)}, shown with that run's "
            f"other metrics; the median is taken per metric.\n\n"
        )
        text += markdown_table(shown.reset_index(), index=False)
        if not self.has_validation:
            text += f"\n{NO_VALIDATION_NOTE}\n"
        return text


def _stat_order(key: object) -> tuple:
    parts = key if isinstance(key, tuple) else (key,)
    return (*[str(p) for p in parts[:-1]], STATISTICS.index(parts[-1]) if parts[-1] in STATISTICS else 99)


def multirun_summary(
    runs: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    has_validation: bool = True,
    selection_metric: str = "dsc",
    group_by: Sequence[str] = (),
) -> MultiRunSummary:
    """Summarise several seeds per checkpoint as TCSeg does.

    Args:
        runs: one row per run: ``seed``, ``checkpoint`` ("last" or "best"), metric columns,
            and any ``group_by`` columns.
        metrics: metric columns (default: every numeric column except seed and groups).
        has_validation: False when the data set has no validation split; "best" is then
            withheld (:data:`NO_VALIDATION_NOTE`).
        selection_metric: metric that chooses the maximum run (higher or lower is better
            by the metric's direction).
        group_by: columns that separate settings (e.g. ``dataset``, ``labeled``).

    Returns:
        :class:`MultiRunSummary`.

    Raises:
        DataValidationError: missing columns, unknown checkpoint names, a seed listed twice.
    """
    require_columns(runs, ["seed", "checkpoint", *group_by], "multi-run table")
    bad = sorted(set(runs["checkpoint"].astype(str)) - set(CHECKPOINTS))
    if bad:
        raise DataValidationError(f"multi-run table: checkpoint must be one of {CHECKPOINTS}, got {bad}")
    if metrics is None:
        skip = {"seed", *group_by}
        metrics = [c for c in runs.columns if c not in skip and pd.api.types.is_numeric_dtype(runs[c])]
    require_columns(runs, [*metrics, selection_metric], "multi-run table")
    dup = runs.duplicated([*group_by, "checkpoint", "seed"])
    if dup.any():
        raise DataValidationError(f"multi-run table: {int(dup.sum())} run(s) listed twice (same seed and checkpoint)")
    up = higher_is_better(selection_metric)
    rows = []
    groups = runs.groupby(list(group_by), sort=False) if group_by else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        gvals = dict(zip(group_by, key))
        for checkpoint in CHECKPOINTS:
            sub = g[g["checkpoint"].astype(str) == checkpoint]
            reported = checkpoint == "last" or has_validation
            sel = sub[selection_metric].to_numpy(dtype=float)
            best_pos = None
            if np.isfinite(sel).any():
                best_pos = int(np.nanargmax(sel) if up else np.nanargmin(sel))
            for metric in metrics:
                vals = sub[metric].to_numpy(dtype=float)
                median = float(np.nanmedian(vals)) if np.isfinite(vals).any() else float("nan")
                maximum = float(vals[best_pos]) if best_pos is not None else float("nan")
                seed = sub["seed"].iloc[best_pos] if best_pos is not None else None
                for stat, value, s in (("median", median, None), ("maximum", maximum, seed)):
                    rows.append(
                        {
                            **gvals,
                            "checkpoint": checkpoint,
                            "statistic": stat,
                            "metric": metric,
                            "value": value if reported else float("nan"),
                            "n_runs": len(sub),
                            "seed": s,
                            "reported": reported and bool(len(sub)),
                        }
                    )
    return MultiRunSummary(
        long=pd.DataFrame(rows),
        metrics=tuple(metrics),
        group_by=tuple(group_by),
        has_validation=has_validation,
        selection_metric=selection_metric,
    )
