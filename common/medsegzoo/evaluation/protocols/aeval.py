"""The A-Eval cross-dataset protocol: a train-set x test-set matrix of mean scores.

Input is a tidy per-case table with two more columns, ``train_set`` (the data set the
model was trained on, or a training recipe such as "FLARE22 w/ PL") and ``test_set``,
or a mapping from (train, test) to per-case tables (see :func:`stack_cross_tables`).

Aggregation (matches A-Eval Tables 3 and 7, whose per-class means reproduce the matrix
cells): for each (train, test) cell, mean over cases per class, then mean over the
classes. Classes that a test set does not label are *absent*: their values are NaN and
they are left out of that cell's mean, never counted as zero. Row and column summaries
are mean ± SD over the matrix cells with the population SD (``ddof=0``): A-Eval Table 3's
row "FLARE22" 82.37 ± 5.94 is the ``ddof=0`` SD of its five cells (``ddof=1`` gives 6.64).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.evaluation.conventions import get_tolerances
from medsegzoo.evaluation.protocols.tables import (
    format_mean_sd,
    markdown_table,
    metric_label,
    ordered,
    require_columns,
)
from medsegzoo.taxonomy import get_dataset, get_label_system

__all__ = [
    "AEvalMatrix",
    "AEvalResult",
    "aeval_tolerances",
    "aeval_matrix",
    "aeval_protocol",
    "class_means",
    "per_class_matrices",
    "per_class_table",
    "shared_classes",
    "stack_cross_tables",
]

MEAN_SD = "Mean ± SD"


def stack_cross_tables(data: pd.DataFrame | Mapping) -> pd.DataFrame:
    """One tidy table with ``train_set`` and ``test_set`` columns from any accepted input.

    Args:
        data: a table that already has both columns; or ``{(train, test): table}``; or
            ``{train: {test: table}}``.

    Returns:
        The stacked table.

    Raises:
        DataValidationError: an input shape that is none of the above.
    """
    if isinstance(data, pd.DataFrame):
        require_columns(data, ["train_set", "test_set", "case", "class"], "A-Eval table")
        return data
    frames = []
    for key, value in data.items():
        if isinstance(key, tuple) and len(key) == 2 and isinstance(value, pd.DataFrame):
            frames.append(value.assign(train_set=str(key[0]), test_set=str(key[1])))
        elif isinstance(value, Mapping):
            for test, table in value.items():
                frames.append(table.assign(train_set=str(key), test_set=str(test)))
        else:
            raise DataValidationError(
                f"A-Eval input entry {key!r}: expected {{(train, test): table}} or {{train: {{test: table}}}}"
            )
    if not frames:
        raise DataValidationError("A-Eval input is empty")
    out = pd.concat(frames, ignore_index=True)
    require_columns(out, ["case", "class"], "A-Eval table")
    return out


def _mask_unlabeled(table: pd.DataFrame, metric: str, labeled_classes: Mapping[str, Iterable[str]] | None) -> pd.DataFrame:
    if not labeled_classes:
        return table
    labeled = {str(k): set(v) for k, v in labeled_classes.items()}
    keep = [cls in labeled.get(str(test), {cls}) for test, cls in zip(table["test_set"], table["class"])]
    return table.assign(**{metric: table[metric].where(keep)})


def class_means(
    data: pd.DataFrame | Mapping,
    metric: str = "dsc",
    labeled_classes: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Mean over cases per (train set, test set, class); NaN when the class is absent.

    Args:
        data: see :func:`stack_cross_tables`.
        metric: metric column.
        labeled_classes: test set -> classes it labels; other classes are set absent.

    Returns:
        Long table ``train_set``, ``test_set``, ``class``, ``mean``, ``n``.
    """
    t = stack_cross_tables(data)
    require_columns(t, [metric], "A-Eval table")
    t = _mask_unlabeled(t, metric, labeled_classes)
    g = t.groupby(["train_set", "test_set", "class"], sort=False)[metric]
    return g.agg(mean="mean", n="count").reset_index()


def shared_classes(means: pd.DataFrame) -> list[str]:
    """Classes with a value in every test set (the A-Eval "shared classes")."""
    present = means.dropna(subset=["mean"]).groupby("test_set")["class"].agg(set)
    if present.empty:
        return []
    common = set.intersection(*present.tolist())
    return [c for c in ordered(means["class"]) if c in common]


@dataclass
class AEvalMatrix:
    """Train x test matrix of one metric with its row, column and overall mean ± SD.

    Attributes:
        metric: metric column.
        values: DataFrame, index = train sets, columns = test sets (already scaled).
        modalities: test set -> modality ("CT"/"MR"), for the CT-only means.
        classes: the classes averaged in every cell.
        ddof: delta degrees of freedom of the SDs.
    """

    metric: str
    values: pd.DataFrame
    modalities: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    ddof: int = 0

    def _mean_sd(self, frame: pd.DataFrame, axis: int) -> pd.DataFrame:
        return pd.DataFrame({"mean": frame.mean(axis=axis), "sd": frame.std(axis=axis, ddof=self.ddof)})

    def ct_test_sets(self) -> list[str]:
        """Test sets whose modality is CT (all of them when no modality is known)."""
        if not self.modalities:
            return list(self.values.columns)
        return [c for c in self.values.columns if self.modalities.get(c, "CT").upper() == "CT"]

    def has_mixed_modalities(self) -> bool:
        """True when some test set is not CT, so CT-only and all-modality means differ."""
        return len(self.ct_test_sets()) < self.values.shape[1]

    def row_stats(self) -> pd.DataFrame:
        """Per train set: mean and SD over all test sets; ``ct_mean``/``ct_sd`` over CT test sets."""
        out = self._mean_sd(self.values, axis=1)
        ct = self._mean_sd(self.values[self.ct_test_sets()], axis=1)
        out["ct_mean"], out["ct_sd"] = ct["mean"], ct["sd"]
        return out

    def column_stats(self) -> pd.DataFrame:
        """Per test set: mean and SD over the train sets."""
        return self._mean_sd(self.values, axis=0)

    def overall(self, ct_only: bool = False) -> tuple[float, float]:
        """Mean and SD over every (non-NaN) cell, or over the CT test sets' cells."""
        cells = self.values[self.ct_test_sets()] if ct_only else self.values
        flat = cells.to_numpy(dtype=float).ravel()
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            return float("nan"), float("nan")
        sd = float(np.std(flat, ddof=self.ddof)) if flat.size > self.ddof else float("nan")
        return float(flat.mean()), sd


def aeval_matrix(
    data: pd.DataFrame | Mapping,
    metric: str = "dsc",
    classes: Sequence[str] | None = None,
    labeled_classes: Mapping[str, Iterable[str]] | None = None,
    modalities: Mapping[str, str] | None = None,
    scale: float = 100.0,
    ddof: int = 0,
) -> AEvalMatrix:
    """Train x test matrix of the mean ``metric`` over the shared classes.

    Args:
        data: see :func:`stack_cross_tables`.
        metric: metric column (``"dsc"`` or ``"nsd"``).
        classes: classes to average (default: :func:`shared_classes`, those present in
            every test set); a listed class that a test set lacks is left out of that
            test set's cells.
        labeled_classes: test set -> classes it labels (others are absent, not zero).
        modalities: test set -> "CT" or "MR" (for CT-only means).
        scale: multiply the values (100 prints percent, as A-Eval).
        ddof: delta degrees of freedom of the SDs (0 reproduces A-Eval's tables).

    Returns:
        :class:`AEvalMatrix`.

    Raises:
        DataValidationError: missing columns or no class to average.
    """
    means = class_means(data, metric, labeled_classes)
    chosen = list(classes) if classes is not None else shared_classes(means)
    if not chosen:
        raise DataValidationError(f"A-Eval: no class is present in every test set for metric {metric!r}")
    sel = means[means["class"].isin(chosen)]
    cells = sel.groupby(["train_set", "test_set"], sort=False)["mean"].mean() * scale
    values = cells.unstack("test_set")
    values = values.reindex(index=ordered(means["train_set"]), columns=ordered(means["test_set"]))
    values.index.name, values.columns.name = "train", "test"
    return AEvalMatrix(
        metric=metric,
        values=values,
        modalities={str(k): str(v) for k, v in (modalities or {}).items()},
        classes=tuple(chosen),
        ddof=ddof,
    )


def per_class_table(
    data: pd.DataFrame | Mapping,
    test_set: str,
    metric: str = "dsc",
    classes: Sequence[str] | None = None,
    labeled_classes: Mapping[str, Iterable[str]] | None = None,
    scale: float = 100.0,
) -> pd.DataFrame:
    """A-Eval Tables 7/8 shape: for one test set, rows = train sets, columns = classes + Mean.

    Raises:
        DataValidationError: ``test_set`` not in the data.
    """
    means = class_means(data, metric, labeled_classes)
    if test_set not in set(means["test_set"]):
        raise DataValidationError(f"A-Eval: test set {test_set!r} not in the table; have {ordered(means['test_set'])}")
    sub = means[means["test_set"] == test_set]
    cols = list(classes) if classes is not None else ordered(sub["class"])
    wide = sub.pivot(index="train_set", columns="class", values="mean").reindex(
        index=ordered(sub["train_set"]), columns=cols
    ) * scale
    wide["Mean"] = wide[cols].mean(axis=1)
    wide.index.name, wide.columns.name = "train", None
    return wide


def per_class_matrices(
    data: pd.DataFrame | Mapping,
    metric: str = "dsc",
    classes: Sequence[str] | None = None,
    labeled_classes: Mapping[str, Iterable[str]] | None = None,
    scale: float = 100.0,
) -> dict[str, pd.DataFrame]:
    """One train x test matrix per class (NaN where the test set lacks the class)."""
    means = class_means(data, metric, labeled_classes)
    trains, tests = ordered(means["train_set"]), ordered(means["test_set"])
    out = {}
    for cls in list(classes) if classes is not None else ordered(means["class"]):
        sub = means[means["class"] == cls]
        mat = sub.pivot(index="train_set", columns="test_set", values="mean").reindex(index=trains, columns=tests) * scale
        mat.index.name, mat.columns.name = "train", "test"
        out[cls] = mat
    return out


@dataclass
class AEvalResult:
    """Matrices of several metrics on the same train and test sets (A-Eval Table 3/9).

    Attributes:
        matrices: metric -> :class:`AEvalMatrix`.
        per_class: metric -> class -> train x test matrix.
    """

    matrices: dict[str, AEvalMatrix]
    per_class: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)

    def table(self, digits: int = 2) -> pd.DataFrame:
        """A-Eval Table 3/9 as strings: cells per (test, metric), Mean ± SD column(s) and row."""
        first = next(iter(self.matrices.values()))
        trains, tests = list(first.values.index), list(first.values.columns)
        mixed = first.has_mixed_modalities()
        cols: list[str] = [f"{t} {metric_label(m)}" for t in tests for m in self.matrices]
        if mixed:
            cols += [f"{MEAN_SD} CT {metric_label(m)}" for m in self.matrices]
        cols += [f"{MEAN_SD} {metric_label(m)}" for m in self.matrices]
        out = pd.DataFrame(index=pd.Index([*trains, MEAN_SD], name="train \\ test"), columns=cols, dtype=object)
        for m, mat in self.matrices.items():
            label = metric_label(m)
            rows, colstats = mat.row_stats(), mat.column_stats()
            for t in tests:
                for tr in trains:
                    v = mat.values.loc[tr, t]
                    out.loc[tr, f"{t} {label}"] = "n/a" if pd.isna(v) else f"{v:.{digits}f}"
                out.loc[MEAN_SD, f"{t} {label}"] = format_mean_sd(colstats.loc[t, "mean"], colstats.loc[t, "sd"], digits)
            for tr in trains:
                out.loc[tr, f"{MEAN_SD} {label}"] = format_mean_sd(rows.loc[tr, "mean"], rows.loc[tr, "sd"], digits)
                if mixed:
                    out.loc[tr, f"{MEAN_SD} CT {label}"] = format_mean_sd(rows.loc[tr, "ct_mean"], rows.loc[tr, "ct_sd"], digits)
            out.loc[MEAN_SD, f"{MEAN_SD} {label}"] = format_mean_sd(*mat.overall(), digits)
            if mixed:
                out.loc[MEAN_SD, f"{MEAN_SD} CT {label}"] = format_mean_sd(*mat.overall(ct_only=True), digits)
        return out.fillna("")

    def to_markdown(self, digits: int = 2) -> str:
        """The train x test table and one per-class table per metric, as Markdown."""
        first = next(iter(self.matrices.values()))
        parts = [
            (
                f"Rows: training set; columns: test set. Each cell is the mean over cases per class, then over "
                f"the {len(first.classes)} classes ({', '.join(first.classes)}); classes a test set does not "
                f"label are left out, not counted as zero. Mean ± SD over cells, population SD (ddof={first.ddof}).\n\n"
            ),
            markdown_table(self.table(digits)),
        ]
        if first.has_mixed_modalities():
            parts.append(f"\n`CT` columns average only the CT test sets ({', '.join(first.ct_test_sets())}).\n")
        for metric, by_class in self.per_class.items():
            parts.append(f"\n#### Per-class {metric_label(metric)} (rows: training set)\n\n")
            for cls, mat in by_class.items():
                parts.append(f"{cls}:\n\n" + markdown_table(mat, digits) + "\n")
        return "".join(parts)


def aeval_protocol(
    data: pd.DataFrame | Mapping,
    metrics: Sequence[str] = ("dsc", "nsd"),
    classes: Sequence[str] | None = None,
    labeled_classes: Mapping[str, Iterable[str]] | None = None,
    modalities: Mapping[str, str] | None = None,
    scale: float = 100.0,
    per_class: bool = True,
) -> AEvalResult:
    """Run the A-Eval protocol for several metrics (see :func:`aeval_matrix`).

    Classes are chosen once (from the first metric when not given) so that every metric
    averages the same classes.
    """
    table = stack_cross_tables(data)
    present = [m for m in metrics if m in table.columns]
    if not present:
        raise DataValidationError(f"A-Eval table has none of the metric columns {list(metrics)}")
    if classes is None:
        classes = shared_classes(class_means(table, present[0], labeled_classes))
    matrices = {m: aeval_matrix(table, m, classes, labeled_classes, modalities, scale) for m in present}
    by_class = {m: per_class_matrices(table, m, classes, labeled_classes, scale) for m in present} if per_class else {}
    return AEvalResult(matrices=matrices, per_class=by_class)


# NSD tolerances: A-Eval uses FLARE22's per-organ tolerances (mm). Its public evaluation code
# looks them up by the *index* of the class in its 8-class system inside FLARE22's 13-class
# list, which gives esophagus, stomach and left kidney 2 mm instead of 3, 5 and 3 mm. The
# default is the tolerance *by organ name*; "aeval_public_code" reproduces the public code's
# values, to compare with its numbers (a bundle's evaluate.json passes the result as
# ``nsd_tolerance``).
def aeval_tolerances(system: str = "aeval8", tolerance_indexing: str = "by_name") -> dict[str, float]:
    """NSD tolerance (mm) of every class of ``system``.

    Args:
        system: label system of the evaluation.
        tolerance_indexing: ``"by_name"`` (each organ its FLARE22 tolerance) or
            ``"aeval_public_code"`` (the i-th class gets the i-th FLARE22 tolerance, as the
            public A-Eval code does).

    Returns:
        Class name -> tolerance in mm.

    Raises:
        UnknownNameError: unknown system or indexing mode, or a class without a FLARE22
            tolerance.
    """
    classes = get_label_system(system).classes
    table = get_tolerances("aeval")
    if tolerance_indexing == "aeval_public_code":
        flare_order = [table[name] for _, name in sorted(get_dataset("flare22").labels.items())]
        return {c: flare_order[i] for i, c in enumerate(classes) if i < len(flare_order)}
    if tolerance_indexing != "by_name":
        raise UnknownNameError(
            f"unknown tolerance_indexing {tolerance_indexing!r}; use 'by_name' or 'aeval_public_code'"
        )
    return {c: table[c] for c in classes}
