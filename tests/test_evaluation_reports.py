"""Report folder: files written, CSV columns, Markdown content, valid non-empty PNGs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation import plots, stats
from medsegzoo.evaluation.protocols import aeval, detection, multirun, touchstone
from medsegzoo.evaluation.reports import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table(n_cases: int = 12, algorithms=("alpha", "beta")) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n_cases):
        for k, algo in enumerate(algorithms):
            for cls in ("liver", "spleen", "pancreas"):
                dsc = np.nan if (cls == "pancreas" and i == 0) else float(np.clip(0.85 - 0.05 * k + rng.normal(0, 0.03), 0, 1))
                rows.append(
                    {
                        "algorithm": algo, "case": f"case{i:02d}", "class": cls, "dsc": dsc, "nsd": dsc,
                        "hd95": 3.0 + k + rng.random(), "assd": 1.0 + rng.random(),
                        "gt_present": not np.isnan(dsc), "pred_present": True,
                        "sex": "F" if i % 2 else "M", "age": 30 + 4 * i,
                    }
                )
    return pd.DataFrame(rows)


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path


def test_single_algorithm_report(tmp_path):
    table = _table(algorithms=("only",)).drop(columns="algorithm")
    files = write_report(table, tmp_path / "rep", "Spleen bundle on phantoms", notes=["1 case skipped: missing prediction"])
    out = tmp_path / "rep"
    assert {"per_case.csv", "per_class.csv", "summary.md", "summary.json", "box_dsc.png", "box_hd95.png"} <= set(files)
    assert sorted(p.name for p in out.iterdir()) == sorted(files)  # no temporary files left behind
    per_case = pd.read_csv(out / "per_case.csv")
    assert list(per_case.columns) == list(table.columns) and len(per_case) == len(table)
    per_class = pd.read_csv(out / "per_class.csv")
    assert list(per_class.columns[:7]) == ["class", "dsc_mean", "dsc_sd", "dsc_median", "dsc_n", "dsc_n_undefined", "nsd_mean"]
    pancreas = per_class.set_index("class").loc["pancreas"]
    expected = table.loc[table["class"] == "pancreas", "dsc"]
    assert pancreas["dsc_mean"] == pytest.approx(expected.mean()) and pancreas["dsc_n_undefined"] == 1
    md = (out / "summary.md").read_text()
    assert md.startswith("# Spleen bundle on phantoms") and "- 1 case skipped: missing prediction" in md
    assert "![DSC per class](box_dsc.png)" in md and "1 of 36 (case, class) values of DSC are undefined" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["dsc"]["prediction"]["mean_c"] == pytest.approx(per_class["dsc_mean"].mean())
    for name in files:
        if name.endswith(".png"):
            _assert_png(out / name)


def test_comparison_report_with_every_protocol(tmp_path):
    table = _table()
    ts = touchstone.touchstone_protocol(table, metadata_columns=("sex", "age"), n_bootstrap=100, min_group_size=3)
    cross = table.rename(columns={"algorithm": "train_set"}).assign(test_set=lambda t: np.where(t["case"] < "case06", "BTCV", "AMOS"))
    ae = aeval.aeval_protocol(cross)
    runs = pd.DataFrame({"seed": [1, 2, 3] * 2, "checkpoint": ["last"] * 3 + ["best"] * 3, "dsc": [0.8, 0.82, 0.81, 0.83, 0.84, 0.85]})
    mr = multirun.multirun_summary(runs, has_validation=False)
    det = detection.patient_detection(pd.DataFrame({"case": ["a", "b"], "gt_positive": [True, False], "pred_volume": [5.0, 0.0]}))
    files = write_report(table, tmp_path, "Comparison", touchstone=ts, aeval=ae, multirun=mr, detection=[det])
    expected_png = {"box_dsc.png", "significance_dsc.png", "bootstrap_dsc.png", "significance_nsd.png", "groups_sex_dsc.png", "groups_age_dsc.png", "aeval_dsc.png", "aeval_nsd.png"}
    assert expected_png <= set(files)
    for name in expected_png:
        _assert_png(tmp_path / name)
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert list(per_class.columns[:2]) == ["algorithm", "class"] and len(per_class) == 6
    md = (tmp_path / "summary.md").read_text()
    for heading in ("## Touchstone statistics", "## A-Eval cross-dataset matrix", "## Multi-run results", "## Patient-level detection"):
        assert heading in md
    assert multirun.NO_VALIDATION_NOTE in md
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["touchstone"]["dsc"]["mean_c"]["alpha"] == pytest.approx(ts.analyses["dsc"].aggregate_c["alpha"])
    assert summary["detection"][0]["sensitivity"] == 1.0
    assert set(summary["aeval"]["dsc"]["matrix"]) == {"alpha", "beta"}


def test_report_rejects_table_without_metrics(tmp_path):
    with pytest.raises(DataValidationError, match="no metric column"):
        write_report(pd.DataFrame({"case": ["a"], "class": ["liver"], "score": [1.0]}), tmp_path, "x")
    with pytest.raises(DataValidationError, match="missing column"):
        write_report(pd.DataFrame({"case": ["a"], "dsc": [1.0]}), tmp_path, "x")
    assert not list(tmp_path.iterdir())  # nothing written before the error


def test_plots_write_valid_pngs(tmp_path):
    sig = pd.DataFrame([[False, False], [True, False]], index=["a", "b"], columns=["a", "b"])
    _assert_png(plots.significance_map_plot(sig, tmp_path / "sig.png", title="t"))
    ranking = stats.bootstrap_ranking(pd.DataFrame({"a": [0.9, 0.8, 0.85], "b": [0.7, 0.82, 0.6]}), n_resamples=50)
    _assert_png(plots.bootstrap_blob_plot(ranking, tmp_path / "blob.png"))
    mat = pd.DataFrame([[90.0, np.nan], [80.0, 85.0]], index=["A", "B"], columns=["X", "Y"])
    _assert_png(plots.matrix_heatmap(mat, tmp_path / "heat.png", title="heat"))


def test_touchstone_plots_stand_beside_their_tables_once(tmp_path):
    table = _table()
    ts = touchstone.touchstone_protocol(table, metadata_columns=("sex", "age"), n_bootstrap=50, min_group_size=3)
    write_report(table, tmp_path, "Comparison", touchstone=ts)
    md = (tmp_path / "summary.md").read_text()
    # each metadata box plot once, although every algorithm has its own group analysis
    assert md.count("](groups_sex_dsc.png)") == 1 and md.count("](groups_age_dsc.png)") == 1
    dsc = md[md.index("### DSC\n\nAggregates"):md.index("### NSD\n\nAggregates")]
    # significance map right after its table, blob plot right after the ranking table
    assert dsc.index("row \\ better") < dsc.index("](significance_dsc.png)") < dsc.index("Ranking stability")
    assert dsc.index("| p_rank_1 |") < dsc.index("](bootstrap_dsc.png)") < dsc.index("Metadata groups")
    assert dsc.index("Metadata groups") < dsc.index("](groups_sex_dsc.png)")
    nsd = md[md.index("### NSD\n\nAggregates"):]
    assert "](significance_nsd.png)" in nsd and "](significance_dsc.png)" not in nsd


def test_group_plots_skip_a_column_with_one_group(tmp_path):
    table = _table(algorithms=("only",)).drop(columns="algorithm").assign(site="site0")
    files = write_report(table, tmp_path, "One site", group_columns=["site", "sex"])
    assert "groups_sex_dsc.png" in files and "groups_site_dsc.png" not in files
    md = (tmp_path / "summary.md").read_text()
    assert "Not plotted (every case in one group): site (site0)." in md


def test_crowded_category_names_are_slanted():
    import matplotlib.pyplot as plt

    long_names = ["portal_vein_and_splenic_vein", "adrenal_gland_right", "adrenal_gland_left"] * 4
    for names, width, rotated in ((["liver", "spleen"], 5.0, False), (long_names, 5.0, True)):
        fig, ax = plt.subplots(figsize=(width, 3))
        ax.set_xticks(range(len(names)))
        plots._set_category_labels(ax, names, width)
        angles = {label.get_rotation() for label in ax.get_xticklabels()}
        plt.close(fig)
        assert angles == ({35.0} if rotated else {0.0}), names


def test_small_boxes_show_their_cases_as_dots(tmp_path, monkeypatch):
    from matplotlib.collections import PathCollection

    shown = {}

    def keep(fig, path):
        shown["dots"] = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection))
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    few = pd.DataFrame({"class": ["liver"] * 5 + ["spleen"] * 40, "dsc": np.linspace(0.5, 0.9, 45)})
    plots.box_plot(few, "dsc", "class", tmp_path / "b.png")
    assert shown["dots"] == 5  # the 5 liver cases; 40 spleen cases are a box only
