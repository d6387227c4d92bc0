"""A-Eval protocols 1 and 4 on synthetic phantom sites, STU-Net-S at CPU scale.

Each "data set" is a phantom collection written with ``medsegzoo phantoms --site K`` in another
public layout (different native label maps, spacings, fields of view, intensities, noise and
orientations per site). Protocol 1 trains one STU-Net-S per site and tests it on every site's
test split; protocol 4 trains one joint model on all sites. The driver
(``medsegzoo.drivers.aeval``) writes both train x test matrices; this script prints them
side by side and copies the table and the DSC heatmap next to the bundle README.

    .venv/bin/python benchmarks/stunet_aeval_phantom_experiment.py --sites 4 [--epochs 40 --iterations 20]
    .venv/bin/python benchmarks/stunet_aeval_phantom_experiment.py --report-only   # tables from the last run

What it shows is whether the pipeline turns domain shift into the matrix the paper reports, at a
scale a laptop CPU trains in minutes; the numbers say nothing about real CT.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from medsegzoo.evaluation.plots import matrix_heatmap
from medsegzoo.evaluation.protocols.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "stunet_cross_dataset_evaluation"
# (set name, layout, site): three public layouts with three acquisition sites
SITES = [("FLARE22-like", "flare22", 0), ("BTCV-like", "btcv", 1), ("AMOS-like", "amos", 2), ("WORD-like", "word", 3)]


def _run(cmd: list[str]) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _mean_sd_table(matrix: pd.DataFrame, extra_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The matrix with a row/column "Mean ± SD" (population SD, as A-Eval).

    The column means are over ``matrix`` (protocol 1, as the paper's Table 3); ``extra_rows``
    (the joint model) come after them with their own row mean.
    """
    def with_row_mean(m: pd.DataFrame) -> pd.DataFrame:
        out = m.map(lambda v: f"{v:.2f}")
        out["Mean ± SD"] = [f"{r.mean():.2f} ± {r.std(ddof=0):.2f}" for _, r in m.iterrows()]
        return out

    out = with_row_mean(matrix)
    flat = matrix.to_numpy().ravel()
    out.loc["Mean ± SD (P1)"] = [f"{matrix[c].mean():.2f} ± {matrix[c].std(ddof=0):.2f}" for c in matrix.columns] + [
        f"{flat.mean():.2f} ± {flat.std(ddof=0):.2f}"
    ]
    if extra_rows is not None:
        out = pd.concat([out, with_row_mean(extra_rows)])
    return out


def _per_class_table(p1: pd.DataFrame, p4: pd.DataFrame) -> pd.DataFrame:
    """DSC per class: protocol 1 on the training site, protocol 1 on the other sites, joint."""
    same = p1[p1["train_set"] == p1["test_set"]]
    other = p1[p1["train_set"] != p1["test_set"]]
    table = pd.DataFrame({
        "P1 same site": same.groupby("class")["dsc"].mean(),
        "P1 other sites": other.groupby("class")["dsc"].mean(),
        "Joint (P4)": p4.groupby("class")["dsc"].mean(),
    })
    return (100 * table).map(lambda v: f"{v:.1f}")


def report(out: Path, args: argparse.Namespace, copy: bool) -> str:
    """Tables (Markdown) and the heatmap from the driver's CSVs under ``out``."""
    timings = json.loads((out / "timings.json").read_text())
    tables, matrices = {}, {}
    for metric in ("dsc", "nsd"):
        m1 = pd.read_csv(out / "p1" / f"aeval_matrix_{metric}.csv", index_col=0)
        m4 = pd.read_csv(out / "p4" / f"aeval_matrix_{metric}.csv", index_col=0)
        matrices[metric] = pd.concat([m1, m4])
        tables[metric] = _mean_sd_table(m1, m4)
    per_class = _per_class_table(pd.read_csv(out / "p1" / "aeval_per_case.csv"), pd.read_csv(out / "p4" / "aeval_per_case.csv"))
    md = [f"Phantom A-Eval (STU-Net-S, {timings['epochs']} epochs x {timings['iterations']} iterations, batch 2, "
          f"32^3 patches, no mirroring; {timings['sites']} sites x {timings['train_cases']} training / "
          f"{timings['test_cases']} test cases; protocol 1 {timings['p1_s']:.0f} s, protocol 4 {timings['p4_s']:.0f} s "
          f"wall on a 2-core CPU). Rows: training set ('Joint' = protocol 4); columns: test set; mean over the 8 "
          f"shared classes. 'Mean ± SD' as the paper (population SD): column means over the protocol-1 rows, the corner over all their cells.\n"]
    for metric, table in tables.items():
        md.append(f"\n{metric.upper()} (%):\n\n" + markdown_table(table, index_label="train \\ test") + "\n")
    md.append("\nDSC (%) per class, averaged over the (train, test) pairs of each kind:\n\n"
              + markdown_table(per_class, index_label="class") + "\n")
    text = "".join(md)
    (out / "phantom_aeval.md").write_text(text)
    heatmap = matrix_heatmap(matrices["dsc"], out / "phantom_aeval_dsc.png", title="Phantom A-Eval, STU-Net-S: DSC (%)",
                             vmin=0, vmax=100)
    if copy:
        docs = BUNDLE / "docs"
        (docs / "phantom_aeval.md").write_text(text)
        shutil.copy(heatmap, docs / "phantom_aeval_dsc.png")
        print(f"copied table and heatmap to {docs}")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=3, help="number of phantom sites (3 or 4)")
    p.add_argument("--cases", type=int, default=6, help="cases per site (half train, half test)")
    p.add_argument("--size", type=int, default=48, help="phantom field of view (mm)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--iterations", type=int, default=20, help="iterations per epoch")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "stunet_aeval"))
    p.add_argument("--no-copy", action="store_true", help="do not copy the table/heatmap into the bundle docs")
    p.add_argument("--report-only", action="store_true", help="rebuild the tables from an earlier run's --out")
    args = p.parse_args()
    out = Path(args.out)
    if not args.report_only:
        run(out, args)
    print(report(out, args, copy=not args.no_copy))
    return 0


def run(out: Path, args: argparse.Namespace) -> None:
    """Phantom sets, then protocols 1 and 4 with the driver; timings to ``out/timings.json``."""
    if out.exists():
        shutil.rmtree(out)
    sets = []
    for name, layout, site in SITES[: args.sites]:
        root = out / "data" / layout
        folder = _run([sys.executable, "-m", "medsegzoo", "phantoms", root, "--layout", layout, "--cases", args.cases,
                       "--size", args.size, "--site", site, "--seed", site, "--no-tumors", "--quiet"]).strip().splitlines()[-1]
        _run([sys.executable, "-m", "medsegzoo", "datalist", layout, folder, "--out", root / "datalist.json",
              "--split", "0.5/0.0/0.5", "--seed", site])
        sets.append((name, root / "datalist.json", folder))
    names = [s[0] for s in sets]
    common = [sys.executable, "-m", "medsegzoo.drivers.aeval", "--bundle", BUNDLE,
              *[a for n, d, f in sets for a in ("--set", f"{n}={d}::{f}")],
              "--config", BUNDLE / "configs" / "smoke.json", "--no-mirroring",
              "--override", f"max_epochs={args.epochs}", "--override", f"iterations_per_epoch={args.iterations}",
              "--override", "val_interval=1000", "--train-sets", *names, "--test-sets", *names]
    start = time.perf_counter()
    _run([*common, "--protocol", "1", "--work-dir", out / "p1"])
    t1 = time.perf_counter() - start
    _run([*common, "--protocol", "4", "--work-dir", out / "p4"])
    t4 = time.perf_counter() - start - t1
    (out / "timings.json").write_text(json.dumps({
        "sites": args.sites, "train_cases": args.cases // 2, "test_cases": args.cases - args.cases // 2,
        "epochs": args.epochs, "iterations": args.iterations, "p1_s": t1, "p4_s": t4}))


if __name__ == "__main__":
    sys.exit(main())
