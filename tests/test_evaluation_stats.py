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


def test_adjust_pvalues_counting_untested_members_like_multipletests():
    # Touchstone hands NaN p-values to multipletests: Holm sorts them last, so they only
    # enlarge the family: 0.01 * 3 and max(0.02 * 2, 0.03)
    p = [0.01, np.nan, 0.02]
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm", count_untested=True), [0.03, np.nan, 0.04])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm", count_untested=True), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bonferroni", count_untested=True), [0.03, np.nan, 0.06])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm"), [0.02, np.nan, 0.02])  # family of two


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


def test_wilcoxon_all_zero_differences_rule():
    # every paired difference zero: NaN by default (Touchstone), 1 with the option
    stat, p = stats.wilcoxon_greater([0.5, 0.6], [0.5, 0.6])
    assert stat == 0.0 and np.isnan(p)
    assert stats.wilcoxon_greater([0.5, 0.6], [0.5, 0.6], zero_differences="one") == (0.0, 1.0)
    # one non-zero difference is enough for scipy's test (the zeros are dropped)
    assert np.isfinite(stats.wilcoxon_greater([0.5, 0.6, 0.7], [0.5, 0.6, 0.6])[1])
    with pytest.raises(DataValidationError, match="zero_differences"):
        stats.wilcoxon_greater([0.5], [0.5], zero_differences="zero")


def test_wilcoxon_degenerate_and_bad_input():
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


def _pair(res: pd.DataFrame, better: str, worse: str) -> pd.Series:
    return res.loc[(res.better == better) & (res.worse == worse)].iloc[0]


def test_pairwise_wilcoxon_uses_the_cases_both_algorithms_have():
    s = SCORES.copy()
    s.loc["case0", "C"] = np.nan
    s.loc["case1", "B"] = np.nan
    res = stats.pairwise_wilcoxon(s)
    # A-B: every case but case1; A-C: every case but case0; B-C: neither
    assert _pair(res, "A", "B").n_cases == 11 and _pair(res, "C", "A").n_cases == 11 and _pair(res, "B", "C").n_cases == 10
    keep_ab = SCORES.index != "case1"
    ref = sps.wilcoxon(SCORES["A"][keep_ab], SCORES["B"][keep_ab], alternative="greater").pvalue
    assert _pair(res, "A", "B").p_value == ref
    keep_bc = ~SCORES.index.isin(["case0", "case1"])
    assert _pair(res, "C", "B").p_value == sps.wilcoxon(SCORES["C"][keep_bc], SCORES["B"][keep_bc], alternative="greater").pvalue
    # the old rule: the ten cases every algorithm has, for every pair
    complete = stats.pairwise_wilcoxon(s, alignment="complete")
    assert (complete["n_cases"] == 10).all()
    assert _pair(complete, "A", "B").p_value == sps.wilcoxon(SCORES["A"][keep_bc], SCORES["B"][keep_bc], alternative="greater").pvalue
    with pytest.raises(DataValidationError, match="two algorithms"):
        stats.pairwise_wilcoxon(SCORES[["A"]])
    with pytest.raises(DataValidationError, match="alignment"):
        stats.pairwise_wilcoxon(SCORES, alignment="union")
    disjoint = pd.DataFrame({"A": [0.9, np.nan], "B": [np.nan, 0.8]})
    with pytest.raises(DataValidationError, match="same case"):
        stats.pairwise_wilcoxon(disjoint)


def test_pairwise_wilcoxon_identical_pair_is_nan_and_counts_in_holm_family():
    s = SCORES.assign(D=SCORES["A"])  # D equals A on every case
    res = stats.pairwise_wilcoxon(s)
    assert len(res) == 12
    assert np.isnan(_pair(res, "A", "D").p_value) and np.isnan(_pair(res, "D", "A").p_adjusted)
    assert not _pair(res, "A", "D").significant
    # the family has 12 members: the two NaN ones act as p = 1 (as multipletests does with NaN)
    raw = res["p_value"].to_numpy()
    np.testing.assert_allclose(res["p_adjusted"], multipletests(raw, method="holm")[1])
    np.testing.assert_allclose(res["p_adjusted"][np.isfinite(raw)], multipletests(np.nan_to_num(raw, nan=1.0), method="holm")[1][np.isfinite(raw)])
    old = stats.pairwise_wilcoxon(s, zero_differences="one")
    assert _pair(old, "A", "D").p_value == 1.0 and _pair(old, "A", "D").p_adjusted == 1.0


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


def _pooled_table() -> dict[str, dict[str, np.ndarray]]:
    # two algorithms x three groups, values chosen so every test has a clear answer
    return {
        "A": {"F": np.array([0.90, 0.92, 0.91, 0.93, 0.95, 0.94]), "M": np.array([0.80, 0.82, 0.81, 0.79, 0.83, np.nan]), "X": np.array([0.5, 0.6])},
        "B": {"F": np.array([0.70, 0.72, 0.69, 0.73, 0.71, 0.74]), "M": np.array([0.71, 0.70, 0.72, 0.73, 0.69, 0.75, 0.68]), "X": np.array([0.4, 0.4, 0.4, 0.4, 0.4, 0.4])},
    }


def test_compare_groups_pooled_one_kruskal_over_all_cells():
    table = _pooled_table()
    res = stats.compare_groups_pooled(table, column="sex", min_group_size=5)
    # X has 2 cases for the first algorithm (A): left out for every algorithm, as PlotGroup's --th
    assert res["A"].excluded == ("X",) and res["B"].excluded == ("X",)
    assert res["A"].group_sizes == {"F": 6, "M": 5, "X": 2}
    cells = [table[a][g][np.isfinite(table[a][g])] for a in ("A", "B") for g in ("F", "M")]
    ref = sps.kruskal(*cells)
    for algo in ("A", "B"):
        assert res[algo].scope == "pooled"
        assert res[algo].statistic == pytest.approx(ref.statistic) and res[algo].p_value == pytest.approx(ref.pvalue)
    # not the per-algorithm test
    assert res["B"].p_value != pytest.approx(sps.kruskal(*cells[2:]).pvalue)


def test_compare_groups_pooled_bonferroni_over_all_same_algorithm_pairs():
    table = {a: {g: v for g, v in groups.items() if g != "X"} for a, groups in _pooled_table().items()}
    table["A"]["O"] = np.array([0.60, 0.62, 0.61, 0.63, 0.64])
    table["B"]["O"] = np.array([0.70, 0.71, 0.72, 0.69, 0.73])
    res = stats.compare_groups_pooled(table, min_group_size=5)
    # 2 algorithms x C(3, 2) same-algorithm pairs = 6 members; no cross-algorithm pair
    assert res["A"].family_size == 6 and res["B"].family_size == 6
    for algo in ("A", "B"):
        pw = res[algo].pairwise
        assert list(zip(pw.group_a, pw.group_b)) == [("F", "M"), ("F", "O"), ("M", "O")]
        clean = {g: v[np.isfinite(v)] for g, v in table[algo].items()}
        raw = [sps.mannwhitneyu(clean[a], clean[b], alternative="two-sided").pvalue for a, b in zip(pw.group_a, pw.group_b)]
        np.testing.assert_allclose(pw["p_value"], raw)
        np.testing.assert_allclose(pw["p_adjusted"], np.minimum(1.0, np.asarray(raw) * 6))
        assert (pw["significant"] == (pw["p_adjusted"] <= 0.05)).all()
    # A's groups differ: every A pair significant; B's groups overlap: none
    assert res["A"].pairwise["significant"].all() and not res["B"].pairwise["significant"].any()
    # the per-algorithm variant corrects within A only (3 members)
    own = stats.compare_groups(table["A"], min_group_size=5)
    np.testing.assert_allclose(own.pairwise["p_adjusted"], np.minimum(1.0, res["A"].pairwise["p_value"] * 3))
    assert own.scope == "algorithm" and own.family_size == 3


def test_compare_groups_pooled_significance_at_alpha_inclusive():
    # U = 0 for 5 vs 5 values: exact two-sided p = 2 / C(10, 5) = 1/126; one pair, Bonferroni x1
    table = {"A": {"lo": np.arange(5.0), "hi": np.arange(5.0) + 10}}
    # (Kruskal-Wallis gives p = 0.009 > 1/126 here: always_posthoc runs the pair anyway)
    res = stats.compare_groups_pooled(table, min_group_size=5, alpha=1 / 126, always_posthoc=True)
    assert res["A"].pairwise["p_adjusted"].item() == pytest.approx(1 / 126)
    assert res["A"].pairwise["p_value"].item() == sps.mannwhitneyu(table["A"]["lo"], table["A"]["hi"]).pvalue
    assert bool(res["A"].pairwise["significant"].item())  # p == alpha counts, as statannotations' p <= alpha
    gated = stats.compare_groups_pooled({"A": {"a": [1.0, 2, 3, 4, 5], "b": [1.5, 2.5, 3.5, 4.5, 5.5]}})
    assert gated["A"].p_value > 0.05 and gated["A"].pairwise.empty and gated["A"].family_size == 0
    with pytest.raises(DataValidationError, match="size_from"):
        stats.compare_groups_pooled(table, size_from="Z")


def test_min_group_size_default_is_touchstones_five():
    assert stats.DEFAULT_MIN_GROUP_SIZE == 5
    g = stats.compare_groups({"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.6, 0.7, 0.8, 0.9]})
    assert g.excluded == ("b",) and g.min_group_size == 5


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
