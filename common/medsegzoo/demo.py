"""``make demo``: every bundle trained on CPU with its recipe, on phantoms, in about ten minutes.

For each bundle the demo does what a user would do with their own data, with real commands
(each a subprocess, timed in the report):

1. write a fully labeled phantom data set of one acquisition site in the layout the bundle
   reads (``medsegzoo phantoms`` + ``medsegzoo datalist``, through
   :func:`medsegzoo.data.phantom_sets.make_phantom_set`);
2. copy the bundle to ``OUT/bundles/<name>`` and train it there with its CPU recipe
   (``configs/train.json`` + ``configs/cpu.json``, bf16, a shortened schedule), so the trained
   weights land in that bundle's ``models/``: ``medsegzoo zoo pack --bundles-dir OUT/bundles``
   then publishes bundles that predict when downloaded;
3. run the bundle's standalone ``inference.json`` + ``evaluate.json`` on held-out patients;
4. write ``OUT/REPORT.md``: held-out DSC per class, the validation learning curve, and an
   overlay of a prediction on its image.

Run from the repository root: ``python -m medsegzoo.demo --out demo_output``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medsegzoo.bundle_runs import BundleRun, run_in_subprocess
from medsegzoo.data.datalist import load_split
from medsegzoo.data.predictions import prediction_path
from medsegzoo.evaluation.scoring import summary_of
from medsegzoo.recipes import TOUCHSTONE9, CpuRecipe, get_recipe, text_embeddings_writer
from medsegzoo.utils.atomic import atomic_write_text
from medsegzoo.zoo.bake import bake_overrides, declare_output_channels, read_override_files

CURVE = re.compile(r"Epoch\[(\d+)\] Metrics -- val_mean_dice: ([0-9.]+)")


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """How the demo shortens one bundle's CPU recipe.

    Attributes:
        bundle: bundle folder name (its recipe comes from :mod:`medsegzoo.recipes`).
        phantoms: changes to the recipe's phantom set (fewer, smaller cases).
        training: overrides of the recipe's training run (a shorter schedule).
        labels: label system of the predictions (overlay legend).
        classes: the universal model's heads to train (its text embeddings are written for
            these only); None: the recipe's.
        network: network settings that differ from the recipe's (used by training, evaluation
            and the published bundle alike).
    """

    bundle: str
    phantoms: Mapping[str, Any]
    training: Mapping[str, Any]
    labels: str
    classes: Sequence[str] | None = None
    network: Mapping[str, Any] = dataclasses.field(default_factory=dict)


DEMO_RUNS: tuple[DemoRun, ...] = (
    # the CPU recipes, shortened to where their learning curves (bundle READMEs) approach 0.8;
    # longest first, so that with two jobs the universal model and TCSeg train side by side,
    # then STU-Net and TCT
    # the universal model trains at half the recipe's backbone width (U-Net base 8, not 16) and only
    # the heads of the 9 classes its phantoms label (the recipe's other 23 heads never see a label):
    # an epoch takes 16 s instead of 41 s (one thread, beside TCSeg); 25 epochs took 391 s and reached
    # 0.812 held-out, 20 epochs 328 s and 0.799 (the whole demo 785 s and 743 s); 17 epochs, validated
    # once at the end, keep it within 12 minutes; with the recipe's network 16 epochs took 650 s and
    # reached 0.665
    DemoRun("clip_universal_segmentation", {"cases": 10, "size": 128, "split": "0.6/0.1/0.3"},
            {"max_epochs": 17, "val_interval": 17, "warmup_epochs": 2}, "universal32",
            classes=TOUCHSTONE9, network={"unet_base_channels": 8}),
    DemoRun("tcseg_semi_supervised_segmentation", {"cases": 10, "size": 96, "split": "0.6/0.1/0.3"},
            {"num_iterations": 400, "val_interval": 2}, "la"),
    DemoRun("stunet_cross_dataset_evaluation", {"cases": 10, "size": 128, "split": "0.6/0.1/0.3"},
            {"max_epochs": 28, "val_interval": 14, "checkpoint_interval": 14}, "aeval8"),
    DemoRun("tct_partial_label_segmentation", {"cases": 10, "size": 128, "split": "0.6/0.1/0.3"},
            {"max_epochs": 8, "val_interval": 4, "rampup_epochs": 4}, "tct5"),
)


@dataclasses.dataclass
class StepLog:
    """Commands run by the demo and their wall-clock times, for the report."""

    rows: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    threads: int | None = None

    def run(self, what: str, run: BundleRun, log: Path) -> None:
        """Run a bundle command, log its output to ``log``, record its time."""
        print(f"\n$ {' '.join(run.command())}", flush=True)
        start = time.perf_counter()
        env = {"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        run_in_subprocess(run, log=log, env=env)
        elapsed = time.perf_counter() - start
        self.rows.append((what, elapsed))
        print(f"  {what}: {elapsed:.0f} s (log {log})", flush=True)


def _copy_bundle(source: Path, target: Path) -> Path:
    """The bundle's published files (configs, docs, LICENSE) in a fresh folder to train in."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("models", "eval", "logs", "__pycache__"))
    return target


def _curve(log: Path) -> list[tuple[int, float]]:
    return [(int(e), float(v)) for e, v in CURVE.findall(log.read_text(encoding="utf-8", errors="replace"))]


def run_demo(demo: DemoRun, recipe: CpuRecipe, repo: Path, out: Path, steps: StepLog) -> dict[str, Any]:
    """Phantoms, training, inference and scoring of one bundle; returns what the report shows."""
    start = time.perf_counter()
    dataset_dir, datalist = recipe.phantoms.write(out / "data" / recipe.bundle, **demo.phantoms)
    steps.rows.append((f"{recipe.bundle}: phantoms + datalist", time.perf_counter() - start))
    bundle = _copy_bundle(recipe.bundle_dir(repo / "bundles"), out / "bundles" / recipe.bundle)
    logs = out / "logs" / recipe.bundle
    prepare = recipe.prepare
    if demo.classes is not None and prepare is not None:
        prepare = text_embeddings_writer(class_names=demo.classes)
    extra = {**(prepare(bundle, bundle) if prepare else {}), **dict(demo.network)}
    train = recipe.training(bundle, dataset_dir, datalist, bundles_dir=out / "bundles", **extra, **dict(demo.training))
    steps.run(f"{recipe.bundle}: training (CPU recipe)", train, logs / "train.log")
    # the published bundle predicts with inference.json alone (as the model zoo runs it): the
    # recipe's network, spacing, patch and class settings go into it
    recipe_files = BundleRun(bundle, list(recipe.train_configs[1:]), {}).config_paths()  # presets, cpu.json
    baked = {**read_override_files(bundle, recipe_files),
             **extra, **dict(recipe.eval_overrides)}
    bake_overrides(bundle, baked)
    if baked.get("predict_classes"):  # the universal model publishes its trained heads only
        declare_output_channels(bundle, list(baked["predict_classes"]))
    evaluate = recipe.evaluating(bundle, dataset_dir, datalist, bundles_dir=out / "bundles", **extra)
    steps.run(f"{recipe.bundle}: inference + evaluation", evaluate, logs / "evaluate.log")
    summary = summary_of(bundle / "eval" / "report")
    dsc = next(iter(summary["metrics"]["dsc"].values()))
    case = load_split(datalist, "test", dataset_dir)[0]
    return {"recipe": recipe, "demo": demo, "dsc": dsc, "curve": _curve(logs / "train.log"), "bundle": bundle,
            "image": Path(case["image"]), "prediction": prediction_path(bundle / "eval", case["case_id"]),
            "report": bundle / "eval" / "report"}


def _overlay(image: Path, label: Path, png: Path, labels: str) -> bool:
    # matplotlib is imported only when a figure is drawn
    from medsegzoo.inference.overlay import save_overlay_png

    if not label.is_file():
        return False
    png.parent.mkdir(parents=True, exist_ok=True)
    save_overlay_png(str(image), str(label), str(png), labels=labels)
    return True


def _network_note(demo: DemoRun) -> str:
    """What the demo's network has that the recipe's has not (a narrower backbone, fewer heads)."""
    parts = []
    if demo.network:
        parts.append(f"network settings {dict(demo.network)}")
    if demo.classes is not None:
        parts.append(f"the heads of the {len(demo.classes)} classes its phantoms label only")
    return (", with " + " and ".join(parts)) if parts else ""


def _section(result: dict[str, Any], out: Path) -> list[str]:
    recipe: CpuRecipe = result["recipe"]
    demo: DemoRun = result["demo"]
    dsc = result["dsc"]
    lines = [f"## {recipe.title} (`bundles/{recipe.bundle}`)", "",
             f"Trained with `configs/cpu.json` shortened by {dict(demo.training)}{_network_note(demo)} on a "
             f"{recipe.phantoms.layout} phantom set of site {recipe.phantoms.site} ({dict(demo.phantoms)}); scored "
             f"on its held-out test patients. Held-out mean DSC over {recipe.classes}: **{dsc['mean_c']:.3f}**.", "",
             "| class | DSC |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in dsc["per_class"].items()]
    if result["curve"]:
        lines += ["", "Validation mean Dice during training: "
                  + ", ".join(f"epoch {e}: {v:.3f}" for e, v in result["curve"]) + "."]
    png = out / "figures" / f"{recipe.bundle}_prediction.png"
    if _overlay(result["image"], result["prediction"], png, demo.labels):
        lines += ["", f"![{recipe.bundle} prediction]({png.relative_to(out)})"]
    lines += ["", f"Full report: `{os.path.relpath(result['report'], out)}/summary.md`.", ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--repo", default=".", help="repository root holding bundles/ (default: .)")
    parser.add_argument("--bundles", nargs="*", default=None, help="bundles to run (default: all four)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="bundles trained at once, the CPU's cores shared among them (default: 2)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    repo = Path(args.repo).resolve()
    jobs = max(1, args.jobs)
    # the cores are shared among the bundles trained at once (OMP_NUM_THREADS = cores // jobs): on
    # 2 cores two one-thread runs did 1.15-1.17x the work per second of one two-thread run
    # (docs/performance.md), since these small 3D convolutions do not split well over threads
    steps = StepLog(threads=max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    start = time.perf_counter()
    chosen = [demo for demo in DEMO_RUNS if args.bundles is None or demo.bundle in args.bundles]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_demo, demo, get_recipe(demo.bundle), repo, out, steps) for demo in chosen]
        results = [future.result() for future in futures]
    total = time.perf_counter() - start
    report = ["# medsegzoo demo report", "",
              "Every bundle below was trained on this machine's CPU with its CPU recipe "
              "(`configs/cpu.json`, bf16 autocast, a shortened schedule) on synthetic phantoms of one "
              "acquisition site, then ran its own `inference.json` + `evaluate.json` on held-out patients. "
              "The trained bundles are in `bundles/` (weights in each `models/`): "
              "`medsegzoo zoo pack --bundles-dir " + f"{out.name}/bundles` publishes them.", "",
              "| bundle | held-out mean DSC | classes |", "|---|---|---|"]
    report += [f"| {r['recipe'].bundle} | {r['dsc']['mean_c']:.3f} | {r['recipe'].classes} |" for r in results]
    report.append("")
    for result in results:
        report += _section(result, out)
    report += ["## Steps", "", "| step | seconds |", "|---|---|"]
    report += [f"| {what} | {sec:.0f} |" for what, sec in steps.rows]
    report += ["", f"Total demo time: {total:.0f} s.", ""]
    path = atomic_write_text(out / "REPORT.md", "\n".join(report))
    for r in results:
        print(f"{r['recipe'].bundle}: held-out mean DSC {r['dsc']['mean_c']:.3f}")
    print(f"\nDemo report: {path} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
