"""Protocols on hand-made per-case tables: Touchstone, A-Eval, multi-run, detection, speed."""

from __future__ import annotations

import itertools
import mmap

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.protocols import aeval, detection, multirun, speed, touchstone


def _row(algorithm, case, cls, dsc, **extra):
    return {"algorithm": algorithm, "case": case, "class": cls, "dsc": dsc, **extra}


# Algorithm A by hand: liver 0.9 / 0.7 / 0.8, spleen 0.8 / NaN (absent) / 0.4
#   C: liver 0.8, spleen 0.6 -> 0.7;  I: cases 0.85, 0.7, 0.6 -> 0.71667
HAND = pd.DataFrame(
    [
        _row("A", "c1", "liver", 0.9), _row("A", "c1", "spleen", 0.8),
        _row("A", "c2", "liver", 0.7), _row("A", "c2", "spleen", np.nan),
        _row("A", "c3", "liver", 0.8), _row("A", "c3", "spleen", 0.4),
    ]
)


def test_aggregate_c_and_i_differ_with_nan_by_hand():
    assert touchstone.aggregate_c(HAND)["A"] == pytest.approx(0.7)
    assert touchstone.aggregate_i(HAND)["A"] == pytest.approx((0.85 + 0.7 + 0.6) / 3)
    per_case = touchstone.per_case_scores(HAND)
    np.testing.assert_allclose(per_case["A"].to_numpy(), [0.85, 0.7, 0.6])
    summary = touchstone.class_summary(HAND).set_index("class")
    assert summary.loc["spleen", "n"] == 2 and summary.loc["spleen", "n_undefined"] == 1
    assert summary.loc["liver", "sd"] == pytest.approx(np.std([0.9, 0.7, 0.8], ddof=1))


def test_worst_case_by_hand():
    # liver: 10 % quantile 0.72 -> {0.7}; spleen: 0.44 -> {0.4}; mean over classes 0.55
    assert touchstone.worst_case(HAND, "dsc", 0.1)["A"] == pytest.approx(0.55)
    # distances: the worst cases are the largest values
    hd = HAND.rename(columns={"dsc": "hd95"})
    assert touchstone.worst_case(hd, "hd95", 0.1)["A"] == pytest.approx((0.9 + 0.8) / 2)


def _three_algorithms(n_cases=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        base = rng.uniform(0.7, 0.9)
        sex = "F" if case % 3 else "M"
        for algo, shift in (("good", 0.05), ("mid", 0.0), ("bad", -0.05)):
            for cls in ("liver", "spleen"):
                rows.append(_row(algo, f"c{case:02d}", cls, base + shift + rng.normal(0, 0.01), nsd=base, sex=sex, site="X" if case < 3 else "Y"))
    return pd.DataFrame(rows)


def test_touchstone_protocol_tests_match_scipy_and_holm():
    table = _three_algorithms()
    res = touchstone.touchstone_protocol(table, metrics=("dsc",), metadata_columns=("sex", "site"), n_bootstrap=200, seed=3, min_group_size=5)
    a = res.analyses["dsc"]
    per_case = table.groupby(["case", "algorithm"])["dsc"].mean().unstack()
    raw = [sps.wilcoxon(per_case[x], per_case[y], alternative="greater").pvalue for x, y in itertools.permutations(res.algorithms, 2)]
    np.testing.assert_allclose(a.pairwise["p_value"], raw)
    np.testing.assert_allclose(a.pairwise["p_adjusted"], multipletests(raw, method="holm")[1])
    assert a.significance.loc["mid", "good"] and a.significance.loc["bad", "mid"] and not a.significance.loc["good", "bad"]
    assert a.bootstrap.summary()["algorithm"].tolist() == ["good", "mid", "bad"]
    # site "X" has 3 cases < 5: left out, so only one group remains and nothing is tested
    g = a.groups[("good", "site")]
    assert g.excluded == ("X",) and np.isnan(g.p_value)
    # default: one Kruskal-Wallis over the 3 algorithms x 2 sexes = 6 cells (PlotGroup.py --stats)
    cells = {(algo, sex): per_case.loc[per_case.index.isin(table.loc[table.sex == sex, "case"]), algo] for algo in res.algorithms for sex in ("F", "M")}
    pooled = sps.kruskal(*cells.values())
    for algo in res.algorithms:
        assert a.groups[(algo, "sex")].p_value == pytest.approx(pooled.pvalue) and a.groups[(algo, "sex")].scope == "pooled"
    sex = a.groups[("good", "sex")]
    f, m = cells[("good", "F")], cells[("good", "M")]
    assert sex.parity_difference == pytest.approx(abs(f.mean() - m.mean()))
    # the pooled test is significant (the algorithms differ): 3 same-algorithm pairs in one family
    assert sex.family_size == 3
    np.testing.assert_allclose(sex.pairwise["p_adjusted"], min(1.0, sps.mannwhitneyu(f, m).pvalue * 3))
    text = res.to_markdown(table=table)
    assert "holm correction over all 6 tests" in text and "X (n=3)" in text
    assert "over all algorithm x group cells" in text and "Cases per pair: 30" in text
    # the per-algorithm option: the good algorithm's own test
    own = touchstone.touchstone_protocol(table, metrics=("dsc",), metadata_columns=("sex",), n_bootstrap=10, group_scope="algorithm")
    own_sex = own.analyses["dsc"].groups[("good", "sex")]
    assert own_sex.p_value == pytest.approx(sps.kruskal(f, m).pvalue) and own_sex.scope == "algorithm"
    assert "per algorithm, Kruskal-Wallis" in own.to_markdown()


def test_touchstone_pairs_use_their_shared_cases():
    table = _three_algorithms(n_cases=20)
    # "bad" has no value for the first four cases: only its own pairs lose them
    table.loc[(table.algorithm == "bad") & table.case.isin(["c00", "c01", "c02", "c03"]), "dsc"] = np.nan
    res = touchstone.touchstone_protocol(table, metrics=("dsc",), n_bootstrap=10)
    pw = res.analyses["dsc"].pairwise.set_index(["better", "worse"])
    assert pw.loc[("good", "mid"), "n_cases"] == 20 and pw.loc[("good", "bad"), "n_cases"] == 16
    assert "Cases per pair: 16-20" in res.to_markdown()
    assert res.analyses["dsc"].bootstrap.n_cases == 16  # the ranking still needs every algorithm
    old = touchstone.touchstone_protocol(table, metrics=("dsc",), n_bootstrap=10, pair_alignment="complete")
    assert (old.analyses["dsc"].pairwise["n_cases"] == 16).all()
    with pytest.raises(DataValidationError, match="group_scope"):
        touchstone.touchstone_protocol(table, group_scope="each")


def test_touchstone_identical_algorithms_give_nan_not_one():
    table = _three_algorithms(n_cases=8)
    twin = table[table.algorithm == "good"].assign(algorithm="twin")
    res = touchstone.touchstone_protocol(pd.concat([table, twin]), metrics=("dsc",), n_bootstrap=10)
    pw = res.analyses["dsc"].pairwise.set_index(["better", "worse"])
    assert np.isnan(pw.loc[("good", "twin"), "p_value"]) and not pw.loc[("twin", "good"), "significant"]
    assert "Tests without a p-value" in res.to_markdown()
    one = touchstone.touchstone_protocol(pd.concat([table, twin]), metrics=("dsc",), n_bootstrap=10, zero_differences="one")
    assert one.analyses["dsc"].pairwise.set_index(["better", "worse"]).loc[("good", "twin"), "p_value"] == 1.0


def test_touchstone_rejects_duplicates_and_missing_metrics():
    table = _three_algorithms(n_cases=4)
    with pytest.raises(DataValidationError, match="duplicate"):
        touchstone.touchstone_protocol(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(DataValidationError, match="none of the metric"):
        touchstone.touchstone_protocol(table, metrics=("hd95",))


def test_bin_metadata_age_decades_and_strings():
    age = pd.Series([25, 35, 49, 50, 85, np.nan], name="age")
    assert touchstone.bin_metadata(age).tolist()[:5] == ["<30", "30-39", "40-49", "50-59", "80+"]
    assert pd.isna(touchstone.bin_metadata(age).iloc[5])
    assert sorted(["80+", "30-39", "<30"], key=touchstone.group_sort_key) == ["<30", "30-39", "80+"]


# A-Eval Table 3 (STU-Net-L, DSC %): rows train, columns test
TABLE3 = pd.DataFrame(
    [[89.20, 76.53, 85.94, 74.06, 86.11], [89.14, 93.02, 89.01, 86.39, 86.84], [86.86, 87.53, 90.92, 80.58, 84.69], [90.32, 89.65, 86.30, 95.12, 87.73]],
    index=["FLARE22", "AMOS CT", "WORD", "TotalSegmentator"],
    columns=["FLARE22", "AMOS CT", "WORD", "TotalSegmentator", "BTCV"],
)


def _cross_table(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for train, row in cells.iterrows():
        for test, v in row.items():
            # two cases and two classes whose mean is the cell value
            for case, cls, d in (("a", "liver", 0.02), ("a", "spleen", -0.02), ("b", "liver", 0.01), ("b", "spleen", -0.01)):
                rows.append({"train_set": train, "test_set": test, "case": f"{test}-{case}", "class": cls, "dsc": v / 100 + d})
    return pd.DataFrame(rows)


def test_aeval_matrix_reproduces_table3_mean_sd():
    mat = aeval.aeval_matrix(_cross_table(TABLE3), "dsc")
    np.testing.assert_allclose(mat.values.to_numpy(), TABLE3.to_numpy(), atol=1e-9)
    rows, cols = mat.row_stats(), mat.column_stats()
    # published: FLARE22 row 82.37 ± 5.94, TotalSegmentator 89.82 ± 3.00, column BTCV 86.34 ± 1.11
    assert (round(rows.loc["FLARE22", "mean"], 2), round(rows.loc["FLARE22", "sd"], 2)) == (82.37, 5.94)
    assert (round(rows.loc["TotalSegmentator", "mean"], 2), round(rows.loc["TotalSegmentator", "sd"], 2)) == (89.82, 3.00)
    assert (round(cols.loc["BTCV", "mean"], 2), round(cols.loc["BTCV", "sd"], 2)) == (86.34, 1.11)
    overall = mat.overall()
    assert (round(overall[0], 2), round(overall[1], 2)) == (86.80, 4.88)


def test_aeval_ct_only_means_and_table_layout():
    cells = TABLE3.assign(**{"AMOS MR": [60.0, 70.0, 50.0, 40.0]})
    res = aeval.aeval_protocol(_cross_table(cells), metrics=("dsc",), modalities={"AMOS MR": "MR"})
    mat = res.matrices["dsc"]
    rows = mat.row_stats()
    assert rows.loc["FLARE22", "ct_mean"] == pytest.approx(TABLE3.loc["FLARE22"].mean())
    assert rows.loc["FLARE22", "mean"] == pytest.approx(cells.loc["FLARE22"].mean())
    assert rows.loc["FLARE22", "ct_sd"] == pytest.approx(np.std(TABLE3.loc["FLARE22"]))
    table = res.table()
    assert table.loc["FLARE22", "Mean ± SD CT DSC"] == "82.37 ± 5.94"
    assert table.loc["Mean ± SD", "BTCV DSC"] == "86.34 ± 1.11"
    assert list(table.index) == [*TABLE3.index, "Mean ± SD"]


def test_aeval_absent_class_excluded_not_zero():
    rows = []
    for test, labels in (("T1", {"liver": 0.9, "spleen": 0.7}), ("T2", {"liver": 0.8, "spleen": np.nan})):
        for cls, v in labels.items():
            rows.append({"train_set": "S", "test_set": test, "case": f"{test}c", "class": cls, "dsc": v})
    table = pd.DataFrame(rows)
    mat = aeval.aeval_matrix(table, "dsc", classes=["liver", "spleen"], scale=1.0)
    assert mat.values.loc["S", "T1"] == pytest.approx(0.8)
    assert mat.values.loc["S", "T2"] == pytest.approx(0.8)  # spleen absent: 0.8, not (0.8 + 0) / 2
    # default classes = shared ones (spleen missing in T2)
    assert aeval.aeval_matrix(table, "dsc").classes == ("liver",)
    # labeled_classes marks a class absent even when a value was written (e.g. A-Eval's both-empty = 1)
    table.loc[table["class"].eq("spleen") & table.test_set.eq("T2"), "dsc"] = 1.0
    masked = aeval.aeval_matrix(table, "dsc", ["liver", "spleen"], labeled_classes={"T2": ["liver"]}, scale=1.0)
    assert masked.values.loc["S", "T2"] == pytest.approx(0.8)
    per_class = aeval.per_class_matrices(table, "dsc", labeled_classes={"T2": ["liver"]}, scale=1.0)
    assert np.isnan(per_class["spleen"].loc["S", "T2"])


def test_aeval_per_class_table_and_dict_input():
    t = _cross_table(TABLE3)
    by_pair = {(tr, te): g.drop(columns=["train_set", "test_set"]) for (tr, te), g in t.groupby(["train_set", "test_set"], sort=False)}
    nested: dict[str, dict[str, pd.DataFrame]] = {}
    for (tr, te), g in by_pair.items():
        nested.setdefault(tr, {})[te] = g
    for data in (by_pair, nested):
        mat = aeval.aeval_matrix(data, "dsc")
        np.testing.assert_allclose(mat.values.loc[TABLE3.index, TABLE3.columns].to_numpy(), TABLE3.to_numpy())
    pc = aeval.per_class_table(t, "BTCV", "dsc")
    assert list(pc.columns) == ["liver", "spleen", "Mean"]
    np.testing.assert_allclose(pc["Mean"].to_numpy(), TABLE3["BTCV"].to_numpy())
    np.testing.assert_allclose(pc["liver"].to_numpy(), TABLE3["BTCV"].to_numpy() + 1.5)
    with pytest.raises(DataValidationError, match="not in the table"):
        aeval.per_class_table(t, "LiTS")


RUNS = pd.DataFrame(
    [
        # seed, checkpoint, dsc, hd95: the maximum-DSC run (seed 3) has the worst HD95
        (1, "last", 0.80, 5.0), (2, "last", 0.84, 4.0), (3, "last", 0.86, 9.0), (4, "last", 0.82, 6.0), (5, "last", 0.78, 7.0),
        (1, "best", 0.83, 4.5), (2, "best", 0.85, 3.5), (3, "best", 0.87, 8.0), (4, "best", 0.84, 5.5), (5, "best", 0.81, 6.5),
    ],
    columns=["seed", "checkpoint", "dsc", "hd95"],
)


def test_multirun_median_and_maximum_by_hand():
    res = multirun.multirun_summary(RUNS, metrics=["dsc", "hd95"])
    tab = res.table()
    assert tab.loc["median", "dsc last"] == pytest.approx(0.82)
    assert tab.loc["maximum", "dsc last"] == pytest.approx(0.86)
    assert tab.loc["median", "hd95 last"] == pytest.approx(6.0)
    assert tab.loc["maximum", "hd95 last"] == pytest.approx(9.0)  # that run's HD95, not the min
    assert tab.loc["median", "dsc best"] == pytest.approx(0.84)
    assert tab.loc["maximum", "dsc best"] == pytest.approx(0.87)
    assert list(tab.columns) == ["dsc last", "dsc best", "hd95 last", "hd95 best"]
    md = res.to_markdown()
    assert "| median | 82.00 | 84.00 | 6.00 |" in md and "not reported" not in md


def test_multirun_without_validation_withholds_best():
    res = multirun.multirun_summary(RUNS, metrics=["dsc", "hd95"], has_validation=False)
    tab = res.table()
    assert tab[["dsc best", "hd95 best"]].isna().all().all()
    assert tab.loc["median", "dsc last"] == pytest.approx(0.82)
    md = res.to_markdown()
    assert md.count("not reported") == 4 and multirun.NO_VALIDATION_NOTE in md
    assert not res.long.loc[res.long.checkpoint == "best", "reported"].any()


def test_multirun_groups_and_errors():
    two = pd.concat([RUNS.assign(dataset="LA"), RUNS.assign(dataset="Pancreas", dsc=RUNS.dsc - 0.1)])
    tab = multirun.multirun_summary(two, metrics=["dsc"], group_by=["dataset"]).table()
    assert tab.loc[("Pancreas", "median"), "dsc last"] == pytest.approx(0.72)
    with pytest.raises(DataValidationError, match="checkpoint must be one of"):
        multirun.multirun_summary(RUNS.replace({"checkpoint": {"best": "ema"}}))
    with pytest.raises(DataValidationError, match="listed twice"):
        multirun.multirun_summary(pd.concat([RUNS, RUNS.iloc[:1]]))
    runs = multirun.runs_from_tables({(1, "last"): HAND.drop(columns="algorithm")}, metrics=["dsc"])
    assert runs.loc[0, "dsc"] == pytest.approx(0.7)  # class-first mean, NaN left out


def test_patient_detection_by_hand():
    cases = pd.DataFrame(
        {
            "case": ["p1", "p2", "p3", "p4", "p5", "p6", "p7"],
            "gt_positive": [True, True, True, False, False, False, False],
            "pred_volume": [120.0, 3.0, 0.0, 0.0, 2.0, 50.0, 10.0],
        }
    )
    res = detection.patient_detection(cases, threshold=10)  # strictly more than 10 voxels
    assert (res.tp, res.fn, res.tn, res.fp) == (1, 2, 3, 1)
    assert res.sensitivity == pytest.approx(1 / 3) and res.specificity == pytest.approx(3 / 4)
    assert res.per_case.set_index("case").loc["p7", "outcome"] == "TN"
    zero = detection.patient_detection(cases, threshold=0)
    assert (zero.tp, zero.fn, zero.tn, zero.fp) == (2, 1, 1, 3)
    assert "33.3 % (1/3)" in res.to_markdown()
    with pytest.raises(DataValidationError, match="more than once"):
        detection.patient_detection(pd.concat([cases, cases.iloc[:1]]))


def test_detection_from_table_needs_volumes_for_a_threshold():
    t = pd.DataFrame(
        {"case": ["a", "b", "c"], "class": "liver_tumor", "gt_present": [True, False, False], "pred_present": [True, True, False], "pred_voxels": [30, 4, 0]}
    )
    res = detection.detection_from_table(t, "liver_tumor", threshold=5)
    assert (res.tp, res.fp, res.tn) == (1, 0, 2)
    no_volume = t.drop(columns="pred_voxels")
    assert detection.detection_from_table(no_volume, "liver_tumor").fp == 1
    with pytest.raises(DataValidationError, match="needs predicted volumes"):
        detection.detection_from_table(no_volume, "liver_tumor", threshold=5)
    with pytest.raises(DataValidationError, match="no rows for class"):
        detection.detection_from_table(t, "kidney_tumor")


def test_pseudo_label_quality_by_hand():
    gt = np.array([1, 1, 1, 0, 0, 0, 0, 2])
    pseudo = np.array([1, 0, 1, 1, 0, 0, 0, 2])
    q = detection.pseudo_label_quality(pseudo, gt)
    # foreground = non-zero: TP 3, FN 1, FP 1, TN 3
    assert (q.tp, q.fn, q.fp, q.tn) == (3, 1, 1, 3)
    assert (q.ppv, q.npv, q.recall) == (0.75, 0.75, 0.75)
    reliable = np.array([1, 0, 1, 1, 1, 1, 0, 0], dtype=bool)  # drops the FN and one TN, and the class-2 TP
    r = detection.pseudo_label_quality([pseudo, pseudo], [gt, gt], [reliable, reliable])
    assert (r.tp, r.fn, r.fp, r.tn) == (4, 0, 2, 4)
    assert r.recall == 1.0 and r.ppv == pytest.approx(4 / 6) and r.coverage == pytest.approx(5 / 8)
    c2 = detection.pseudo_label_quality(pseudo, gt, label_value=2)
    assert (c2.tp, c2.fp, c2.fn) == (1, 0, 0)
    with pytest.raises(DataValidationError, match="shapes differ"):
        detection.pseudo_label_quality(pseudo, gt[:4])


def test_speed_units_and_table():
    vol = speed.volume_mm3((512, 512, 300), (0.8, 0.8, 1.0))
    assert vol == pytest.approx(512 * 512 * 300 * 0.64)
    assert speed.microseconds_per_mm3(2.0, 4e6) == pytest.approx(0.5)
    assert speed.format_speed(0.5) == "0.5 µs/mm³ (2 M mm³/s)"
    assert speed.format_bytes(1536) == "1.5 KiB" and speed.format_bytes(None) == "n/a"
    rec = pd.DataFrame({"algorithm": ["a", "a", "b"], "seconds": [1.0, 3.0, 10.0], "shape": [(100, 100, 100)] * 3, "spacing": [(1.0, 1.0, 1.0)] * 3, "peak_rss_bytes": [1024**3, 2 * 1024**3, 1024]})
    tab = speed.speed_table(rec)
    assert tab.loc["a", "mean µs/mm³"] == pytest.approx(2.0) and tab.loc["a", "peak RSS"] == "2.0 GiB"
    assert not tab.loc["b", "meets Touchstone (<1 µs/mm³)"]
    with pytest.raises(DataValidationError, match="different lengths"):
        speed.volume_mm3((1, 2), (1.0,))


def test_measure_resources_sees_an_allocation():
    with speed.measure_resources() as idle:
        pass
    size = 80 * 1024 * 1024
    with speed.measure_resources() as usage:
        # a fresh anonymous mapping: np.ones could reuse resident heap memory freed by earlier
        # tests (CI saw the peak unchanged at 1.95 GB), a new mapping's pages always add to RSS
        block = mmap.mmap(-1, size)
        np.frombuffer(block, dtype=np.uint8)[:] = 1  # touch every page
        block.close()
    assert usage.wall_s > 0
    assert usage.rss_method in {"VmHWM", "sampled", "ru_maxrss"}
    # the block's peak includes the 80 MiB that were unmapped before it ended
    assert usage.peak_rss_bytes - idle.peak_rss_bytes >= 60 * 1024 * 1024
    assert usage.peak_cuda_bytes is None  # no torch CUDA here
