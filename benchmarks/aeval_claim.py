"""A-Eval's claims on phantom sites: the protocol 1 matrix, joint training, and STU-Net S vs B.

Paper (A-Eval, Table 3 and the model-size study): a model trained on one data set scores
lower on the others than on its own test split (diagonal 92.1 vs off-diagonal 85.2 DSC over
the four training sets of Table 3), joint training on all sets (protocol 4) is best on
average (91.21 on CT) and the most uniform, and larger STU-Nets generalise better.

Each "data set" is a phantom collection written in another public layout at another
acquisition site (native label maps, spacing, field of view, intensity, noise, orientation
all differ). Per seed and per STU-Net size, the driver (``medsegzoo.drivers.aeval``) trains
one model per site (protocol 1) and one on all sites (protocol 4) with the bundle's CPU
recipe (``cpu.json``: 2.5 mm, patch 48^3, bf16; half-width networks: S [8..128], B [16..256])
and scores every model's last weights on every site's test split in the 8 shared organs.
Each site has 7 patients: 3 train, 1 validates (the learning curves: a site model on its own
site, the joint model on all four), 3 test. A (seed, size) whose two matrices exist is not
run again; within one, the driver keeps every model already trained. Each (size, seed) folder
records its schedule (``settings.json``); one trained with another ``--epochs`` is refused. Run::

    .venv/bin/python benchmarks/aeval_claim.py --seeds 0 1 2 --sizes S B --out benchmarks/output/aeval_claim
    .venv/bin/python benchmarks/aeval_claim.py --report-only --out benchmarks/output/aeval_claim
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from claims import median_range, plot_curves

from medsegzoo.evaluation.curves import tensorboard_scalars
from medsegzoo.evaluation.plots import matrix_heatmap
from medsegzoo.evaluation.protocols.tables import markdown_table
from medsegzoo.utils.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "stunet_cross_dataset_evaluation"
# (set name, layout, site): four public layouts at four acquisition sites
SITES = [("FLARE22-like", "flare22", 0), ("BTCV-like", "btcv", 1), ("AMOS-like", "amos", 2), ("WORD-like", "word", 3)]
SPLIT = "0.43/0.14/0.43"  # of 7 patients: 3 train, 1 validation, 3 test
ITERATIONS_PER_EPOCH = 25  # cpu.json
CHANNELS = {"S": [8, 16, 32, 64, 128, 128], "B": [16, 32, 64, 128, 256, 256]}  # half the paper's widths
PAPER = """| A-Eval (paper, STU-Net-L) | DSC % |
|---|---|
| protocol 1, own test split (diagonal of Table 3, 4 training sets) | 92.1 |
| protocol 1, other test sets (off-diagonal) | 85.2 |
| joint training (protocol 4), CT test sets | 91.21 |
| model size | larger STU-Nets generalise better (model-size study) |"""


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


def parse_epochs(values: list[str], sizes: list[str]) -> dict[str, int]:
    """``--epochs``: one number for every size, or ``SIZE=N`` items (sizes not named keep 32)."""
    epochs = dict.fromkeys(sizes, 32)
    for item in values:
        size, sep, number = item.rpartition("=")
        if not number.isdigit() or (sep and size not in CHANNELS):
            raise SystemExit(f"--epochs {item!r}: give a number, or SIZE=NUMBER with SIZE in {sorted(CHANNELS)}")
        for name in ([size] if sep else sizes):
            epochs[name] = int(number)
    return epochs


def recorded_epochs(folder: Path) -> int | None:
    """The schedule a (size, seed) folder was trained with (None: not recorded)."""
    settings = folder / "settings.json"
    return int(json.loads(settings.read_text())["epochs"]) if settings.is_file() else None


def check_schedule(folder: Path, epochs: int) -> None:
    """Refuse to resume or reuse a folder trained with another schedule (its models would mix)."""
    recorded = recorded_epochs(folder)
    if recorded is not None and recorded != epochs:
        raise SystemExit(f"{folder}: trained with {recorded} epochs, {epochs} asked; use another --out")
    if recorded is None and folder.is_dir() and any(folder.iterdir()):
        raise SystemExit(f"{folder}: no settings.json says which schedule trained it; write "
                         f'{{"epochs": N}} there or use another --out')


def run(out: Path, seed: int, size: str, epochs: int, args: argparse.Namespace, sets: list[tuple[str, Path, Path]]) -> None:
    """Protocols 1 and 4 for one seed and one STU-Net size (the driver writes the matrices)."""
    check_schedule(out, epochs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "settings.json", json.dumps({"epochs": epochs, "iterations_per_epoch": ITERATIONS_PER_EPOCH}))
    names = [s[0] for s in sets]
    common = [sys.executable, "-m", "medsegzoo.drivers.aeval", "--bundle", args.bundle,
              *[a for n, d, f in sets for a in ("--set", f"{n}={d}::{f}")],
              "--config", Path(args.bundle) / "configs" / "cpu.json", "--no-mirroring",
              "--override", f"stunet_channels={json.dumps(CHANNELS[size])}", "--override", f"stunet_size={size}",
              "--override", f"seed={seed}", "--override", f"max_epochs={epochs}",
              "--train-sets", *names, "--test-sets", *names]
    for protocol in (1, 4):
        proc = subprocess.run([str(c) for c in [*common, "--protocol", protocol, "--work-dir", out / f"p{protocol}"]],
                              capture_output=True, text=True)
        (out / f"p{protocol}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            sys.exit(f"protocol {protocol} failed, log {out / f'p{protocol}.log'}:\n{proc.stderr[-3000:]}")


def make_sets(root: Path, seed: int, args: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    """One phantom set per site: 3 of 7 patients train, 1 validates, 3 test (``--cases 7``)."""
    from medsegzoo.data.phantom_sets import make_phantom_set

    sets = []
    for name, layout, site in SITES[: args.sites]:
        folder, datalist = make_phantom_set(root / layout, layout, args.cases, size=args.size, site=site,
                                            seed=100 * seed + site, split=SPLIT)
        sets.append((name, datalist, folder))
    return sets


def finished(out: Path, size: str, seed: int) -> bool:
    """Both matrices (protocols 1 and 4) of one (size, seed) are written."""
    return all((out / f"{size}_seed{seed}" / p / "aeval_matrix_dsc.csv").is_file() for p in ("p1", "p4"))


def summary_rows(out: Path, seeds: list[int], sizes: list[str]) -> pd.DataFrame:
    """Per finished (size, seed): mean DSC on the diagonal, off the diagonal, and of the joint model."""
    rows = []
    for size in sizes:
        for seed in (s for s in seeds if finished(out, size, s)):
            folder = out / f"{size}_seed{seed}"
            m1 = pd.read_csv(folder / "p1" / "aeval_matrix_dsc.csv", index_col=0)
            m4 = pd.read_csv(folder / "p4" / "aeval_matrix_dsc.csv", index_col=0)
            diag = [m1.loc[r, r] for r in m1.index if r in m1.columns]
            off = [m1.loc[r, c] for r in m1.index for c in m1.columns if r != c]
            rows.append({"size": size, "seed": seed, "diagonal": sum(diag) / len(diag), "off-diagonal": sum(off) / len(off),
                         "joint": float(m4.to_numpy().mean()), "P1 all cells": float(m1.to_numpy().mean())})
    return pd.DataFrame(rows)


def learning_curves(out: Path, seeds: list[int], size: str) -> tuple[Path | None, dict[str, list[float]]]:
    """Validation mean Dice of every model of one size (one colour per model, one line per seed).

    Returns the PNG (None when no run validated) and each model's last validation Dice per seed.
    """
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for seed in seeds:
        for protocol in ("p1", "p4"):
            folder = out / f"{size}_seed{seed}" / protocol
            for model in sorted(folder.iterdir()) if folder.is_dir() else []:
                events = model / "eval"
                if not events.is_dir() or not any(events.glob("events.out.tfevents.*")):
                    continue
                points = tensorboard_scalars(events, "val_mean_dice")
                if points:
                    curves.setdefault(model.name, []).append([(e * ITERATIONS_PER_EPOCH, v) for e, v in points])
    if not curves:
        return None, {}
    path = out / f"aeval_curves_{size}.png"
    plot_curves(curves, path)
    return path, {name: [run[-1][1] for run in runs] for name, runs in curves.items()}


def report(out: Path, seeds: list[int], sizes: list[str]) -> str:
    """Median [min, max] over seeds, per-seed rows, and the median matrix of each size as a heatmap."""
    import statistics

    done = {size: [s for s in seeds if finished(out, size, s)] for size in sizes}
    missing = [f"{size} seed {s}" for size in sizes for s in seeds if s not in done[size]]
    if not any(done.values()):
        raise SystemExit(f"no finished (size, seed) in {out}")
    sizes = [size for size in sizes if done[size]]
    rows = summary_rows(out, seeds, sizes)
    cols = ["diagonal", "off-diagonal", "P1 all cells", "joint"]
    md = ([f"**Incomplete:** not finished yet: {', '.join(missing)} (rerun the command to resume).", ""]
          if missing else [])
    md += ["| STU-Net (half width) | schedule | " + " | ".join(f"{c} DSC % median [min, max]" for c in cols) + " |",
          "|---|---|" + "---|" * len(cols)]
    for size in sizes:
        part = rows[rows["size"] == size]
        schedules = sorted({recorded_epochs(out / f"{size}_seed{s}") for s in done[size]}, key=str)
        schedule = ", ".join(f"{e * ITERATIONS_PER_EPOCH} iterations" if e else "not recorded" for e in schedules)
        md.append(f"| {size} | {schedule} | " + " | ".join(
            f"{statistics.median(part[c]):.1f} [{part[c].min():.1f}, {part[c].max():.1f}]" for c in cols) + " |")
    md += ["", "Per seed:", "", "| size | seed | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    md += [f"| {r['size']} | {r['seed']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |" for _, r in rows.iterrows()]
    for size in sizes:
        matrices = [pd.concat([pd.read_csv(out / f"{size}_seed{s}" / p / "aeval_matrix_dsc.csv", index_col=0)
                               for p in ("p1", "p4")]) for s in done[size]]
        median = pd.concat(matrices).groupby(level=0, sort=False).median()
        png = matrix_heatmap(median, out / f"aeval_dsc_{size}.png", title=f"Phantom A-Eval, STU-Net-{size} (half width): median DSC (%)",
                             vmin=0, vmax=100)
        md += ["", f"Median over seeds, STU-Net-{size} (rows: training set, 'Joint' = protocol 4; columns: test set):", "",
               markdown_table(_mean_sd_table(median.iloc[:-1], median.iloc[-1:]), index_label="train \\ test"),
               "", f"![{size}]({png.name})"]
        curves_png, last = learning_curves(out, done[size], size)
        if curves_png is not None:
            md += ["", f"Learning curves, STU-Net-{size}: validation mean Dice against iteration (a site's model on "
                   "that site's validation patient, the joint model on all four sites' validation patients); last "
                   "value median [min, max] over seeds: "
                   + "; ".join(f"{name} {median_range(values)}" for name, values in last.items()),
                   "", f"![curves {size}]({curves_png.name})"]
    text = "\n".join(md) + "\n\n## The paper\n\n" + PAPER + "\n"
    (out / "claim.md").write_text(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sizes", nargs="+", default=["S", "B"], choices=sorted(CHANNELS))
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--cases", type=int, default=7, help=f"cases per site (split {SPLIT} train/validation/test)")
    p.add_argument("--size", type=int, default=128, help="phantom field of view (mm)")
    p.add_argument("--epochs", nargs="+", default=["32"], metavar="N|SIZE=N",
                   help="epochs of the CPU recipe's 25 iterations (the recipe: 24), for every size or per size "
                        "(S=64 B=32); a folder trained with another schedule is refused")
    p.add_argument("--bundle", default=str(BUNDLE))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "output" / "aeval_claim")
    p.add_argument("--report-only", action="store_true", help="rebuild the tables from an earlier run's --out")
    args = p.parse_args()
    out = args.out.resolve()
    epochs = parse_epochs(args.epochs, args.sizes)
    if not args.report_only:
        timings_file = out / "timings.json"
        timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        for seed in args.seeds:
            sets = make_sets(out / f"data_seed{seed}", seed, args)
            for size in args.sizes:
                if finished(out, size, seed):
                    check_schedule(out / f"{size}_seed{seed}", epochs[size])
                    print(f"{size} seed {seed}: done earlier", flush=True)
                    continue
                start = time.perf_counter()
                run(out / f"{size}_seed{seed}", seed, size, epochs[size], args, sets)
                timings[f"{size}_seed{seed}"] = round(time.perf_counter() - start)
                print(f"{size} seed {seed}: {timings[f'{size}_seed{seed}']} s", flush=True)
                timings_file.write_text(json.dumps(timings))
    print(report(out, args.seeds, args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
