"""Shared helpers of the protocols: the tidy per-case table, metric directions, formatting.

The tidy table (``docs/evaluation.md``) has one row per (case, class) with the columns
``case``, ``class``, one column per metric (``dsc``, ``nsd``, ``hd95``, ``assd``),
``gt_present``, ``pred_present``, ``algorithm`` when several algorithms are compared, and
metadata columns joined on ``case``. NaN in a metric column means "not defined under the
chosen convention" and is left out of every mean (never counted as zero).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError

# direction of each metric the engine writes; distances are better when lower
HIGHER_IS_BETTER: dict[str, bool] = {"dsc": True, "nsd": True, "hd95": False, "assd": False, "asd": False}

# names printed in tables and plot axes
METRIC_LABELS: dict[str, str] = {"dsc": "DSC", "nsd": "NSD", "hd95": "HD95 (mm)", "assd": "ASSD (mm)", "asd": "ASD (mm)"}

__all__ = [
    "HIGHER_IS_BETTER",
    "METRIC_LABELS",
    "format_mean_sd",
    "format_number",
    "higher_is_better",
    "markdown_table",
    "metric_label",
    "require_columns",
]


def require_columns(table: pd.DataFrame, columns: Iterable[str], what: str = "per-case table") -> None:
    """Raise when ``table`` lacks any of ``columns``.

    Args:
        table: the table to check.
        columns: required column names.
        what: how the table is named in the error (e.g. a file path).

    Raises:
        DataValidationError: naming the missing columns and the ones present.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataValidationError(f"{what}: missing column(s) {missing}; present: {list(table.columns)}")


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (DSC/NSD up, distances down); unknown names count as 'higher'."""
    return HIGHER_IS_BETTER.get(metric.lower(), True)


def metric_label(metric: str) -> str:
    """Printable name of a metric column."""
    return METRIC_LABELS.get(metric.lower(), metric)


def format_number(value: float, digits: int = 2) -> str:
    """Fixed-point number, or ``"n/a"`` for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    """``"mean ± sd"`` (``"mean"`` alone when the SD is undefined, ``"n/a"`` when the mean is)."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return format_number(mean, digits)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _cell(value: object, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return format_number(float(value), digits)
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, digits: int = 2, index: bool = True, index_label: str | None = None) -> str:
    """Render a DataFrame as a GitHub Markdown table.

    Written here because pandas' ``to_markdown`` needs the optional ``tabulate``
    package, which is not a dependency; the format needed is a few lines.

    Args:
        df: the table (index printed as the first column when ``index``).
        digits: decimals of float cells (NaN prints as ``n/a``).
        index: print the index.
        index_label: header of the index column (default: the index name or empty).

    Returns:
        The table as Markdown text, ending with a newline.
    """
    headers: list[str] = [str(c) for c in df.columns]
    rows: list[list[str]] = [[_cell(v, digits) for v in row] for row in df.itertuples(index=False, name=None)]
    if index:
        label = index_label if index_label is not None else (df.index.name or "")
        headers = [str(label), *headers]
        rows = [[_cell(i, digits), *r] for i, r in zip(df.index, rows)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ordered(values: Iterable[str], preferred: Sequence[str] | None = None) -> list[str]:
    """Unique values in ``preferred`` order first, then in order of first appearance."""
    seen = list(dict.fromkeys(str(v) for v in values))
    if not preferred:
        return seen
    head = [v for v in preferred if v in seen]
    return head + [v for v in seen if v not in head]
