"""Does every bundle's CPU recipe learn? Train it on phantoms of one site, score held-out patients.

For each bundle this writes the recipe's fully labeled phantom set (one acquisition site,
``medsegzoo.recipes.CPU_RECIPES``: layout, size, number of cases, 62.5 / 12.5 / 25 % split),
trains with ``python -m monai.bundle run training --config_file "['configs/train.json',
'configs/cpu.json']"`` exactly as a user would (one subprocess, wall time measured), then runs
the bundle's own ``inference.json`` + ``evaluate.json`` on the test split and reads the mean
DSC of the report. It prints one row per bundle and a learning curve (validation mean Dice
per validation epoch, read from the training log) and saves the curves as a PNG.

Criterion (issue "every method learns"): held-out mean organ DSC >= 0.85 for TCT, the
universal model and STU-Net; DSC >= 0.80 for TCSeg's left atrium at 100 % labels; training
at most 10 minutes on 2 cores. Run::

    .venv/bin/python benchmarks/cpu_recipes.py                     # all four, ~40 minutes
    .venv/bin/python benchmarks/cpu_recipes.py --bundles tct --no-validation
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from medsegzoo.bundle_runs import run_in_subprocess
from medsegzoo.evaluation.scoring import summary_of
from medsegzoo.recipes import CPU_RECIPES, get_recipe, prepare_recipe_data

CURVE = re.compile(r"Epoch\[(\d+)\] Metrics -- val_mean_dice: ([0-9.]+)")


def learning_curve(log: Path) -> list[tuple[int, float]]:
    """(epoch, validation mean Dice) pairs from a bundle training log."""
    return [(int(e), float(v)) for e, v in CURVE.findall(log.read_text(encoding="utf-8", errors="replace"))]


def run_recipe(name: str, work: Path, validation: bool, env: dict[str, str], bundles_dir: Path | None = None) -> dict:
    """Train, infer and score one bundle's CPU recipe; returns the result row."""
    recipe = get_recipe(name)
    folder = work / recipe.bundle
    split = None if validation else "0.75/0.0/0.25"
    dataset_dir, datalist = prepare_recipe_data(recipe, folder, **({"split": split} if split else {}))
    root = folder / "run"
    extra = recipe.prepare(recipe.bundle_dir(bundles_dir), root) if recipe.prepare else {}
    start = time.perf_counter()
    run_in_subprocess(recipe.training(root, dataset_dir, datalist, bundles_dir, **extra), log=folder / "train.log", env=env)
    seconds = time.perf_counter() - start
    run_in_subprocess(recipe.evaluating(root, dataset_dir, datalist, bundles_dir, **extra),
                      log=folder / "evaluate.log", env=env)
    summary = summary_of(root / "eval" / "report")
    dsc = summary["metrics"]["dsc"]
    algorithm = next(iter(dsc))
    return {
        "bundle": recipe.bundle, "title": recipe.title, "criterion": recipe.criterion, "classes": recipe.classes,
        "train_seconds": seconds, "mean_dsc": dsc[algorithm]["mean_c"], "per_class": dsc[algorithm]["per_class"],
        "curve": learning_curve(folder / "train.log"), "cases": summary.get("n_cases"),
    }


def plot_curves(rows: list[dict], path: Path) -> None:
    """Validation mean Dice against epoch, one line per bundle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if row["curve"]:
            epochs, values = zip(*row["curve"])
            ax.plot(epochs, values, marker="o", label=row["title"])
    ax.set_xlabel("epoch of the CPU recipe")
    ax.set_ylabel("validation mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="*", default=list(CPU_RECIPES), help="bundle names or prefixes")
    parser.add_argument("--work-dir", default=None, help="keep phantoms, runs and logs here")
    parser.add_argument("--no-validation", action="store_true", help="datalists without a validation split")
    parser.add_argument("--out", default=None, help="write the rows as JSON and the curves as PNG here")
    parser.add_argument("--bundles-dir", default=None, help="bundles folder (default: the repository's bundles/)")
    args = parser.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="cpu_recipes_"))
    env = {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    rows = []
    for name in args.bundles:
        row = run_recipe(name, work, not args.no_validation, env, Path(args.bundles_dir) if args.bundles_dir else None)
        rows.append(row)
        verdict = "meets" if row["mean_dsc"] >= row["criterion"] and row["train_seconds"] <= 600 else "MISSES"
        print(f"{row['bundle']}: held-out mean DSC {row['mean_dsc']:.3f} over {row['classes']} "
              f"({row['cases']} cases), training {row['train_seconds']:.0f} s -> {verdict} the criterion "
              f"(DSC >= {row['criterion']:.2f}, <= 600 s)", flush=True)
        print("  per class: " + ", ".join(f"{k} {v:.3f}" for k, v in row["per_class"].items()))
        print("  learning curve (epoch, val mean Dice): " + ", ".join(f"({e}, {v:.3f})" for e, v in row["curve"]))
    out = Path(args.out) if args.out else work
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_recipes.json").write_text(json.dumps(rows, indent=2))
    plot_curves(rows, out / "cpu_recipes_curves.png")
    print("\n| bundle | held-out mean DSC | criterion | training (s) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle']} | {r['mean_dsc']:.3f} | >= {r['criterion']:.2f} | {r['train_seconds']:.0f} |")
    print(f"\nresults: {out / 'cpu_recipes.json'}, curves: {out / 'cpu_recipes_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
