"""TCSeg vs supervised-only on LA phantoms with the multi-run protocol (CPU scale).

Writes a semi-supervised LA phantom set (h5 volumes as the LA release, 25 cases: 20 training
of which 10 % keep their labels, 2 validation, 3 test) with the real ``medsegzoo`` CLI, then
runs :func:`medsegzoo.drivers.multi_seed.run_protocol` for TCSeg and for the supervised-only
baseline (same bundle, ``supervised_only=True``) with the same seeds, and prints the
median/maximum table for the last and best checkpoints (best = highest validation Dice; the
test split is never looked at during training)::

    python benchmarks/tcseg_phantom_experiment.py --out /tmp/tcseg_bench --seeds 3 --iterations 30

At CPU scale (a 4-filter V-Net, 32^3 patches, tens of iterations) the numbers say whether the
pipeline behaves, not how TCSeg compares with its paper; see the bundle README.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from medsegzoo.drivers.multi_seed import TCSEG_METRICS, run_protocol
from medsegzoo.evaluation.protocols.multirun import multirun_summary
from medsegzoo.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "tcseg_semi_supervised_segmentation"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--iterations-per-epoch", type=int, default=10, help="validation (best checkpoint) interval")
    parser.add_argument("--labeled-ratio", type=float, default=0.1)
    parser.add_argument("--cases", type=int, default=25)
    parser.add_argument("--size", type=int, default=40)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data = out / "la"
    datalist = out / "datalist.json"
    if not datalist.is_file():
        subprocess.run([sys.executable, "-m", "medsegzoo", "phantoms", str(data), "--layout", "la", "--labeled", str(args.cases),
                        "--size", str(args.size), "--seed", "0", "--quiet"], check=True)
        subprocess.run([sys.executable, "-m", "medsegzoo", "datalist", "la", str(data), "--out", str(datalist),
                        "--split", "0.8/0.08/0.12", "--seed", "0"], check=True)
    settings = {
        "labeled_ratio": args.labeled_ratio,
        "num_iterations": args.iterations,
        "iterations_per_epoch": args.iterations_per_epoch,
        "rampup_iterations": args.iterations // 2,
        "mix_start_iteration": max(1, args.iterations // 5),
    }
    runs = []
    start = time.perf_counter()
    for method, extra in (("TCSeg", {}), ("supervised only", {"supervised_only": True})):
        _, table = run_protocol(
            BUNDLE, data, datalist, out / method.replace(" ", "_"), list(range(args.seeds)),
            configs=["configs/presets/la.json", "configs/smoke.json"], overrides={**settings, **extra},
            title=f"{method} on LA phantoms", group={"method": method},
        )
        runs.append(table)
    runs_table = pd.concat(runs, ignore_index=True)
    summary = multirun_summary(runs_table, metrics=list(TCSEG_METRICS), has_validation=True, group_by=["method"])
    text = (
        f"# TCSeg vs supervised-only, LA phantoms, {args.labeled_ratio:.0%} labeled\n\n"
        f"{args.seeds} seeds, {args.iterations} iterations, settings {settings}; "
        f"wall time {time.perf_counter() - start:.0f} s.\n\n{summary.to_markdown()}\n"
    )
    atomic_write_text(out / "summary.md", text)
    atomic_write_text(out / "runs.csv", runs_table.to_csv(index=False))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
