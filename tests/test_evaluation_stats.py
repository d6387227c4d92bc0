"""Statistical functions of medsegzoo.evaluation.stats against scipy/statsmodels and by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation import stats

# fixed inputs: three algorithms on twelve cases (seeded; continuous values, so no ties
# and scipy takes its exact path; the tie path is covered by test_wilcoxon_with_ties)
_rng = np.random.default_rng(2024)
_base = _rng.uniform(0.75, 0.95, 12)
SCORES = pd.DataFrame(
    {
        "A": _base + _rng.normal(0.02, 0.01, 12),
        "B": _base + _rng.normal(0.0, 0.01, 12),
        "C": _base + _rng.normal(0.015, 0.02, 12),
    },
    index=[f"case{i}" for i in range(12)],
)
RAW_P = np.array([0.01, 0.04, 0.03, 0.20, 0.002, np.nan, 0.5])


@pytest.mark.parametrize("correction,method", [("holm", "holm"), ("bonferroni", "bonferroni"), ("fdr_bh", "fdr_bh"), ("bh", "fdr_bh")])
def test_adjust_pvalues_equals_statsmodels(correction, method):
    adjusted = stats.adjust_pvalues(RAW_P, correction)
    finite = np.isfinite(RAW_P)
    expected = multipletests(RAW_P[finite], method=method)[1]
    np.testing.assert_allclose(adjusted[finite], expected, rtol=0, atol=0)
    assert np.isnan(adjusted[~finite]).all()  # untestable pair stays NaN, not in the family


def test_adjust_pvalues_holm_by_hand():
    # Holm: sorted p * (m - i), cumulative max, clipped at 1
    p = [0.01, 0.04, 0.03]
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06])
    with pytest.raises(DataValidationError, match="unknown multiple-comparison"):
        stats.adjust_pvalues(p, "tukey")


def test_wilcoxon_greater_equals_scipy():
    stat, p = stats.wilcoxon_greater(SCORES["A"], SCORES["B"])
    ref = sps.wilcoxon(SCORES["A"], SCORES["B"], alternative="greater")
    assert stat == ref.statistic and p == ref.pvalue
    # the opposite direction is the complementary one-sided test
    _, p_rev = stats.wilcoxon_greater(SCORES["B"], SCORES["A"])
    assert p_rev == sps.wilcoxon(SCORES["B"], SCORES["A"], alternative="greater").pvalue
    assert p < 0.05 < p_rev


def test_wilcoxon_with_ties_equals_scipy():
    # tied |differences| and a zero difference: scipy switches method; the numbers stay scipy's
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([0.8, 0.7, 0.7, 0.65, 0.4, 0.3])
    assert stats.wilcoxon_greater(x, y) == tuple(sps.wilcoxon(x, y, alternative="greater"))


def test_wilcoxon_degenerate_and_bad_input():
    assert stats.wilcoxon_greater([0.5, 0.6], [0.5, 0.6]) == (0.0, 1.0)
    with pytest.raises(DataValidationError, match="NaN"):
        stats.wilcoxon_greater([0.5, np.nan], [0.5, 0.6])
    with pytest.raises(DataValidationError, match="one length"):
        stats.wilcoxon_greater([0.5, 0.6, 0.7], [0.5, 0.6])


def test_pairwise_wilcoxon_holm_over_all_ordered_pairs():
    res = stats.pairwise_wilcoxon(SCORES, alpha=0.05, correction="holm")
    assert len(res) == 6  # k (k - 1) ordered pairs
    raw = [sps.wilcoxon(SCORES[a], SCORES[b], alternative="greater").pvalue for a, b in itertools.permutations("ABC", 2)]
    np.testing.assert_array_equal(res["p_value"].to_numpy(), raw)
    np.testing.assert_allclose(res["p_adjusted"].to_numpy(), multipletests(raw, method="holm")[1])
    assert (res["significant"] == (res["p_adjusted"] < 0.05)).all()
    mat = stats.significance_matrix(res, order=["A", "B", "C"])
    for row in res.itertuples():
        assert mat.loc[row.worse, row.better] == row.significant
    assert mat.loc["B", "A"]  # A is 0.02 above B on average, noise 0.01
    assert not np.diag(mat.to_numpy()).any()


def test_pairwise_wilcoxon_lower_is_better_flips_direction():
    up = stats.pairwise_wilcoxon(SCORES)
    down = stats.pairwise_wilcoxon(-SCORES, higher_is_better=False)
    np.testing.assert_allclose(up["p_value"], down["p_value"])


def test_pairwise_wilcoxon_drops_incomplete_cases():
    s = SCORES.copy()
    s.loc["case0", "C"] = np.nan
    res = stats.pairwise_wilcoxon(s)
    assert (res["n_cases"] == 11).all()
    ref = sps.wilcoxon(SCORES["A"].iloc[1:], SCORES["B"].iloc[1:], alternative="greater").pvalue
    assert res.loc[(res.better == "A") & (res.worse == "B"), "p_value"].item() == ref
    with pytest.raises(DataValidationError, match="two algorithms"):
        stats.pairwise_wilcoxon(SCORES[["A"]])


def test_kruskal_and_mann_whitney_equal_scipy():
    groups = {"young": [0.91, 0.85, 0.88, 0.93, 0.90], "middle": [0.84, 0.80, 0.86, 0.83], "old": [0.78, 0.81, 0.75, 0.80, 0.79, np.nan]}
    clean = {k: np.asarray(v)[np.isfinite(v)] for k, v in groups.items()}
    h, p = stats.kruskal_wallis(groups)
    ref = sps.kruskal(*clean.values())
    assert h == ref.statistic and p == ref.pvalue
    pw = stats.pairwise_mann_whitney(groups, correction="bonferroni")
    raw = [sps.mannwhitneyu(clean[a], clean[b], alternative="two-sided").pvalue for a, b in itertools.combinations(clean, 2)]
    np.testing.assert_array_equal(pw["p_value"].to_numpy(), raw)
    np.testing.assert_allclose(pw["p_adjusted"].to_numpy(), np.minimum(1.0, np.asarray(raw) * 3))
    pw_bh = stats.pairwise_mann_whitney(groups, correction="fdr_bh")
    np.testing.assert_allclose(pw_bh["p_adjusted"].to_numpy(), multipletests(raw, method="fdr_bh")[1])
    assert stats.kruskal_wallis({"a": [1, 1], "b": [1, 1]}) == (0.0, 1.0)


def test_compare_groups_leaves_out_small_groups():
    rng = np.random.default_rng(3)
    groups = {"F": rng.normal(0.9, 0.02, 15), "M": rng.normal(0.8, 0.02, 12), "X": [0.5, 0.6]}
    g = stats.compare_groups(groups, column="sex", min_group_size=10)
    assert g.excluded == ("X",) and g.group_sizes == {"F": 15, "M": 12, "X": 2}
    h, p = sps.kruskal(groups["F"], groups["M"])
    assert g.statistic == pytest.approx(h) and g.p_value == pytest.approx(p)
    assert len(g.pairwise) == 1 and bool(g.pairwise["significant"].item())
    assert g.parity_difference == pytest.approx(abs(np.mean(groups["F"]) - np.mean(groups["M"])))
    only_one = stats.compare_groups(groups, min_group_size=13)
    assert np.isnan(only_one.p_value) and only_one.excluded == ("M", "X") and only_one.pairwise.empty


def test_demographic_parity_difference_by_hand():
    assert stats.demographic_parity_difference({"a": [0.8, 0.9], "b": [0.6, 0.7], "c": [0.75]}) == pytest.approx(0.85 - 0.65)
    assert np.isnan(stats.demographic_parity_difference({"a": [0.8]}))


def test_worst_case_mean_by_hand():
    values = [0.9, 0.2, 0.8, 0.85, 0.95, 0.7, 0.88, 0.92, 0.3, 0.91]
    # 10 % quantile (linear) = 0.2 + 0.9 * (0.3 - 0.2) = 0.29: only 0.2 is at or below
    assert stats.worst_case_mean(values, 0.1) == pytest.approx(0.2)
    # 20 % quantile = 0.3 + 0.8 * (0.7 - 0.3) = 0.62: 0.2 and 0.3
    assert stats.worst_case_mean(values, 0.2) == pytest.approx(0.25)
    assert stats.worst_case_mean([0.5, 0.5, 0.5], 0.1) == 0.5
    assert stats.worst_case_mean([0.4, np.nan, 0.6, 0.8], 0.0) == pytest.approx(0.4)


def test_bootstrap_ranking_reproducible_and_seed_dependent():
    a = stats.bootstrap_ranking(SCORES, n_resamples=1000, seed=7)
    b = stats.bootstrap_ranking(SCORES, n_resamples=1000, seed=7)
    c = stats.bootstrap_ranking(SCORES, n_resamples=1000, seed=8)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    assert not np.array_equal(a.ranks, c.ranks)
    assert a.ranks.shape == (1000, 3)
    # each resample's ranks are a permutation-with-ties of 1..3 computed from the drawn means
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 12, size=(1000, 12))
    means = SCORES.to_numpy()[idx].mean(axis=1)
    np.testing.assert_array_equal(a.ranks, sps.rankdata(-means, method="min", axis=1))


def test_bootstrap_dominant_algorithm_always_rank_one():
    # "best" beats both others on every case: rank 1 in every resample, interval [1, 1]
    s = SCORES.assign(best=SCORES.max(axis=1) + 0.01)
    res = stats.bootstrap_ranking(s, n_resamples=1000, seed=0)
    col = res.algorithms.index("best")
    assert (res.ranks[:, col] == 1).all()
    summary = res.summary().set_index("algorithm")
    assert summary.loc["best", ["median_rank", "rank_ci_low", "rank_ci_high", "p_rank_1"]].tolist() == [1, 1, 1, 1]
    assert summary.index[0] == "best"
    np.testing.assert_allclose(res.frequencies().sum(axis=1), 1.0)


def test_bootstrap_ties_share_best_rank_and_lower_is_better():
    s = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "z": [0.0, 0.0, 0.0]})
    res = stats.bootstrap_ranking(s, n_resamples=50, seed=1)
    assert (res.ranks[:, :2] == 1).all() and (res.ranks[:, 2] == 3).all()
    low = stats.bootstrap_ranking(s, n_resamples=50, seed=1, higher_is_better=False)
    assert (low.ranks[:, 2] == 1).all()
