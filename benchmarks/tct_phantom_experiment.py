"""TCT vs TAL vs ME on partially labeled phantoms, scored on an unseen fully labeled site.

For each seed: phantoms of four partially labeled data sets from four sites (KiTS19-like
kidneys at site 1, MSD liver at site 2, MSD pancreas at site 3, MSD spleen at site 0) are
written and listed with the real ``medsegzoo phantoms`` / ``medsegzoo datalist`` CLIs and
mixed into one datalist; a fully labeled BTCV-like set of an unseen site (4) is the test
set. The bundle ``tct_partial_label_segmentation`` is trained with ``method`` = tct, tal and
me (same seed, data and schedule), then evaluated on the unseen set (DSC and HD95 per class,
every class counts). The table gives the median and range over seeds of the per-run mean
over classes.

Run (from the repository root)::

    .venv/bin/python benchmarks/tct_phantom_experiment.py --seeds 0 1 2 --epochs 20

``--quick`` uses narrower U-Net stages (8-16-32-64-128 instead of 16-...-256) and 32 mm
phantoms so that a run fits a few CPU minutes; it is a smoke-scale comparison, not the
paper's setting. Output: a Markdown table on stdout and in
``benchmarks/output/tct_phantom_experiment.md`` (plus the per-case CSVs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "tct_partial_label_segmentation"
METHODS = ("tct", "tal", "me")
TRAIN_SETS = (("kits19", 1), ("msd_liver", 2), ("msd_pancreas", 3), ("msd_spleen", 0))
UNSEEN = ("btcv", 4)


def _cli(*args: object) -> str:
    proc = subprocess.run([sys.executable, "-m", "medsegzoo", *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"medsegzoo {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1].strip() if proc.stdout.strip() else ""


def make_data(root: Path, seed: int, cases: int, size: int) -> tuple[Path, Path, Path, Path]:
    """Write the partially labeled mix and the unseen set; return their folders and datalists."""
    from medsegzoo.data.datalist import combine_datalists

    mix = root / "mix"
    parts = []
    for i, (layout, site) in enumerate(TRAIN_SETS):
        out = mix / f"{layout}_{i}"
        folder = Path(_cli("phantoms", out, "--layout", layout, "--cases", cases, "--size", size,
                           "--seed", 100 * seed + i, "--site", site, "--quiet"))
        datalist = out / "datalist.json"
        _cli("datalist", layout, folder, "--out", datalist, "--split", "0.5/0.25/0.25", "--seed", seed)
        parts.append((datalist, folder))
    mixed = combine_datalists(parts, mix / "datalist.json", mix, name=f"tct_phantoms_s{seed}")
    layout, site = UNSEEN
    out = root / "unseen"
    folder = Path(_cli("phantoms", out, "--layout", layout, "--cases", cases, "--size", size,
                       "--seed", 100 * seed + 50, "--site", site, "--quiet"))
    unseen = out / "datalist.json"
    _cli("datalist", layout, folder, "--out", unseen)
    return mix, mixed, folder, unseen


def run_method(method: str, seed: int, data: tuple[Path, Path, Path, Path], out: Path, args: argparse.Namespace) -> pd.DataFrame:
    """Train one method and score it on the unseen set; return the per-case table."""
    from monai.bundle import run

    mix, mixed, unseen_dir, unseen = data
    configs = [str(BUNDLE / "configs" / n) for n in ("train.json", "smoke.json")]
    common = {
        "bundle_root": str(out), "method": method, "seed": seed, "max_epochs": args.epochs,
        "val_interval": args.epochs, "checkpoint_interval": 10**6, "rampup_epochs": max(1, args.epochs // 5),
        "num_workers": 0, "logging_file": str(BUNDLE / "configs" / "logging.conf"), "meta_file": None,
    }
    if args.quick:
        common["network_def#features"] = [8, 16, 32, 64, 128]
    run("training", config_file=configs, dataset_dir=str(mix), datalist=str(mixed), **common)
    configs = [str(BUNDLE / "configs" / n) for n in ("train.json", "inference.json", "evaluate.json", "smoke.json")]
    run("evaluating", config_file=configs, dataset_dir=str(unseen_dir), datalist=str(unseen),
        infer_split="training", eval_name="unseen", **common)
    table = pd.read_csv(out / "eval" / "report_unseen" / "per_case.csv")
    table["method"], table["seed"] = method, seed
    return table


def summarise(tables: list[pd.DataFrame]) -> str:
    """Median [min, max] over seeds of each run's class-mean DSC (%) and HD95 (mm)."""
    df = pd.concat(tables, ignore_index=True)
    per_run = df.groupby(["method", "seed"]).agg(dsc=("dsc", "mean"), hd95=("hd95", "mean")).reset_index()
    per_class = df.groupby(["method", "seed", "class"])["dsc"].mean().reset_index()
    classes = sorted(per_class["class"].unique())
    lines = ["| method | mean DSC % median [min, max] | mean HD95 mm median [min, max] | "
             + " | ".join(f"{c} DSC %" for c in classes) + " |",
             "|---|---|---|" + "---|" * len(classes)]
    for method in METHODS:
        runs = per_run[per_run["method"] == method]
        if runs.empty:
            continue
        dsc, hd = 100 * runs["dsc"], runs["hd95"]
        cells = [f"{statistics.median(dsc):.1f} [{dsc.min():.1f}, {dsc.max():.1f}]",
                 f"{statistics.median(hd):.1f} [{hd.min():.1f}, {hd.max():.1f}]"]
        for c in classes:
            vals = 100 * per_class[(per_class["method"] == method) & (per_class["class"] == c)]["dsc"]
            cells.append(f"{statistics.median(vals):.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cases", type=int, default=4, help="phantoms per data set")
    parser.add_argument("--size", type=int, default=48, help="phantom field of view (mm)")
    parser.add_argument("--quick", action="store_true", help="narrow network (CPU minutes)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "output" / "tct_phantom_experiment")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    start = time.time()
    tables = []
    for seed in args.seeds:
        data = make_data(args.out / f"seed{seed}" / "data", seed, args.cases, args.size)
        for method in METHODS:
            tables.append(run_method(method, seed, data, args.out / f"seed{seed}" / method, args))
    pd.concat(tables).to_csv(args.out / "per_case_all.csv", index=False)
    table = summarise(tables)
    setting = (f"seeds {args.seeds}, {args.epochs} epochs, {args.cases} phantoms per data set of {args.size} mm, "
               f"{'narrow (8-128) ' if args.quick else ''}U-Net, smoke patch 32x32x16; "
               f"wall time {time.time() - start:.0f} s")
    text = f"Unseen BTCV-like site (fully labeled), {setting}\n\n{table}\n"
    print(text)
    (args.out / "tct_phantom_experiment.md").write_text(text)
    (args.out / "settings.json").write_text(json.dumps(vars(args), default=str, indent=4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
