"""A-Eval protocols 1 and 4 on synthetic phantom sites, STU-Net-S at CPU scale.

Each "data set" is a phantom collection written with ``medsegzoo phantoms --site K`` in another
public layout (different native label maps, spacings, fields of view, intensities, noise and
orientations per site). Protocol 1 trains one STU-Net-S per site and tests it on every site's
test split; protocol 4 trains one joint model on all sites. The driver
(``medsegzoo.engines.aeval_driver``) writes both train x test matrices; this script prints them
side by side and copies the table and the DSC heatmap next to the bundle README.

    .venv/bin/python benchmarks/stunet_aeval_phantom_experiment.py [--epochs 10 --iterations 10]

What it shows is whether the pipeline turns domain shift into the matrix the paper reports, at a
scale a laptop CPU trains in minutes; the numbers say nothing about real CT.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

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


def _mean_sd_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix with a row/column "Mean ± SD" (population SD, as A-Eval)."""
    out = matrix.map(lambda v: f"{v:.2f}")
    out["Mean ± SD"] = [f"{r.mean():.2f} ± {r.std(ddof=0):.2f}" for _, r in matrix.iterrows()]
    flat = matrix.to_numpy().ravel()
    out.loc["Mean ± SD"] = [f"{matrix[c].mean():.2f} ± {matrix[c].std(ddof=0):.2f}" for c in matrix.columns] + [
        f"{flat.mean():.2f} ± {flat.std(ddof=0):.2f}"
    ]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=3, help="number of phantom sites (3 or 4)")
    p.add_argument("--cases", type=int, default=6, help="cases per site (half train, half test)")
    p.add_argument("--size", type=int, default=48, help="phantom field of view (mm)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iterations", type=int, default=10, help="iterations per epoch")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "stunet_aeval"))
    p.add_argument("--no-copy", action="store_true", help="do not copy the table/heatmap into the bundle docs")
    args = p.parse_args()
    out = Path(args.out)
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
    common = [sys.executable, "-m", "medsegzoo.engines.aeval_driver", "--bundle", BUNDLE,
              *[a for n, d, f in sets for a in ("--set", f"{n}={d}::{f}")],
              "--config", BUNDLE / "configs" / "smoke.json", "--no-mirroring",
              "--override", f"max_epochs={args.epochs}", "--override", f"iterations_per_epoch={args.iterations}",
              "--override", "val_interval=1000", "--train-sets", *names, "--test-sets", *names]
    start = time.perf_counter()
    _run([*common, "--protocol", "1", "--work-dir", out / "p1"])
    t1 = time.perf_counter() - start
    _run([*common, "--protocol", "4", "--work-dir", out / "p4"])
    t4 = time.perf_counter() - start - t1
    tables = {}
    for metric in ("dsc", "nsd"):
        m1 = pd.read_csv(out / "p1" / f"aeval_matrix_{metric}.csv", index_col=0)
        m4 = pd.read_csv(out / "p4" / f"aeval_matrix_{metric}.csv", index_col=0)
        tables[metric] = _mean_sd_table(pd.concat([m1, m4]))
    md = [f"Phantom A-Eval (STU-Net-S, {args.epochs} epochs x {args.iterations} iterations, batch 2, 32^3 patches, "
          f"no mirroring; {args.sites} sites x {args.cases // 2} training / {args.cases - args.cases // 2} test cases; "
          f"protocol 1 {t1:.0f} s, protocol 4 {t4:.0f} s on this CPU). Rows: training set ('Joint' = protocol 4); "
          f"columns: test set; mean over the 8 shared classes.\n"]
    for metric, table in tables.items():
        md.append(f"\n{metric.upper()} (%):\n\n" + markdown_table(table, index_label="train \\ test") + "\n")
    text = "".join(md)
    (out / "phantom_aeval.md").write_text(text)
    print(text)
    if not args.no_copy:
        docs = BUNDLE / "docs"
        (docs / "phantom_aeval.md").write_text(text)
        shutil.copy(out / "p1" / "report" / "aeval_dsc.png", docs / "phantom_aeval_dsc.png")
        print(f"copied table and heatmap to {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
