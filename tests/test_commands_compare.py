"""``medsegzoo compare`` on per_case.csv inputs: report written, cases aligned, errors named."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from medsegzoo.cli import main


def _write_algorithms(tmp_path, n_cases=16, drop_case_for=None):
    rng = np.random.default_rng(11)
    base = rng.uniform(0.7, 0.9, n_cases)
    paths = {}
    for k, name in enumerate(["good", "fair", "poor"]):
        rows = []
        for i in range(n_cases):
            if name == drop_case_for and i == 0:
                continue
            for cls in ("liver", "spleen"):
                v = base[i] + 0.04 * (1 - k) + rng.normal(0, 0.005)
                rows.append({"case": f"case{i:02d}", "class": cls, "dsc": v, "nsd": v - 0.02, "gt_present": True, "pred_present": True})
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        paths[name] = path
    meta = pd.DataFrame({"case_id": [f"case{i:02d}" for i in range(n_cases)], "sex": ["F", "M"] * (n_cases // 2), "site": ["a"] * (n_cases - 2) + ["b", "b"]})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    return paths


def test_compare_per_case_csvs_writes_touchstone_report(tmp_path, capsys):
    paths = _write_algorithms(tmp_path)
    out = tmp_path / "report"
    args = [f"{n}={p}" for n, p in paths.items()]
    code = main(["compare", *args, "--metadata", str(tmp_path / "meta.csv"), "--out", str(out), "--bootstrap", "200", "--min-group-size", "5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 algorithms, 16 cases" in printed and "significant pairs" in printed
    for name in ("per_case.csv", "per_class.csv", "summary.md", "summary.json", "significance_dsc.png", "bootstrap_dsc.png", "groups_sex_dsc.png"):
        assert (out / name).stat().st_size > 0, name
    per_case = pd.read_csv(out / "per_case.csv")
    assert set(per_case["algorithm"]) == {"good", "fair", "poor"} and len(per_case) == 3 * 16 * 2
    assert {"sex", "site"} <= set(per_case.columns)
    summary = json.loads((out / "summary.json").read_text())
    ranks = {r["algorithm"]: r["median_rank"] for r in summary["touchstone"]["dsc"]["bootstrap"]}
    assert ranks == {"good": 1, "fair": 2, "poor": 3}
    pairs = {(p["better"], p["worse"]) for p in summary["touchstone"]["dsc"]["significant_pairs"]}
    assert pairs == {("good", "fair"), ("good", "poor"), ("fair", "poor")}
    md = (out / "summary.md").read_text()
    assert "b (n=2)" in md  # site b is below --min-group-size and is listed as left out


def test_compare_drops_or_rejects_missing_cases(tmp_path):
    paths = _write_algorithms(tmp_path, drop_case_for="fair")
    args = [f"{n}={p}" for n, p in paths.items()]
    assert main(["compare", *args, "--out", str(tmp_path / "r"), "--bootstrap", "20", "--no-plots"]) == 0
    per_case = pd.read_csv(tmp_path / "r" / "per_case.csv")
    assert per_case["case"].nunique() == 15
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "good: 1 case(s) not scored for every algorithm, left out (e.g. case00)" in md
    assert not list((tmp_path / "r").glob("*.png"))
    assert main(["compare", *args, "--out", str(tmp_path / "s"), "--strict"]) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["bad"], "expected NAME=PATH"),
        (["x=/nonexistent/per_case.csv"], "does not exist"),
        (["--group-columns", "weight"], "not metadata columns"),
    ],
)
def test_compare_bad_input_names_the_problem(tmp_path, capsys, extra, message):
    paths = _write_algorithms(tmp_path)
    args = [f"{n}={p}" for n, p in paths.items()]
    assert main(["compare", *args, *extra, "--out", str(tmp_path / "r")]) == 1
    assert message in capsys.readouterr().err


def test_compare_prediction_folder_needs_gt(tmp_path, capsys):
    paths = _write_algorithms(tmp_path)
    (tmp_path / "preds").mkdir()
    assert main(["compare", f"good={paths['good']}", f"folder={tmp_path / 'preds'}", "--out", str(tmp_path / "r")]) == 1
    assert "--gt and --labels are needed" in capsys.readouterr().err


def test_compare_runs_as_console_command(tmp_path):
    paths = _write_algorithms(tmp_path, n_cases=8)
    args = [f"{n}={p}" for n, p in paths.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "medsegzoo", "compare", *args, "--out", str(tmp_path / "r"), "--bootstrap", "20", "--no-plots"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "summary.md").exists()


def _label_maps(folder, seed, noise):
    """Four 16^3 cases in touchstone9 values: spleen (1) and liver (5) blocks, some voxels flipped."""
    from medsegzoo.data.io import save_volume

    rng = np.random.default_rng(seed)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    for i in range(4):
        lab = np.zeros((16, 16, 16), dtype=np.uint8)
        lab[2:7, 3:9, 4:10] = 1
        lab[8:14, 6:14, 3:12] = 5
        flip = rng.random(lab.shape) < noise
        lab[flip & (lab > 0)] = 0
        save_volume(folder / f"case{i}.nii.gz", lab, affine)


def test_compare_scores_prediction_folders_with_the_engine(tmp_path):
    for name, seed, noise in (("gt", 0, 0.0), ("sharp", 1, 0.02), ("blurry", 2, 0.3)):
        (tmp_path / name).mkdir()
        _label_maps(tmp_path / name, seed, noise)
    out = tmp_path / "r"
    code = main(
        ["compare", f"sharp={tmp_path / 'sharp'}", f"blurry={tmp_path / 'blurry'}", "--gt", str(tmp_path / "gt"),
         "--labels", "touchstone9", "--out", str(out), "--bootstrap", "20", "--no-plots", "--workers", "1"]
    )
    assert code == 0
    per_case = pd.read_csv(out / "per_case.csv")
    assert set(per_case["algorithm"]) == {"sharp", "blurry"}
    scored = per_case.dropna(subset=["dsc"])
    assert set(scored["class"]) == {"spleen", "liver"}  # other touchstone9 classes absent in GT: NaN
    means = scored.groupby("algorithm")["dsc"].mean()
    assert means["sharp"] > means["blurry"] > 0.5
    md = (out / "summary.md").read_text()
    assert "label system: touchstone9" in md
    assert "Classes without any value (not in the table): kidney_right, kidney_left" in md
    assert "| sharp | " in md and "kidney_right |" not in md.split("## Touchstone")[0]


@pytest.mark.parametrize(("tolerance", "expected_mm"), [("0.5", 0.5), ("aeval", 5.0), (None, 1.5)])
def test_compare_tolerance_as_mm_or_preset(tmp_path, tolerance, expected_mm):
    import surface_distance as deepmind

    from medsegzoo.data.io import load_volume

    for name, seed, noise in (("gt", 0, 0.0), ("a", 1, 0.2), ("b", 2, 0.3)):
        (tmp_path / name).mkdir()
        _label_maps(tmp_path / name, seed, noise)
    out = tmp_path / "r"
    extra = [] if tolerance is None else ["--tolerance", tolerance]
    argv = ["compare", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--gt", str(tmp_path / "gt"), "--labels", "touchstone9"]
    assert main([*argv, *extra, "--metrics", "dsc,nsd", "--out", str(out), "--bootstrap", "10", "--no-plots", "--workers", "1"]) == 0
    row = pd.read_csv(out / "per_case.csv").set_index(["algorithm", "case", "class"]).loc[("a", "case0", "liver")]
    gt, _, spacing = load_volume(tmp_path / "gt" / "case0.nii.gz")
    pred, _, _ = load_volume(tmp_path / "a" / "case0.nii.gz")
    dist = deepmind.compute_surface_distances(gt == 5, pred == 5, spacing)
    assert row["nsd"] == pytest.approx(deepmind.compute_surface_dice_at_tolerance(dist, expected_mm), abs=1e-9)


def test_compare_out_is_checked_first_and_a_failed_run_keeps_the_old_report(tmp_path, capsys):
    paths = _write_algorithms(tmp_path)
    args = [f"{n}={p}" for n, p in paths.items()]
    (tmp_path / "taken").write_text("notes")
    assert main(["compare", *args, "--out", str(tmp_path / "taken")]) == 1
    assert capsys.readouterr().err == f"medsegzoo compare: error: {tmp_path / 'taken'}: exists and is a file; the output is a folder, choose another path\n"
    out = tmp_path / "r"
    assert main(["compare", *args, "--out", str(out), "--bootstrap", "20", "--no-plots"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a run that fails after --out was staged (no case shared) leaves the earlier report whole
    bad = tmp_path / "other.csv"
    pd.read_csv(next(iter(paths.values()))).assign(case="zz").to_csv(bad, index=False)
    assert main(["compare", args[0], f"other={bad}", "--out", str(out)]) == 1
    assert "no case is shared by all algorithms" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
