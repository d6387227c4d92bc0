"""Shared machinery of the paper-claim experiments (``benchmarks/*_claim.py``).

Every experiment trains the real bundle with its CPU recipe (``configs/cpu.json``) through
``python -m monai.bundle`` (one subprocess per run, as a user would), once per arm and seed,
scores each run with the bundle's own ``inference.json`` + ``evaluate.json`` on one or more
test sets, and writes into its output folder:

* ``runs.csv``: one row per (arm, seed, test set) with the run's mean DSC over classes;
* ``per_case.csv``: every case and class of every run;
* ``curves.png``: the validation mean Dice of every run against the training iteration, so a
  reader sees whether the runs converged (flat at the end) before comparing them;
* ``claim.md``: median [min, max] over seeds per arm and test set, the per-seed table, the
  paper's numbers beside them and the experiment's notes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsegzoo.bundle_runs import run_in_subprocess
from medsegzoo.data.datalist import SPLIT_KEYS, load_datalist, save_datalist
from medsegzoo.recipes import CpuRecipe
from medsegzoo.utils.atomic import atomic_write_text

CURVE = re.compile(r"Epoch\[(\d+)\] Metrics -- val_mean_dice: ([0-9.]+)")
ENV = {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def recipe_settings(recipe: CpuRecipe, bundles_dir: Path | None = None) -> dict[str, Any]:
    """The CPU recipe's shipped settings (its presets and ``cpu.json`` merged, later files winning)."""
    settings: dict[str, Any] = {}
    for name in recipe.train_configs[1:]:
        path = Path(name) if Path(name).is_absolute() else recipe.bundle_dir(bundles_dir) / name
        if not path.is_file():
            path = recipe.bundle_dir(bundles_dir) / "configs" / name
        settings.update(json.loads(path.read_text()))
    return settings


def describe_recipe(recipe: CpuRecipe, bundles_dir: Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> str:
    """One line for the claim's setting, read from the shipped ``cpu.json`` (so it cannot go stale).

    ``overrides`` are the experiment's changes to the recipe (e.g. a longer schedule); they are
    applied to the shipped settings and named in the line.
    """
    s = {**recipe_settings(recipe, bundles_dir), **dict(overrides or {})}
    if "num_iterations" in s:
        schedule = f"{s['num_iterations']} iterations"
    else:
        schedule = f"{s['max_epochs']} x {s['iterations_per_epoch']} iterations"
    parts = [f"{s['spacing'][0]:g} mm", "patch " + "x".join(str(v) for v in s["patch_size"]),
             "bf16" if s.get("amp") else "float32", schedule]
    if "unet_base_channels" in s:
        parts.insert(0, f"U-Net backbone {s['unet_base_channels']}")
    line = "CPU recipe (" + " + ".join(f"`{c}`" for c in recipe.train_configs[1:]) + ": " + ", ".join(parts) + ")"
    if overrides:
        line += " with " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in overrides.items()) + " for every arm"
    return line


def parse_claim_args(argv: list[str] | None, description: str, default_out: str,
                     add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The command line every claim script shares (``add_arguments`` adds a script's own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--bundles-dir", type=Path, default=None)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="train every arm this many epochs instead of the recipe's (runs that had not "
                             "converged at the recipe's schedule; recipes counted in epochs)")
    parser.add_argument("--num-iterations", type=int, default=None,
                        help="the same for recipes counted in iterations (TCSeg)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", dest="settings",
                        help="any other training override for every arm (e.g. learning_rate=0.0005); repeatable")
    parser.add_argument("--arms", nargs="+", default=None, metavar="NAME",
                        help="run only these arms (a name, or the start of one: 'supervised')")
    parser.add_argument("--report-only", action="store_true", help="rebuild claim.md from an earlier runs.csv")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.overrides = {key: value for key, value in (("max_epochs", args.max_epochs),
                                                    ("num_iterations", args.num_iterations)) if value is not None}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: use KEY=JSON (e.g. learning_rate=0.0005)")
        try:
            args.overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            args.overrides[key] = value
    return args


def prefix_case_ids(datalist: Path, prefix: str) -> None:
    """Prefix every case id of a datalist (in place), so that sets written in one layout, whose
    case ids are equal, can be combined into one datalist."""
    data = load_datalist(datalist)
    for key in SPLIT_KEYS:
        for entry in data.get(key, []):
            entry["case_id"] = f"{prefix}{entry['case_id']}"
    save_datalist(data, datalist)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration under comparison.

    Attributes:
        name: label in the tables.
        train_data: key of the training data set (from the experiment's data builder).
        overrides: training overrides on top of the CPU recipe (``method``, ``labeled_ratio``...).
        eval_overrides: inference/evaluation overrides.
        prepare: writes what training needs besides the data; ``(bundle, bundle_root) -> overrides``.
    """

    name: str
    train_data: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    prepare: Callable[[Path, Path], dict[str, Any]] | None = None


def select_arms(arms: Sequence[Arm], names: Sequence[str] | None) -> list[Arm]:
    """The arms named (exactly, or by the start of their name when no arm has that exact name).

    Raises:
        SystemExit: a name that matches no arm (the error lists the arms).
    """
    if not names:
        return list(arms)
    chosen = []
    for name in names:
        found = [a for a in arms if a.name == name] or [a for a in arms if a.name.startswith(name)]
        if not found:
            raise SystemExit(f"--arms {name!r}: no such arm; the arms are " + ", ".join(repr(a.name) for a in arms))
        chosen += [a for a in found if a not in chosen]
    return [a for a in arms if a in chosen]


@dataclasses.dataclass(frozen=True)
class TestSet:
    """A test set: a data key of the builder, the split to score, the column name in the tables.

    ``groups`` splits the classes into named groups (e.g. organs and tumors), each its own
    column (``<name> / <group>``); classes in no group are left out of every column.
    """

    name: str
    data: str
    split: str = "test"
    groups: Mapping[str, Sequence[str]] | None = None


def curve_of(log: Path, iterations_per_epoch: int) -> list[tuple[int, float]]:
    """(iteration, validation mean Dice) of a training log."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return [(int(e) * iterations_per_epoch, float(v)) for e, v in CURVE.findall(text)]


def run_experiment(
    recipe: CpuRecipe,
    arms: Sequence[Arm],
    test_sets: Sequence[TestSet],
    seeds: Sequence[int],
    make_data: Callable[[int, Path], dict[str, tuple[Path, Path]]],
    out: Path,
    iterations_per_epoch: int | None = None,
    bundles_dir: Path | None = None,
    after_run: Callable[[Arm, int, Path, dict[str, tuple[Path, Path]], dict[str, Any]], dict[str, Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Train and score every arm for every seed; returns the runs table (also written as CSV).

    An interrupted experiment resumes: a run whose training finished (``trained.json`` in its
    folder) is not trained again, and a test set already scored is not scored again.

    Args:
        recipe: the bundle's CPU recipe (configs and fixed settings).
        arms: the configurations compared.
        test_sets: where each run is scored.
        seeds: training and data seeds.
        make_data: ``(seed, folder) -> {data key: (dataset_dir, datalist)}``.
        out: output folder.
        iterations_per_epoch: to put the learning curves on an iteration axis (default: the recipe's).
        bundles_dir: bundles folder (default: the repository's).
        after_run: optional extra measurements of a trained run, added to its rows; called with
            ``(arm, seed, run folder, data, training overrides)`` on every call, resumed or not.
        overrides: training overrides for every arm (under the arm's own), e.g. a longer schedule.
    """
    if iterations_per_epoch is None:
        iterations_per_epoch = int(recipe_settings(recipe, bundles_dir)["iterations_per_epoch"])
    out.mkdir(parents=True, exist_ok=True)
    rows, cases = [], []
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for seed in seeds:
        data = make_data(seed, out / f"seed{seed}" / "data")
        for arm in arms:
            root = out / f"seed{seed}" / arm.name.replace("/", "-")  # "w/o" would nest folders
            dataset_dir, datalist = data[arm.train_data]
            extra = arm.prepare(recipe.bundle_dir(bundles_dir), root) if arm.prepare else {}
            settings = {**dict(overrides or {}), **dict(arm.overrides)}
            done = root / "trained.json"
            if done.is_file():
                seconds = json.loads(done.read_text())["train_seconds"]
            else:
                start = time.perf_counter()
                run_in_subprocess(recipe.training(root, dataset_dir, datalist, bundles_dir, seed=seed, **extra,
                                                  **settings), log=root / "train.log", env=ENV)
                seconds = time.perf_counter() - start
                atomic_write_text(done, json.dumps({"train_seconds": seconds, "overrides": settings}))
            curves.setdefault(arm.name, []).append(curve_of(root / "train.log", iterations_per_epoch))
            extra_row = after_run(arm, seed, root, data, settings) if after_run else {}
            for test in test_sets:
                test_dir, test_list = data[test.data]
                pred = root / f"eval_{test.name}"
                if not all((pred / "report" / name).is_file() for name in ("per_case.csv", "summary.json")):
                    run_in_subprocess(
                        recipe.evaluating(root, test_dir, test_list, bundles_dir, **extra, **settings,
                                          **dict(arm.eval_overrides), infer_split=test.split, output_dir=pred),
                        log=root / f"evaluate_{test.name}.log", env=ENV,
                    )
                table = pd.read_csv(pred / "report" / "per_case.csv")
                table = table.assign(arm=arm.name, seed=seed, test_set=test.name)
                cases.append(table)
                detection = json.loads((pred / "report" / "summary.json").read_text()).get("detection", [])
                for column, classes in (test.groups or {None: None}).items():
                    part = table if classes is None else table[table["class"].isin(list(classes))]
                    rows.append({"arm": arm.name, "seed": seed,
                                 "test_set": test.name if column is None else f"{test.name} / {column}",
                                 "dsc": float(part.groupby("class")["dsc"].mean().mean()),
                                 "train_seconds": round(seconds), **extra_row,
                                 **{f"{d['label']} {k}": d[k] for d in detection for k in ("sensitivity", "specificity")}})
            print(f"seed {seed} {arm.name}: " + ", ".join(
                f"{r['test_set']} {r['dsc']:.3f}" for r in rows if r["arm"] == arm.name and r["seed"] == seed)
                + f" ({seconds:.0f} s)", flush=True)
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
            pd.concat(cases).to_csv(out / "per_case.csv", index=False)
            (out / "curves.json").write_text(json.dumps(curves))
    plot_curves(curves, out / "curves.png")
    return pd.DataFrame(rows)


def plot_curves(curves: Mapping[str, list[list[tuple[int, float]]]], path: Path) -> None:
    """Validation mean Dice against iteration: one colour per arm, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (arm, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for j, run in enumerate(runs):
            if run:
                x, y = zip(*run)
                ax.plot(x, y, color=color, alpha=0.8, marker="o", markersize=3, label=arm if j == 0 else None)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("validation mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def median_range(values: Sequence[float], scale: float = 100.0) -> str:
    """``median [min, max]`` of values (percent by default); NaN (not measured) left out, "-" if all are."""
    v = [scale * x for x in values if x == x]
    if not v:
        return "-"
    return f"{statistics.median(v):.1f} [{min(v):.1f}, {max(v):.1f}]"


def extra_cell(values: Sequence[Any]) -> str:
    """One per-seed measurement other than DSC, as a table cell: ``k of n seeds`` for yes/no
    values, ``median [min, max]`` (two decimals) for numbers, "-" where no seed measured it."""
    values = [v for v in values if not (isinstance(v, float) and v != v)]  # NaN: not measured for this arm
    if not values:
        return "-"
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return f"{sum(bool(v) for v in values)} of {len(values)} seeds"
    v = [float(x) for x in values]
    return f"{statistics.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]"


def claim_tables(runs: pd.DataFrame, extra_columns: Sequence[str] = ()) -> str:
    """Markdown: median [min, max] per arm and test set, then the per-seed table."""
    tests = list(dict.fromkeys(runs["test_set"]))
    lines = ["| arm | " + " | ".join(f"{t} mean DSC % median [min, max]" for t in tests)
             + "".join(f" | {c}" for c in extra_columns) + " |",
             "|---|" + "---|" * (len(tests) + len(extra_columns))]
    for arm in dict.fromkeys(runs["arm"]):
        part = runs[runs["arm"] == arm]
        cells = [median_range(part[part["test_set"] == t]["dsc"].tolist()) for t in tests]
        cells += [extra_cell(part.drop_duplicates("seed")[c].tolist()) for c in extra_columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    pivot = runs.pivot_table(index=["arm", "seed"], columns="test_set", values="dsc", sort=False)
    lines += ["", "Per seed (mean DSC %):", "", "| arm | seed | " + " | ".join(tests) + " |",
              "|---|---|" + "---|" * len(tests)]
    for (arm, seed), row in pivot.iterrows():
        lines.append(f"| {arm} | {seed} | " + " | ".join(f"{100 * row[t]:.1f}" for t in tests) + " |")
    return "\n".join(lines)


def per_class_tables(cases: pd.DataFrame) -> str:
    """Markdown: per test set, each arm's DSC % per class (median over seeds of the per-seed class means).

    The arms' means can hide where they differ (one organ failing at one site); these tables show it.
    """
    parts = []
    for test in dict.fromkeys(cases["test_set"]):
        part = cases[cases["test_set"] == test]
        per_seed = part.groupby(["arm", "seed", "class"], sort=False)["dsc"].mean()
        table = per_seed.groupby(["arm", "class"], sort=False).median().unstack("class")
        classes = list(dict.fromkeys(part["class"]))
        lines = [f"Per class, {test} (DSC %, median over seeds):", "",
                 "| arm | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for arm in dict.fromkeys(part["arm"]):
            lines.append(f"| {arm} | " + " | ".join(f"{100 * table.loc[arm, c]:.1f}" for c in classes) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_claim(out: Path, title: str, setting: str, runs: pd.DataFrame, paper: str, reading: str,
                extra_columns: Sequence[str] = ()) -> str:
    """Write ``claim.md`` (title, setting, tables, per-class tables, paper's numbers, reading) and return it."""
    tables = [claim_tables(runs, extra_columns)]
    if (out / "per_case.csv").is_file():
        tables.append(per_class_tables(pd.read_csv(out / "per_case.csv")))
    text = "\n\n".join([f"# {title}", setting, *tables, "![learning curves](curves.png)",
                        "## The paper", paper, "## Reading", reading]) + "\n"
    (out / "claim.md").write_text(text)
    return text
