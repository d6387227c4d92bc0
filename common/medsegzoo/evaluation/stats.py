"""Statistical tests and multiple-comparison corrections used by the evaluation protocols.

Every test here is a thin, checked wrapper around scipy or statsmodels: the numbers are
theirs (the tests in ``tests/test_evaluation_stats.py`` compare them one to one). What the
wrappers add is what a benchmark needs around the test: paired inputs aligned by case,
degenerate inputs (all differences zero, identical groups) answered by a documented value
instead of a warning, corrections over the whole family of comparisons, and results as
tidy tables that a report can print.

The defaults follow Touchstone's public analysis scripts (``plot/SignificanceMaps.py`` and
the ``--stats`` path of ``plot/PlotGroup.py``); each departure we used before is kept as an
option (docs/fidelity.md, "Touchstone statistics"):

* pairwise Wilcoxon tests align the cases per pair (``alignment="pairwise"``; the old
  ``"complete"`` drops every case that any algorithm lacks);
* all paired differences zero -> p = NaN, not significant, still a member of the
  correction family (``zero_differences="nan"``; the old ``"one"`` gives p = 1);
* metadata groups: one Kruskal-Wallis over all algorithm x group cells pooled, Bonferroni
  over all same-algorithm pairs of all algorithms (:func:`compare_groups_pooled`); the old
  one-test-per-algorithm analysis is :func:`compare_groups`.

Conventions:
    * ``scores`` tables have one row per case and one column per algorithm (higher is
      better unless ``higher_is_better=False``).
    * The significance matrix follows the Touchstone figures: cell ``[row, column]`` is
      True when the *column* algorithm is significantly better than the *row* algorithm.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from medsegzoo.errors import DataValidationError

# correction names accepted by this module -> statsmodels' method names
CORRECTIONS: dict[str, str] = {
    "holm": "holm",
    "bonferroni": "bonferroni",
    "fdr_bh": "fdr_bh",
    "benjamini-hochberg": "fdr_bh",
    "bh": "fdr_bh",
    "none": "none",
}

__all__ = [
    "CORRECTIONS",
    "DEFAULT_MIN_GROUP_SIZE",
    "PAIR_ALIGNMENTS",
    "ZERO_DIFFERENCES",
    "BootstrapRanking",
    "GroupComparison",
    "adjust_pvalues",
    "bootstrap_ranking",
    "compare_groups",
    "compare_groups_pooled",
    "complete_cases",
    "demographic_parity_difference",
    "kruskal_wallis",
    "pairwise_mann_whitney",
    "pairwise_wilcoxon",
    "rank_algorithms",
    "significance_matrix",
    "wilcoxon_greater",
    "worst_case_mean",
]

# how pairwise_wilcoxon picks the cases of a pair: "pairwise" = the cases both algorithms
# have (Touchstone's SignificanceMaps.py, function ``allign``); "complete" = the cases every
# algorithm has (one case set for all pairs)
PAIR_ALIGNMENTS: tuple[str, ...] = ("pairwise", "complete")

# answer of the one-sided Wilcoxon test when every paired difference is zero: "nan" (no
# test; the official script's result) or "one" (p = 1, "no evidence either way")
ZERO_DIFFERENCES: tuple[str, ...] = ("nan", "one")

# metadata groups with fewer cases are left out (PlotGroup.py ``--th``, default 5)
DEFAULT_MIN_GROUP_SIZE = 5


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataValidationError(f"{name} must be one of {list(choices)}, got {value!r}")


def _statsmodels_method(correction: str) -> str:
    key = correction.lower()
    if key not in CORRECTIONS:
        raise DataValidationError(
            f"unknown multiple-comparison correction {correction!r}; known: {sorted(CORRECTIONS)}"
        )
    return CORRECTIONS[key]


def adjust_pvalues(
    pvalues: Sequence[float] | np.ndarray, correction: str = "holm", count_untested: bool = False
) -> np.ndarray:
    """Adjust a family of p-values for multiple comparisons.

    NaN p-values (tests that could not be run) stay NaN. By default they are also left out
    of the family, so that an untestable pair does not inflate the correction of the others.
    With ``count_untested`` they stay members of the family that can never be rejected: the
    others are adjusted as if those p-values were 1. That is what Touchstone's scripts get
    by handing every p-value to statsmodels' ``multipletests`` (Holm sorts a NaN last, so it
    only raises the family size) or to statannotations (Bonferroni multiplies by the number
    of pairs it was given).

    Args:
        pvalues: raw p-values of one family of tests.
        correction: ``"holm"``, ``"bonferroni"``, ``"fdr_bh"`` (Benjamini-Hochberg; aliases
            ``"bh"``, ``"benjamini-hochberg"``) or ``"none"``.
        count_untested: count NaN p-values in the family size.

    Returns:
        Adjusted p-values (statsmodels ``multipletests``), same order and length.

    Raises:
        DataValidationError: unknown correction name.
    """
    method = _statsmodels_method(correction)
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if not finite.any():
        return out
    if method == "none":
        out[finite] = p[finite]
    elif count_untested:
        # p = 1 is never rejected and, sorted last, changes no other member's Holm/BH step
        # beyond the family size
        out[finite] = multipletests(np.where(finite, p, 1.0), method=method)[1][finite]
    else:
        out[finite] = multipletests(p[finite], method=method)[1]
    return out


def wilcoxon_greater(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, zero_differences: str = "nan"
) -> tuple[float, float]:
    """One-sided Wilcoxon signed-rank test of "x is greater than y" on paired values.

    All-zero rule: when every paired difference is zero (identical scores, or no case at
    all) the signed-rank test has no sample left. With ``zero_differences="nan"`` (the
    default) the answer is ``(0.0, nan)``: not significant, and a NaN in the table, as in
    Touchstone's ``SignificanceMaps.py`` (scipy 1.8, pinned by its ``environment.yml``,
    raised an error that the script turned into p = 100, i.e. 1 after Holm; current scipy
    returns NaN for 14 cases or more). With ``"one"`` the answer is ``(0.0, 1.0)``.

    Args:
        x: scores of the first algorithm, one per case.
        y: scores of the second algorithm on the same cases, same order.
        zero_differences: ``"nan"`` or ``"one"``, see above.

    Returns:
        ``(statistic, p_value)`` as scipy's ``wilcoxon(x, y, alternative="greater")``
        (zero differences dropped, scipy's default ``zero_method="wilcox"``), except in the
        all-zero case above.

    Raises:
        DataValidationError: different lengths, NaN values (align cases first, e.g. with
            :func:`complete_cases`), or an unknown ``zero_differences``.
    """
    _check_choice("zero_differences", zero_differences, ZERO_DIFFERENCES)
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise DataValidationError(f"paired test needs two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataValidationError("paired test got NaN/inf scores; drop incomplete cases first")
    if not np.any(a - b):
        # the positive-rank sum of an empty sample is 0; only the p-value is undefined
        return 0.0, (float("nan") if zero_differences == "nan" else 1.0)
    res = sps.wilcoxon(a, b, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def complete_cases(scores: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """Keep the cases (rows) that have a finite score for every algorithm (column).

    Args:
        scores: cases x algorithms.

    Returns:
        ``(complete_table, dropped_case_ids)``.
    """
    keep = np.isfinite(scores.to_numpy(dtype=float)).all(axis=1)
    return scores.loc[keep], list(scores.index[~keep])


def pairwise_wilcoxon(
    scores: pd.DataFrame,
    alpha: float = 0.05,
    correction: str = "holm",
    higher_is_better: bool = True,
    alignment: str = "pairwise",
    zero_differences: str = "nan",
) -> pd.DataFrame:
    """One-sided Wilcoxon signed-rank test for every ordered pair of algorithms.

    Both directions of every pair are tested ("A better than B" and "B better than A"),
    and the correction runs over the whole family of ``k * (k - 1)`` tests, as in the
    Touchstone significance maps; a pair that cannot be tested (all differences zero, no
    shared case) keeps a NaN p-value and still counts in the family (the official script
    hands all ``k * (k - 1)`` p-values to ``multipletests``). A pair is significant when its
    adjusted p-value is below ``alpha`` (strictly, as the official ``p < 0.05``).

    Args:
        scores: cases x algorithms (e.g. per-case DSC^I); NaN where an algorithm has no
            value for a case.
        alpha: significance level applied to the adjusted p-values.
        correction: see :func:`adjust_pvalues`.
        higher_is_better: False for distances (HD95, ASSD): the test then asks whether
            the first algorithm's values are *lower*.
        alignment: ``"pairwise"`` (default, Touchstone): each pair is tested on the cases
            both of its algorithms have; ``"complete"``: every pair on the cases that all
            algorithms have.
        zero_differences: all-zero rule of :func:`wilcoxon_greater`.

    Returns:
        One row per ordered pair: ``better``, ``worse`` (the hypothesis "better beats
        worse"), ``n_cases``, ``statistic``, ``p_value``, ``p_adjusted``, ``significant``.

    Raises:
        DataValidationError: fewer than two algorithms, an unknown option, or no case shared
            by the algorithms of any pair (``"pairwise"``) / by all algorithms
            (``"complete"``).
    """
    _check_choice("alignment", alignment, PAIR_ALIGNMENTS)
    _check_choice("zero_differences", zero_differences, ZERO_DIFFERENCES)
    if scores.shape[1] < 2:
        raise DataValidationError(f"pairwise comparison needs at least two algorithms, got {list(scores.columns)}")
    if alignment == "complete":
        scores, _ = complete_cases(scores)
        if scores.empty:
            raise DataValidationError("no case has a score for every algorithm; nothing to compare")
    finite = np.isfinite(scores.to_numpy(dtype=float))
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for (i, a), (j, b) in itertools.permutations(enumerate(scores.columns), 2):
        shared = finite[:, i] & finite[:, j]  # "complete": every row is shared already
        x = sign * scores[a].to_numpy(float)[shared]
        y = sign * scores[b].to_numpy(float)[shared]
        stat, p = wilcoxon_greater(x, y, zero_differences) if shared.any() else (float("nan"), float("nan"))
        rows.append({"better": a, "worse": b, "n_cases": int(shared.sum()), "statistic": stat, "p_value": p})
    out = pd.DataFrame(rows)
    if not out["n_cases"].any():
        raise DataValidationError("no two algorithms have a score for the same case; nothing to compare")
    out["p_adjusted"] = adjust_pvalues(out["p_value"].to_numpy(), correction, count_untested=True)
    out["significant"] = out["p_adjusted"] < alpha
    return out


def significance_matrix(pairwise: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Square boolean matrix from :func:`pairwise_wilcoxon` (Touchstone significance map).

    Args:
        pairwise: output of :func:`pairwise_wilcoxon`.
        order: algorithm order of rows and columns (default: first appearance).

    Returns:
        DataFrame, index = row algorithm (y axis), columns = column algorithm (x axis);
        True where the column algorithm is significantly better than the row algorithm.
        The diagonal is False.
    """
    names = list(order) if order is not None else list(dict.fromkeys([*pairwise["better"], *pairwise["worse"]]))
    mat = pd.DataFrame(False, index=pd.Index(names, name="worse"), columns=pd.Index(names, name="better"))
    for row in pairwise.itertuples(index=False):
        if row.better in mat.columns and row.worse in mat.index:
            mat.loc[row.worse, row.better] = bool(row.significant)
    return mat


def rank_algorithms(means: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Ranks (1 = best) of aggregated scores; ties share the best rank ("min", as challengeR).

    Args:
        means: ``(..., k)`` aggregated score per algorithm (last axis).
        higher_is_better: direction of the score.

    Returns:
        Integer ranks of the same shape.
    """
    values = -np.asarray(means, dtype=float) if higher_is_better else np.asarray(means, dtype=float)
    return sps.rankdata(values, method="min", axis=-1).astype(int)


@dataclass(frozen=True)
class BootstrapRanking:
    """Ranking stability from bootstrap resamples of the cases.

    Attributes:
        algorithms: algorithm names, column order of ``ranks``.
        ranks: ``(n_resamples, k)`` rank of each algorithm in each resample (1 = best).
        observed: rank of each algorithm on the full set of cases.
        n_cases: number of (complete) cases resampled.
        seed: seed of the numpy Generator.
        dropped_cases: cases left out because an algorithm had no score on them.
    """

    algorithms: tuple[str, ...]
    ranks: np.ndarray
    observed: np.ndarray
    n_cases: int
    seed: int
    dropped_cases: tuple = ()

    def summary(self) -> pd.DataFrame:
        """Median rank and 95 % bootstrap interval (2.5th to 97.5th percentile) per algorithm."""
        lo, med, hi = np.percentile(self.ranks, [2.5, 50.0, 97.5], axis=0)
        out = pd.DataFrame(
            {
                "algorithm": list(self.algorithms),
                "observed_rank": self.observed,
                "median_rank": med,
                "rank_ci_low": lo,
                "rank_ci_high": hi,
                "p_rank_1": (self.ranks == 1).mean(axis=0),
            }
        )
        return out.sort_values(["median_rank", "observed_rank"], kind="stable").reset_index(drop=True)

    def frequencies(self) -> pd.DataFrame:
        """Relative frequency of each rank (columns 1..k) per algorithm (rows): blob sizes."""
        k = len(self.algorithms)
        freq = np.stack([(self.ranks == r).mean(axis=0) for r in range(1, k + 1)], axis=1)
        return pd.DataFrame(freq, index=list(self.algorithms), columns=range(1, k + 1))


def bootstrap_ranking(
    scores: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    higher_is_better: bool = True,
) -> BootstrapRanking:
    """Rank algorithms on bootstrap resamples of the cases (Touchstone D.2.2, challengeR).

    Each resample draws ``n`` cases with replacement from the ``n`` complete cases
    (one ``numpy.random.Generator(PCG64(seed))``, so the result is reproducible); the
    algorithms are ranked by their mean score over the drawn cases ("aggregate then rank",
    ties share the best rank).

    Args:
        scores: cases x algorithms (e.g. per-case DSC^I).
        n_resamples: number of bootstrap samples (Touchstone: 1 000).
        seed: seed of the random generator.
        higher_is_better: direction of the score.

    Returns:
        :class:`BootstrapRanking`.

    Raises:
        DataValidationError: no algorithm, no complete case, or ``n_resamples < 1``.
    """
    if scores.shape[1] < 1 or n_resamples < 1:
        raise DataValidationError("bootstrap ranking needs at least one algorithm and one resample")
    table, dropped = complete_cases(scores)
    if table.empty:
        raise DataValidationError("no case has a score for every algorithm; nothing to rank")
    values = table.to_numpy(dtype=float)
    n = len(values)
    rng = np.random.default_rng(seed)
    ranks = np.empty((n_resamples, values.shape[1]), dtype=int)
    # resample in blocks: bounded memory (block x n x k floats) whatever n_resamples is
    block = max(1, min(n_resamples, 2_000_000 // max(1, n * values.shape[1])))
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        ranks[start:stop] = rank_algorithms(values[idx].mean(axis=1), higher_is_better)
    observed = rank_algorithms(values.mean(axis=0), higher_is_better)
    return BootstrapRanking(
        algorithms=tuple(str(c) for c in table.columns),
        ranks=ranks,
        observed=observed,
        n_cases=n,
        seed=seed,
        dropped_cases=tuple(dropped),
    )


def kruskal_wallis(groups: Mapping[str, Sequence[float] | np.ndarray]) -> tuple[float, float]:
    """Kruskal-Wallis H test over two or more groups (scipy ``kruskal``).

    Args:
        groups: group name -> values (NaN values are dropped).

    Returns:
        ``(H, p_value)``. When every value is identical the statistic is undefined;
        there is no evidence of a difference: ``(0.0, 1.0)``.

    Raises:
        DataValidationError: fewer than two non-empty groups.
    """
    arrays = [np.asarray(v, dtype=float) for v in groups.values()]
    arrays = [a[np.isfinite(a)] for a in arrays]
    arrays = [a for a in arrays if a.size]
    if len(arrays) < 2:
        raise DataValidationError(f"Kruskal-Wallis needs at least two non-empty groups, got {list(groups)}")
    pooled = np.concatenate(arrays)
    if np.all(pooled == pooled[0]):
        return 0.0, 1.0
    res = sps.kruskal(*arrays)
    return float(res.statistic), float(res.pvalue)


def _finite_groups(groups: Mapping[str, Sequence[float] | np.ndarray]) -> dict[str, np.ndarray]:
    clean = {str(k): np.asarray(v, dtype=float) for k, v in groups.items()}
    return {k: v[np.isfinite(v)] for k, v in clean.items()}


def _mann_whitney_rows(groups: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Unadjusted two-sided Mann-Whitney U for every unordered pair of (finite) groups."""
    rows = []
    for (ga, a), (gb, b) in itertools.combinations(groups.items(), 2):
        if a.size == 0 or b.size == 0:
            stat, p = np.nan, np.nan
        elif np.all(np.concatenate([a, b]) == a[0]):
            stat, p = a.size * b.size / 2.0, 1.0  # identical values: U at its null mean
        else:
            res = sps.mannwhitneyu(a, b, alternative="two-sided")
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"group_a": ga, "group_b": gb, "n_a": a.size, "n_b": b.size, "statistic": stat, "p_value": p})
    return pd.DataFrame(rows, columns=["group_a", "group_b", "n_a", "n_b", "statistic", "p_value"])


def pairwise_mann_whitney(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    correction: str = "bonferroni",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Two-sided Mann-Whitney U test for every unordered pair of groups, corrected.

    Args:
        groups: group name -> values (NaN values are dropped).
        correction: ``"bonferroni"`` (Touchstone paper and the public ``PlotGroup.py``,
            through statannotations) or ``"fdr_bh"``, see :func:`adjust_pvalues`.
        alpha: significance level applied to the adjusted p-values (``p < alpha``).

    Returns:
        One row per pair: ``group_a``, ``group_b``, ``n_a``, ``n_b``, ``statistic`` (U of
        group a), ``p_value``, ``p_adjusted``, ``significant``.
    """
    out = _mann_whitney_rows(_finite_groups(groups))
    out["p_adjusted"] = adjust_pvalues(out["p_value"].to_numpy(dtype=float), correction)
    out["significant"] = out["p_adjusted"] < alpha
    return out


@dataclass(frozen=True)
class GroupComparison:
    """Kruskal-Wallis over metadata groups, then pairwise Mann-Whitney U.

    Attributes:
        column: metadata column that defines the groups.
        statistic: Kruskal-Wallis H (NaN when fewer than two groups are large enough).
        p_value: its p-value (NaN when not tested).
        group_sizes: size of every group, included or not.
        excluded: groups left out because they had fewer than ``min_group_size`` cases.
        pairwise: Mann-Whitney table (empty when Kruskal-Wallis was not run, or was not
            significant and ``always_posthoc`` was False).
        group_means: mean score of each included group.
        parity_difference: demographic parity difference over the included groups.
        correction: correction used for the pairwise tests.
        min_group_size: the size threshold that was applied.
        scope: ``"algorithm"`` (:func:`compare_groups`: Kruskal-Wallis over this
            algorithm's groups, correction within them) or ``"pooled"``
            (:func:`compare_groups_pooled`: ``statistic``/``p_value`` are the one test over
            all algorithm x group cells, shared by every algorithm, and the correction
            counted ``family_size`` pairs over all algorithms).
        family_size: number of pairwise tests the correction counted.
    """

    column: str
    statistic: float
    p_value: float
    group_sizes: dict[str, int]
    excluded: tuple[str, ...]
    pairwise: pd.DataFrame
    group_means: dict[str, float]
    parity_difference: float
    correction: str
    min_group_size: int
    scope: str = "algorithm"
    family_size: int = 0


_PAIRWISE_COLUMNS = ["group_a", "group_b", "n_a", "n_b", "statistic", "p_value", "p_adjusted", "significant"]


def compare_groups(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    column: str = "group",
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    correction: str = "bonferroni",
    alpha: float = 0.05,
    always_posthoc: bool = False,
) -> GroupComparison:
    """Kruskal-Wallis over one algorithm's groups, then pairwise Mann-Whitney U.

    This is the per-algorithm variant (each algorithm its own Kruskal-Wallis and its own
    correction family); Touchstone's public ``--stats`` path pools all algorithms, see
    :func:`compare_groups_pooled`. Groups with fewer than ``min_group_size`` finite values
    are left out and listed in ``excluded`` (a report prints them), so a group of two cases
    cannot decide a test. The pairwise tests run when Kruskal-Wallis has ``p < alpha`` (the
    usual gatekeeping) or always with ``always_posthoc``; a pair is significant when its
    adjusted p-value is ``< alpha``.

    Args:
        groups: group name -> per-case scores.
        column: name of the metadata column (for the report).
        min_group_size: smallest group that is tested.
        correction: correction of the pairwise family (see :func:`adjust_pvalues`).
        alpha: significance level.
        always_posthoc: run the pairwise tests even when Kruskal-Wallis is not significant.

    Returns:
        :class:`GroupComparison`.
    """
    _statsmodels_method(correction)  # fail on a bad name before any work
    clean = _finite_groups(groups)
    sizes = {k: int(v.size) for k, v in clean.items()}
    kept = {k: v for k, v in clean.items() if v.size >= min_group_size}
    excluded = tuple(k for k in clean if k not in kept)
    stat, p = float("nan"), float("nan")
    pairwise = pd.DataFrame(columns=_PAIRWISE_COLUMNS)
    if len(kept) >= 2:
        stat, p = kruskal_wallis(kept)
        if always_posthoc or p < alpha:
            pairwise = pairwise_mann_whitney(kept, correction=correction, alpha=alpha)
    return GroupComparison(
        column=column,
        statistic=stat,
        p_value=p,
        group_sizes=sizes,
        excluded=excluded,
        pairwise=pairwise,
        group_means={k: float(v.mean()) for k, v in kept.items()},
        parity_difference=demographic_parity_difference(kept),
        correction=correction,
        min_group_size=min_group_size,
        scope="algorithm",
        family_size=len(pairwise),
    )


def compare_groups_pooled(
    scores: Mapping[str, Mapping[str, Sequence[float] | np.ndarray]],
    column: str = "group",
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    correction: str = "bonferroni",
    alpha: float = 0.05,
    always_posthoc: bool = False,
    size_from: str | None = None,
) -> dict[str, GroupComparison]:
    """Metadata groups of several algorithms tested together, as Touchstone's ``PlotGroup.py --stats``.

    The official path (``create_boxplot`` with ``significance_test``) works on one table
    whose cells are "algorithm-group":

    1. groups are left out, for every algorithm, when fewer than ``min_group_size`` of their
       cases have a value for the reference algorithm (the official ``read_models_and_groups``
       counts the first algorithm's non-NaN cases against ``--th``, default 5);
    2. one Kruskal-Wallis test over all algorithm x group cells pooled (``Kruskal_Wallis_Pure``);
       the pairwise tests run only when its ``p < alpha``;
    3. two-sided Mann-Whitney U for every pair of groups *within* each algorithm
       (statannotations ``test="Mann-Whitney"``), Bonferroni over all those pairs of all
       algorithms together (statannotations multiplies by the number of pairs it was given);
    4. a pair is significant when its adjusted ``p <= alpha`` (statannotations' rule).

    Empty cells are left out of the Kruskal-Wallis test; a pair that cannot be tested keeps
    a NaN p-value and still counts in the family.

    Args:
        scores: algorithm -> group -> per-case scores (NaN dropped).
        column: name of the metadata column (for the report).
        min_group_size: smallest group that is tested.
        correction: correction of the pooled pairwise family (see :func:`adjust_pvalues`).
        alpha: significance level.
        always_posthoc: run the pairwise tests even when Kruskal-Wallis is not significant.
        size_from: algorithm whose case counts decide the group sizes (default: the first).

    Returns:
        algorithm -> :class:`GroupComparison` with ``scope="pooled"``: ``statistic`` and
        ``p_value`` are the pooled test's (the same for every algorithm), ``pairwise`` holds
        the algorithm's own pairs with adjusted p-values over the whole family, and
        ``group_means``/``parity_difference`` are the algorithm's own.

    Raises:
        DataValidationError: unknown correction, no algorithm, or ``size_from`` not among them.
    """
    _statsmodels_method(correction)
    if not scores:
        raise DataValidationError("pooled group comparison needs at least one algorithm")
    clean = {str(algo): _finite_groups(groups) for algo, groups in scores.items()}
    reference = next(iter(clean)) if size_from is None else str(size_from)
    if reference not in clean:
        raise DataValidationError(f"size_from {size_from!r} is not one of the algorithms {list(clean)}")
    names = list(dict.fromkeys(g for groups in clean.values() for g in groups))
    sizes = {g: int(clean[reference].get(g, np.empty(0)).size) for g in names}
    kept_names = [g for g in names if sizes[g] >= min_group_size]
    excluded = tuple(g for g in names if g not in kept_names)
    kept = {algo: {g: groups.get(g, np.empty(0)) for g in kept_names} for algo, groups in clean.items()}
    cells = {f"{algo}-{g}": v for algo, groups in kept.items() for g, v in groups.items()}
    stat, p = float("nan"), float("nan")
    if len(kept_names) >= 2:
        stat, p = kruskal_wallis(cells)
    tables: dict[str, pd.DataFrame] = {algo: pd.DataFrame(columns=_PAIRWISE_COLUMNS) for algo in kept}
    family_size = 0
    if len(kept_names) >= 2 and (always_posthoc or p < alpha):
        raw = {algo: _mann_whitney_rows(groups) for algo, groups in kept.items()}
        stacked = pd.concat(list(raw.values()), keys=list(raw), names=["algorithm", None])
        family_size = len(stacked)
        adjusted = adjust_pvalues(stacked["p_value"].to_numpy(dtype=float), correction, count_untested=True)
        stacked = stacked.assign(p_adjusted=adjusted, significant=adjusted <= alpha)
        tables = {algo: stacked.xs(algo, level="algorithm").reset_index(drop=True) for algo in raw}
    return {
        algo: GroupComparison(
            column=column,
            statistic=stat,
            p_value=p,
            group_sizes=dict(sizes),
            excluded=excluded,
            pairwise=tables[algo],
            group_means={g: float(v.mean()) for g, v in groups.items() if v.size},
            parity_difference=demographic_parity_difference(groups),
            correction=correction,
            min_group_size=min_group_size,
            scope="pooled",
            family_size=family_size,
        )
        for algo, groups in kept.items()
    }


def demographic_parity_difference(groups: Mapping[str, Sequence[float] | np.ndarray]) -> float:
    """Largest gap between group means (Touchstone's DPD extended to segmentation).

    Args:
        groups: group name -> scores (NaN dropped; empty groups ignored).

    Returns:
        ``max(mean) - min(mean)`` over the groups; NaN with fewer than two groups.
    """
    means = [np.nanmean(np.asarray(v, dtype=float)) for v in groups.values() if np.isfinite(np.asarray(v, dtype=float)).any()]
    if len(means) < 2:
        return float("nan")
    return float(max(means) - min(means))


def worst_case_mean(values: Sequence[float] | np.ndarray, quantile: float = 0.1) -> float:
    """Mean of the values at or below their ``quantile`` (Touchstone worst-case DSC).

    "At or below" rather than "strictly below": the quantile (numpy's linear
    interpolation) is never smaller than the minimum, so at least the worst case is
    always averaged, also when many cases share the lowest score.

    Args:
        values: scores (NaN dropped).
        quantile: the quantile in [0, 1]; Touchstone uses 0.1.

    Returns:
        The worst-case mean; NaN when no finite value exists.

    Raises:
        DataValidationError: quantile outside [0, 1].
    """
    if not 0.0 <= quantile <= 1.0:
        raise DataValidationError(f"worst-case quantile must be in [0, 1], got {quantile}")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    q = np.quantile(v, quantile)
    return float(v[v <= q].mean())
