"""The Touchstone evaluation protocol on a tidy per-case table of several algorithms.

What it computes (paper 003, REFERENCE.md section 5):

* per-class mean ± SD over cases of each metric, per algorithm;
* two aggregates that differ when classes are missing (NaN) in some cases:
  ``C`` (the paper's DSC^C): mean over cases per class, then over classes — used for
  reporting; ``I`` (DSC^I): mean over classes per case, then over cases — its per-case
  values feed every statistical test;
* worst-case score: per class, the mean of the cases at or below the 10 % quantile,
  then the mean over classes (the paper's worst-case DSC^C);
* one-sided Wilcoxon signed-rank tests of every ordered pair of algorithms on the per-case
  values, each pair on the cases both algorithms have, Holm-corrected over the whole family,
  5 % level: the significance map (Touchstone's ``SignificanceMaps.py``);
* ranking stability from 1 000 bootstrap resamples of the cases (fixed seed);
* metadata groups as Touchstone's ``PlotGroup.py --stats``: one Kruskal-Wallis over all
  algorithm x group cells, then pairwise Mann-Whitney U within each algorithm with
  Bonferroni over all those pairs (``group_scope="algorithm"``: one analysis per algorithm
  instead), groups under 5 cases left out and listed; demographic parity difference
  (largest gap of group means).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation import stats
from medsegzoo.evaluation.protocols.tables import (
    format_mean_sd,
    format_number,
    higher_is_better,
    markdown_table,
    metric_label,
    ordered,
    require_columns,
)

# algorithm name used when the table has no ``algorithm`` column (a single prediction set)
SINGLE_ALGORITHM = "prediction"

# age is continuous; grouped by these edges (years) unless the caller passes others
DEFAULT_AGE_BINS: tuple[float, ...] = (0, 30, 40, 50, 60, 70, 80, float("inf"))

# numeric metadata with more distinct values than this is binned (quartiles) before testing
MAX_NUMERIC_LEVELS = 10

# "pooled": Touchstone's PlotGroup.py --stats (one Kruskal-Wallis over all algorithm x group
# cells, one correction family over every algorithm's pairs); "algorithm": one analysis each
GROUP_SCOPES: tuple[str, ...] = ("pooled", "algorithm")

__all__ = [
    "DEFAULT_AGE_BINS",
    "GROUP_SCOPES",
    "MetricAnalysis",
    "TouchstoneResult",
    "aggregate_c",
    "aggregate_i",
    "bin_metadata",
    "class_summary",
    "class_table",
    "group_sort_key",
    "per_case_scores",
    "touchstone_protocol",
    "worst_case",
]


def _with_algorithm(table: pd.DataFrame) -> pd.DataFrame:
    if "algorithm" in table.columns:
        return table
    return table.assign(algorithm=SINGLE_ALGORITHM)


def class_summary(table: pd.DataFrame, metric: str = "dsc", ddof: int = 1) -> pd.DataFrame:
    """Per-algorithm, per-class mean and SD over cases (NaN left out).

    Args:
        table: tidy per-case table (``algorithm`` column optional).
        metric: metric column.
        ddof: delta degrees of freedom of the SD (1: sample SD, pandas' default).

    Returns:
        Long table with columns ``algorithm``, ``class``, ``mean``, ``sd``, ``median``,
        ``n`` (cases with a value) and ``n_undefined`` (NaN rows).
    """
    require_columns(table, ["case", "class", metric])
    t = _with_algorithm(table)
    grouped = t.groupby(["algorithm", "class"], sort=False)[metric]
    out = grouped.agg(
        mean="mean",
        sd=lambda s: s.std(ddof=ddof),
        median="median",
        n="count",
        n_undefined=lambda s: int(s.isna().sum()),
    )
    return out.reset_index()


def class_table(table: pd.DataFrame, metric: str = "dsc", classes: Sequence[str] | None = None, digits: int = 2, scale: float = 1.0) -> pd.DataFrame:
    """Wide "mean ± SD" table: rows = algorithms, columns = classes, plus the ``C`` aggregate.

    Args:
        table: tidy per-case table.
        metric: metric column.
        classes: column order (default: order of appearance).
        digits: decimals.
        scale: multiply values (100 prints DSC in percent).

    Returns:
        DataFrame of strings.
    """
    summary = class_summary(table, metric)
    cols = ordered(summary["class"], classes)
    algos = ordered(summary["algorithm"])
    agg = aggregate_c(table, metric)
    out = pd.DataFrame(index=pd.Index(algos, name="algorithm"), columns=[*cols, "mean (C)"], dtype=object)
    for algo, cls, mean, sd in zip(summary["algorithm"], summary["class"], summary["mean"], summary["sd"]):
        out.loc[algo, cls] = format_mean_sd(mean * scale, sd * scale, digits)
    for algo in algos:
        out.loc[algo, "mean (C)"] = format_number(agg.get(algo, np.nan) * scale, digits)
    return out.fillna("n/a")


def aggregate_c(table: pd.DataFrame, metric: str = "dsc") -> pd.Series:
    """Mean over cases per class, then mean over classes (DSC^C), per algorithm."""
    summary = class_summary(table, metric)
    return summary.groupby("algorithm", sort=False)["mean"].mean()


def per_case_scores(table: pd.DataFrame, metric: str = "dsc") -> pd.DataFrame:
    """Mean over classes per case (the per-case values of DSC^I): cases x algorithms.

    A case where every class is NaN for an algorithm gets NaN for that algorithm.
    """
    require_columns(table, ["case", "class", metric])
    t = _with_algorithm(table)
    means = t.groupby(["case", "algorithm"], sort=False)[metric].mean()
    wide = means.unstack("algorithm")
    return wide[ordered(t["algorithm"])]


def aggregate_i(table: pd.DataFrame, metric: str = "dsc") -> pd.Series:
    """Mean over classes per case, then over cases (DSC^I), per algorithm."""
    return per_case_scores(table, metric).mean(axis=0)


def worst_case(table: pd.DataFrame, metric: str = "dsc", quantile: float = 0.1) -> pd.Series:
    """Worst-case aggregate per algorithm: per class the mean of the cases at or below the quantile, then over classes.

    For distances (lower is better) the worst cases are the largest values, i.e. the mean
    of the cases at or above the ``1 - quantile`` quantile.
    """
    require_columns(table, ["case", "class", metric])
    t = _with_algorithm(table)
    sign = 1.0 if higher_is_better(metric) else -1.0
    per_class = t.groupby(["algorithm", "class"], sort=False)[metric].apply(
        lambda s: sign * stats.worst_case_mean(sign * s.to_numpy(dtype=float), quantile)
    )
    return per_class.groupby(level="algorithm", sort=False).mean()


def bin_metadata(values: pd.Series, bins: Sequence[float] | None = None) -> pd.Series:
    """Turn a metadata column into groups (strings); continuous columns are binned.

    Args:
        values: one value per case.
        bins: bin edges for a numeric column; default: :data:`DEFAULT_AGE_BINS` for a
            column named ``age``, quartiles for other numeric columns with more than
            :data:`MAX_NUMERIC_LEVELS` distinct values, otherwise each value a group.

    Returns:
        Group label per case (NaN where the value is missing).
    """
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and bins is None and str(values.name).lower() == "age":
        bins = DEFAULT_AGE_BINS
    if numeric and bins is not None:
        edges = list(bins)
        labels = [_interval_label(lo, hi) for lo, hi in itertools.pairwise(edges)]
        return pd.cut(values, edges, right=False, labels=labels).astype(object).where(values.notna())
    if numeric and values.nunique() > MAX_NUMERIC_LEVELS:
        return pd.qcut(values, 4, duplicates="drop").astype(str).where(values.notna())
    return values.astype(object).where(values.notna()).map(lambda v: v if pd.isna(v) else str(v))


def group_sort_key(label: str) -> tuple:
    """Sort key putting binned labels in numeric order: ``"<30" < "30-39" < ... < "80+"``, then text."""
    text = str(label)
    if text.startswith("<"):
        return (0, float("-inf"), text)
    m = re.search(r"-?\d+(\.\d+)?", text)
    return (0, float(m.group()), text) if m else (1, 0.0, text)


def _interval_label(lo: float, hi: float) -> str:
    if np.isinf(hi):
        return f"{lo:g}+"
    if lo <= 0:
        return f"<{hi:g}"
    return f"{lo:g}-{hi - 1:g}" if float(lo).is_integer() and float(hi).is_integer() else f"[{lo:g}, {hi:g})"


@dataclass
class MetricAnalysis:
    """Everything Touchstone reports for one metric.

    Attributes:
        metric: metric column.
        higher_is_better: direction of the metric.
        class_summary: see :func:`class_summary`.
        aggregate_c: C aggregate (mean over cases, then classes) per algorithm.
        aggregate_i: I aggregate (mean over classes, then cases) per algorithm.
        worst_case: worst-case aggregate per algorithm.
        per_case: cases x algorithms per-case values (the tests' input).
        pairwise: :func:`medsegzoo.evaluation.stats.pairwise_wilcoxon` table (None with one algorithm).
        significance: significance map (None with one algorithm).
        bootstrap: bootstrap ranking (None with one algorithm).
        groups: (algorithm, metadata column) -> group comparison.
    """

    metric: str
    higher_is_better: bool
    class_summary: pd.DataFrame
    aggregate_c: pd.Series
    aggregate_i: pd.Series
    worst_case: pd.Series
    per_case: pd.DataFrame
    pairwise: pd.DataFrame | None = None
    significance: pd.DataFrame | None = None
    bootstrap: stats.BootstrapRanking | None = None
    groups: dict[tuple[str, str], stats.GroupComparison] = field(default_factory=dict)

    def aggregates(self) -> pd.DataFrame:
        """One row per algorithm: C, I and worst-case aggregates and the number of cases."""
        out = pd.DataFrame(
            {
                "mean (C)": self.aggregate_c,
                "mean (I)": self.aggregate_i,
                "worst case (C)": self.worst_case,
                "cases": self.per_case.notna().sum(axis=0),
            }
        )
        out.index.name = "algorithm"
        return out.sort_values("mean (C)", ascending=not self.higher_is_better, kind="stable")

    def group_table(self) -> pd.DataFrame:
        """One row per (algorithm, metadata column): Kruskal-Wallis, DPD, pairs and exclusions.

        With pooled group tests, ``H`` and its p-value are the one test over all algorithm x
        group cells of the column, repeated on each algorithm's row; ``pairs in family``
        is the size of the correction family the pairs were adjusted in.
        """
        rows = []
        for (algo, column), g in self.groups.items():
            sig = g.pairwise[g.pairwise["significant"].astype(bool)] if len(g.pairwise) else g.pairwise
            rows.append(
                {
                    "algorithm": algo,
                    "column": column,
                    "groups tested": len(g.group_means),
                    "H": g.statistic,
                    "p (Kruskal-Wallis)": g.p_value,
                    "DPD": g.parity_difference,
                    f"significant pairs ({g.correction})": ", ".join(f"{a} vs {b}" for a, b in zip(sig["group_a"], sig["group_b"])) or "-",
                    "pairs in family": g.family_size,
                    f"left out (< {g.min_group_size} cases)": ", ".join(f"{k} (n={g.group_sizes[k]})" for k in g.excluded) or "-",
                }
            )
        return pd.DataFrame(rows)


@dataclass
class TouchstoneResult:
    """Result of :func:`touchstone_protocol` for every analysed metric.

    Attributes:
        analyses: metric -> :class:`MetricAnalysis`.
        algorithms: algorithm names in table order.
        classes: class names in table order.
        n_cases: number of distinct cases.
        settings: the protocol's parameters (printed in the report).
    """

    analyses: dict[str, MetricAnalysis]
    algorithms: tuple[str, ...]
    classes: tuple[str, ...]
    n_cases: int
    settings: dict[str, object]

    def to_markdown(
        self,
        scale: float = 100.0,
        table: pd.DataFrame | None = None,
        figures: Mapping[str, Mapping[str, str]] | None = None,
    ) -> str:
        """Markdown sections: per-class tables (when ``table`` is given), aggregates, significance, ranking, groups.

        Args:
            scale: factor for overlap metrics (100 prints percent); distances are unscaled.
            table: the tidy table, to print the per-class mean ± SD tables.
            figures: metric -> section (``"significance"``, ``"bootstrap"``, ``"groups"``) ->
                Markdown (image links) printed right after that section's table, so that a
                plot stands beside the numbers it shows.

        Returns:
            The Markdown text.
        """
        s = self.settings
        parts: list[str] = []
        for metric, a in self.analyses.items():
            shown = (figures or {}).get(metric, {})
            f = scale if a.higher_is_better else 1.0
            name = metric_label(metric)
            parts.append(f"### {name}\n\n")
            if table is not None:
                parts.append("Per-class mean ± SD over cases (SD with ddof=1); `mean (C)` averages the class means.\n\n")
                parts.append(markdown_table(class_table(table, metric, self.classes, scale=f)) + "\n")
            agg = a.aggregates()
            for col in ("mean (C)", "mean (I)", "worst case (C)"):
                agg[col] = agg[col] * f
            parts.append(
                f"Aggregates: `C` = mean over cases then classes, `I` = mean over classes then cases "
                f"(used by the tests), worst case = mean of the cases at or below the "
                f"{s['worst_quantile']:.0%} quantile per class, then over classes.\n\n"
            )
            parts.append(markdown_table(agg) + "\n")
            if a.pairwise is not None and a.significance is not None:
                lo, hi = int(a.pairwise["n_cases"].min()), int(a.pairwise["n_cases"].max())
                shared = "the cases both algorithms have" if s["pair_alignment"] == "pairwise" else "the cases every algorithm has"
                untested = int(a.pairwise["p_value"].isna().sum())
                parts.append(
                    f"Significance map: one-sided Wilcoxon signed-rank tests on per-case `I` values for "
                    f"every ordered pair, each on {shared}, {s['pair_correction']} correction over all "
                    f"{len(a.pairwise)} tests, alpha = {s['alpha']}. A mark in row R, column C means "
                    f"C is significantly better than R. Cases per pair: {lo if lo == hi else f'{lo}-{hi}'}."
                    + (
                        f" Tests without a p-value (every difference zero, or no shared case; not significant, "
                        f"counted in the correction): {untested}."
                        if untested
                        else ""
                    )
                    + "\n\n"
                )
                marks = a.significance.map(lambda v: "✓" if v else "")
                parts.append(markdown_table(marks, index_label="row \\ better") + "\n")
                parts.append(shown.get("significance", ""))
            if a.bootstrap is not None:
                b = a.bootstrap
                summ = b.summary()
                summ["95% interval"] = [f"[{lo:g}, {hi:g}]" for lo, hi in zip(summ["rank_ci_low"], summ["rank_ci_high"])]
                summ = summ[["algorithm", "observed_rank", "median_rank", "95% interval", "p_rank_1"]].set_index("algorithm")
                parts.append(
                    f"Ranking stability: {b.ranks.shape[0]} bootstrap resamples of {b.n_cases} cases "
                    f"(seed {b.seed}), ranked by mean `I` value, ties share the best rank.\n\n"
                )
                parts.append(markdown_table(summ) + "\n")
                if b.dropped_cases:
                    parts.append(f"Cases left out of the ranking (no value for some algorithm): {len(b.dropped_cases)}.\n\n")
                parts.append(shown.get("bootstrap", ""))
            if a.groups:
                gt = a.group_table()
                if s["group_scope"] == "pooled":
                    how = (
                        "one Kruskal-Wallis per column over all algorithm x group cells (its H and p repeat on "
                        "each algorithm's row); when p < alpha, two-sided Mann-Whitney U for every pair of groups "
                        f"within each algorithm, {s['group_correction']} over all those pairs of all algorithms, "
                        "significant at adjusted p <= alpha"
                    )
                else:
                    how = (
                        "per algorithm, Kruskal-Wallis over its groups; when p < alpha, pairwise two-sided "
                        f"Mann-Whitney U with {s['group_correction']} within the algorithm, significant at "
                        "adjusted p < alpha"
                    )
                parts.append(
                    f"Metadata groups (per-case `I` values): {how}; DPD = largest gap between group means "
                    f"(in {name} units of this table).\n\n"
                )
                gt["DPD"] = gt["DPD"] * f
                parts.append(markdown_table(gt, digits=4, index=False) + "\n")
            parts.append(shown.get("groups", ""))
        return "".join(parts)


def _group_comparisons(
    per_case: pd.DataFrame,
    metadata: pd.DataFrame,
    columns: Sequence[str],
    bins: Mapping[str, Sequence[float]],
    min_group_size: int,
    correction: str,
    alpha: float,
    scope: str = "pooled",
) -> dict[tuple[str, str], stats.GroupComparison]:
    out: dict[tuple[str, str], stats.GroupComparison] = {}
    for column in columns:
        labels = bin_metadata(metadata[column], bins.get(column))
        by_algorithm: dict[str, dict[str, np.ndarray]] = {}
        for algo in per_case.columns:
            values = per_case[algo]
            joined = pd.DataFrame({"score": values, "group": labels.reindex(values.index)}).dropna()
            by_group = {str(g): v.to_numpy(float) for g, v in joined.groupby("group")["score"]}
            by_algorithm[str(algo)] = {g: by_group[g] for g in sorted(by_group, key=group_sort_key)}
        if scope == "pooled":
            # the first algorithm's group sizes decide the exclusions, as PlotGroup.py does
            pooled = stats.compare_groups_pooled(
                by_algorithm, column=column, min_group_size=min_group_size, correction=correction, alpha=alpha
            )
            out.update({(algo, column): g for algo, g in pooled.items()})
        else:
            for algo, groups in by_algorithm.items():
                out[(algo, column)] = stats.compare_groups(
                    groups, column=column, min_group_size=min_group_size, correction=correction, alpha=alpha
                )
    return out


def case_metadata(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One row per case with the metadata ``columns`` (first value per case).

    Raises:
        DataValidationError: a column is missing, or a case has two different values.
    """
    require_columns(table, ["case", *columns])
    meta = table[["case", *columns]].drop_duplicates()
    clash = meta["case"].duplicated(keep=False)
    if clash.any():
        bad = sorted(meta.loc[clash, "case"].astype(str).unique())[:5]
        raise DataValidationError(f"metadata differs between rows of the same case: {bad}")
    return meta.set_index("case")


def touchstone_protocol(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("dsc", "nsd"),
    metadata_columns: Sequence[str] = (),
    *,
    alpha: float = 0.05,
    pair_correction: str = "holm",
    group_correction: str = "bonferroni",
    min_group_size: int = stats.DEFAULT_MIN_GROUP_SIZE,
    n_bootstrap: int = 1000,
    seed: int = 0,
    worst_quantile: float = 0.1,
    bins: Mapping[str, Sequence[float]] | None = None,
    pair_alignment: str = "pairwise",
    zero_differences: str = "nan",
    group_scope: str = "pooled",
) -> TouchstoneResult:
    """Run the Touchstone protocol on a tidy per-case table.

    Args:
        table: tidy per-case table; ``algorithm`` column for several algorithms, metadata
            columns joined on ``case``.
        metrics: metric columns to analyse (those absent from the table are skipped).
        metadata_columns: columns defining demographic groups (age is binned by decade,
            see :func:`bin_metadata`).
        alpha: significance level of every test.
        pair_correction: correction of the pairwise Wilcoxon family (Touchstone: Holm).
        group_correction: correction of the pairwise Mann-Whitney tests (paper and public
            ``PlotGroup.py``: Bonferroni; ``"fdr_bh"`` as an option).
        min_group_size: metadata groups with fewer cases are left out (and listed);
            Touchstone's default is 5.
        n_bootstrap: bootstrap resamples for ranking stability.
        seed: seed of the bootstrap generator.
        worst_quantile: quantile of the worst-case aggregate.
        bins: per metadata column, bin edges for numeric values.
        pair_alignment: ``"pairwise"`` (Touchstone: each pair on the cases both algorithms
            have) or ``"complete"`` (every pair on the cases all algorithms have), see
            :func:`medsegzoo.evaluation.stats.pairwise_wilcoxon`.
        zero_differences: all-zero rule of the Wilcoxon test, ``"nan"`` (Touchstone) or
            ``"one"``, see :func:`medsegzoo.evaluation.stats.wilcoxon_greater`.
        group_scope: ``"pooled"`` (Touchstone, :func:`~medsegzoo.evaluation.stats.compare_groups_pooled`)
            or ``"algorithm"`` (:func:`~medsegzoo.evaluation.stats.compare_groups` per algorithm).

    Returns:
        :class:`TouchstoneResult`.

    Raises:
        DataValidationError: missing columns, no metric column, duplicate rows, unknown option.
    """
    require_columns(table, ["case", "class"])
    for name, value, choices in (
        ("pair_alignment", pair_alignment, stats.PAIR_ALIGNMENTS),
        ("zero_differences", zero_differences, stats.ZERO_DIFFERENCES),
        ("group_scope", group_scope, GROUP_SCOPES),
    ):
        if value not in choices:
            raise DataValidationError(f"{name} must be one of {list(choices)}, got {value!r}")
    t = _with_algorithm(table)
    present = [m for m in metrics if m in t.columns]
    if not present:
        raise DataValidationError(f"per-case table has none of the metric columns {list(metrics)}")
    dup = t.duplicated(["algorithm", "case", "class"])
    if dup.any():
        first = t.loc[dup, ["algorithm", "case", "class"]].iloc[0].tolist()
        raise DataValidationError(f"per-case table has {int(dup.sum())} duplicate (algorithm, case, class) rows, e.g. {first}")
    metadata = case_metadata(t, list(metadata_columns)) if metadata_columns else pd.DataFrame()
    algorithms = tuple(ordered(t["algorithm"]))
    analyses: dict[str, MetricAnalysis] = {}
    for metric in present:
        up = higher_is_better(metric)
        per_case = per_case_scores(t, metric)
        a = MetricAnalysis(
            metric=metric,
            higher_is_better=up,
            class_summary=class_summary(t, metric),
            aggregate_c=aggregate_c(t, metric),
            aggregate_i=per_case.mean(axis=0),
            worst_case=worst_case(t, metric, worst_quantile),
            per_case=per_case,
        )
        complete = not stats.complete_cases(per_case)[0].empty
        # pairs on their shared cases need two algorithms with a value on one case; the
        # bootstrap ranking resamples whole cases and needs a value from every algorithm
        shares = (np.isfinite(per_case.to_numpy(dtype=float)).sum(axis=1) >= 2).any()
        if len(algorithms) >= 2 and (complete if pair_alignment == "complete" else shares):
            a.pairwise = stats.pairwise_wilcoxon(
                per_case,
                alpha=alpha,
                correction=pair_correction,
                higher_is_better=up,
                alignment=pair_alignment,
                zero_differences=zero_differences,
            )
            a.significance = stats.significance_matrix(a.pairwise, order=algorithms)
        if len(algorithms) >= 2 and complete:
            a.bootstrap = stats.bootstrap_ranking(per_case, n_resamples=n_bootstrap, seed=seed, higher_is_better=up)
        if metadata_columns:
            a.groups = _group_comparisons(
                per_case, metadata, metadata_columns, bins or {}, min_group_size, group_correction, alpha, group_scope
            )
        analyses[metric] = a
    return TouchstoneResult(
        analyses=analyses,
        algorithms=algorithms,
        classes=tuple(ordered(t["class"])),
        n_cases=int(t["case"].nunique()),
        settings={
            "alpha": alpha,
            "pair_correction": pair_correction,
            "group_correction": group_correction,
            "min_group_size": min_group_size,
            "pair_alignment": pair_alignment,
            "zero_differences": zero_differences,
            "group_scope": group_scope,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "worst_quantile": worst_quantile,
        },
    )
