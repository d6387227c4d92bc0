"""Whole-case inference of every bundle: stock MONAI fp32 against the bundle's own fast path, in one process.

For each bundle, with trained weights (``--checkpoint NAME=PATH``, or the bundle's CPU recipe
trained here at a short schedule into the work folder), this writes one phantom of about
512 x 512 x 300 voxels at 0.8 x 0.8 x 2.5 mm (stored LPS; the recipe's anatomy and modality:
an abdominal CT, or TCSeg's left-atrium MR, on the same grid; the phantom's cubic 410 mm field
of view is stretched along z to 750 mm) and runs the bundle's whole inference pipeline on it
twice (``inference.json`` + presets + ``cpu.json``, parsed as ``python -m monai.bundle run``
parses them, the evaluator's ``run`` timed: weights loading, image loading, preprocessing,
sliding windows, post-processing, writing):

* **stock**: the same config with MONAI's ``SlidingWindowInferer`` (same windows, overlap,
  blending, ``sw_batch_size``; STU-Net keeps its mirroring), ``amp`` false (float32), and
  MONAI's ``Invertd`` + ``AsDiscreted(argmax=True)`` in place of our ``InvertArgmaxd``;
* **ours**: the config as shipped (bf16 autocast on the CPU, windows outside the body
  skipped, channels-last windows where the bundle sets it, probabilities inverted and
  argmaxed a slice at a time).

It prints per bundle the wall and CPU seconds of both, the speed-up (stock / ours, wall), the
windows computed and skipped, and the Dice of our label maps against the stock fp32 label
maps for every class either predicts (the minimum over classes is the agreement). The
agreement is measured where the model segments: on the held-out test phantoms of the recipe's
own phantom set (both paths run on them, Dice pooled over the cases). The large case is out of
the CPU recipes' training distribution (their phantoms have a 160 mm field of view, so every
organ here is 2.5 times larger and, with the z stretch, longer still): their label maps on it
are not anatomy, and a few boundary changes move whole blobs, so its Dice is printed too but
says little about the fast path. The last
line reads ``inference speedup min X.XX, agreement min Y.YYYY``. Goal: >= 3x per bundle with
agreement >= 0.99 per class.

The OpenMP wait policy is set to PASSIVE (before torch loads) unless the environment sets
it: on a CPU shared with other processes, spinning OpenMP threads make a two-thread run
several times slower than one thread, which would measure the scheduler rather than the
methods. Run::

    .venv/bin/python benchmarks/bench_inference.py                        # all four, trains the recipes (hours on 2 cores)
    .venv/bin/python benchmarks/bench_inference.py --bundles tct --checkpoint tct=runs/tct/models/model.pt
    .venv/bin/python benchmarks/bench_inference.py --bundles tcseg --shape 128 128 64   # a quick look
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first import of torch

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents

from medsegzoo.bundle_runs import BundleRun, parse_bundle, run_in_subprocess
from medsegzoo.data.io import save_volume
from medsegzoo.data.phantoms.generator import make_phantom
from medsegzoo.data.phantoms.layouts import resolve_layout
from medsegzoo.data.phantoms.sites import get_site, to_orientation
from medsegzoo.data.predictions import prediction_path
from medsegzoo.inference.sliding_window import BodySlidingWindowInferer
from medsegzoo.recipes import CPU_RECIPES, CpuRecipe, get_recipe, prepare_recipe_data

CASE_ID = "bench_case"
FAST_INFERER = "medsegzoo.inference.sliding_window.BodySlidingWindowInferer"
FAST_INVERT = "InvertArgmaxd"
STOCK_KEYS = ("roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale", "padding_mode", "cval")
# the keys of each recipe's schedule that --schedule scales
SCHEDULE_KEYS = ("max_epochs", "num_iterations")


def write_case(recipe: CpuRecipe, work: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float],
               seed: int) -> tuple[Path, Path]:
    """The benchmark phantom of a recipe's anatomy (see the module docstring) and its datalist.

    One phantom per anatomy and modality, written once under ``work/cases`` and shared by the
    bundles that read it.
    """
    spec = resolve_layout(recipe.phantoms.layout)
    folder = work / "cases" / f"{spec.anatomy}_{spec.modality.lower()}"
    datalist = folder / "datalist.json"
    if datalist.is_file():
        return folder, datalist
    fov = shape[0] * spacing[0]
    site = dataclasses.replace(get_site(1), spacing=tuple(fov / n for n in shape), crop_top=0.0, crop_bottom=0.0)
    phantom = make_phantom(size=round(fov), seed=seed, site=site, modality=spec.modality, tumors=False,
                           anatomy=spec.anatomy)
    affine = phantom.affine.copy()
    affine[:3, :3] = np.diag(spacing)  # the same voxels, 2.5 mm apart along z
    array = np.rint(phantom.image).astype(np.int16) if spec.modality == "CT" else phantom.image.astype(np.float32)
    array, affine = to_orientation(array, affine, "LPS")
    image = save_volume(folder / f"{CASE_ID}.nii.gz", array, affine)
    entry = {"case_id": CASE_ID, "image": image.name, "dataset": recipe.phantoms.layout, "labeled_classes": []}
    datalist.write_text(json.dumps({"name": "bench", "test": [entry]}, indent=2))
    return folder, datalist


def companions(recipe: CpuRecipe, model_file: Path) -> dict[str, Any]:
    """Overrides for a given checkpoint: its folder holds what inference reads beside it."""
    values: dict[str, Any] = {"model_file": str(model_file), "ckpt_dir": str(model_file.parent)}
    embeddings = model_file.parent / "text_embeddings.pt"
    if recipe.prepare is not None and embeddings.is_file():  # the universal model: width and classes of the cache
        payload = torch.load(embeddings, map_location="cpu", weights_only=True)
        values.update(text_embedding_width=int(payload["width"]), class_names=list(payload["classes"]))
    return values


def train_recipe(recipe: CpuRecipe, work: Path, schedule: float, bundles_dir: Path | None) -> dict[str, Any]:
    """Train the recipe at ``schedule`` times its epochs/iterations; returns the inference overrides."""
    dataset_dir, datalist = prepare_recipe_data(recipe, work)
    root = work / "run"
    extra = recipe.prepare(recipe.bundle_dir(bundles_dir), root) if recipe.prepare else {}
    cpu = json.loads((recipe.bundle_dir(bundles_dir) / "configs" / "cpu.json").read_text())
    short = {k: max(1, round(cpu[k] * schedule)) for k in SCHEDULE_KEYS if k in cpu}
    start = time.perf_counter()
    run_in_subprocess(recipe.training(root, dataset_dir, datalist, bundles_dir, **extra, **short),
                      log=work / "train.log", env={"HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"})
    print(f"  trained {recipe.bundle} ({short}) in {time.perf_counter() - start:.0f} s", flush=True)
    return {"bundle_root": str(root), **extra}


def stock_postprocessing(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config's post-processing with MONAI's ``Invertd`` + ``AsDiscreted`` in place of our ``InvertArgmaxd``."""
    post = config.get("postprocessing")
    if not isinstance(post, dict) or not any(isinstance(t, dict) and str(t.get("_target_")).endswith(FAST_INVERT)
                                             for t in post.get("transforms", [])):
        return None
    transforms = []
    for t in post["transforms"]:
        if isinstance(t, dict) and str(t.get("_target_")).endswith(FAST_INVERT):
            transforms += [{"_target_": "Invertd", "keys": t["keys"], "transform": t["transform"],
                            "orig_keys": t.get("orig_keys", "image"), "nearest_interp": False, "to_tensor": True},
                           {"_target_": "AsDiscreted", "keys": t["keys"], "argmax": True}]
        else:
            transforms.append(t)
    return {**post, "transforms": transforms}


def stock_inferer(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The config key of the fast sliding window and MONAI's plain inferer with the same settings."""
    key = next(k for k in ("sliding_window", "inferer") if isinstance(config.get(k), dict)
               and config[k].get("_target_") == FAST_INFERER)
    stock = {"_target_": "SlidingWindowInferer", **{k: v for k, v in config[key].items() if k in STOCK_KEYS}}
    return key, stock


class StageClock:
    """Wall seconds of the evaluator's stages: loading + preprocessing, sliding window, post-processing + writing."""

    def __init__(self) -> None:
        self.seconds = {"load": 0.0, "infer": 0.0, "post": 0.0}
        self._last = 0.0

    def _mark(self, stage: str | None) -> Any:
        def handler(engine: Any) -> None:
            now = time.perf_counter()
            if stage is not None:
                self.seconds[stage] += now - self._last
            self._last = now

        return handler

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._mark(None))
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._mark("load"))
        engine.add_event_handler(Events.ITERATION_STARTED, self._mark(None))
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._mark("infer"))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._mark("post"))

    @staticmethod
    def describe(seconds: dict[str, float]) -> str:
        return f"load+pre {seconds['load']:.1f} s, windows {seconds['infer']:.1f} s, post+write {seconds['post']:.1f} s"


def run_pipeline(recipe: CpuRecipe, overrides: dict[str, Any], out: Path, stock: bool,
                 bundles_dir: Path | None) -> dict[str, Any]:
    """Parse the bundle's inference configs and run its evaluator once; returns timings and counts."""
    configs = ["inference.json", *recipe.presets, "cpu.json"]
    run = BundleRun(recipe.bundle_dir(bundles_dir), configs, {**overrides, "output_dir": str(out)})
    if stock:
        config = parse_bundle(run).config
        key, inferer = stock_inferer(config)
        post = stock_postprocessing(config)
        run = run.with_overrides(amp=False, **{key: inferer}, **({"postprocessing": post} if post else {}))
    parser = parse_bundle(run)
    parser.get_parsed_content("initialize")
    evaluator = parser.get_parsed_content("evaluator")
    stages = StageClock()
    stages.attach(evaluator)
    wall, cpu = time.perf_counter(), time.process_time()
    parser.get_parsed_content("run")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    windows = None
    inferer = evaluator.inferer
    for _ in range(3):
        if isinstance(inferer, BodySlidingWindowInferer):
            windows = inferer.windows
            break
        inferer = getattr(inferer, "inferer", None)
    del parser, evaluator
    gc.collect()
    return {"wall": wall, "cpu": cpu, "windows": windows, "stages": dict(stages.seconds)}


def agreement(pairs: list[tuple[Path, Path]]) -> dict[int, float]:
    """Dice of our label maps against the stock ones, pooled over cases, for every label value either holds (0 excluded)."""
    overlap: dict[int, float] = {}
    sizes: dict[int, float] = {}
    for ours, stock in pairs:
        a = np.asarray(nib.load(str(ours)).dataobj)
        b = np.asarray(nib.load(str(stock)).dataobj)
        if a.shape != b.shape:
            raise SystemExit(f"{ours} and {stock} differ in shape: {a.shape} / {b.shape}")
        for value in (set(np.unique(a)) | set(np.unique(b))) - {0}:
            x, y = a == value, b == value
            overlap[int(value)] = overlap.get(int(value), 0.0) + float(np.logical_and(x, y).sum())
            sizes[int(value)] = sizes.get(int(value), 0.0) + float(x.sum() + y.sum())
    return {value: 2.0 * overlap[value] / sizes[value] for value in sorted(sizes)}


def held_out_agreement(recipe: CpuRecipe, overrides: dict[str, Any], folder: Path, work: Path,
                       bundles_dir: Path | None) -> dict[int, float]:
    """Agreement on the recipe's own held-out phantoms, where the trained model segments (see the docstring)."""
    dataset_dir, datalist = prepare_recipe_data(recipe, work / "recipe_phantoms" / recipe.bundle)
    settings = {**overrides, "dataset_dir": str(dataset_dir), "datalist": str(datalist), "infer_split": "test"}
    for name, stock in (("ours", False), ("stock", True)):
        run_pipeline(recipe, settings, folder / f"held_out_{name}", stock=stock, bundles_dir=bundles_dir)
    cases = [entry["case_id"] for entry in json.loads(datalist.read_text())["test"]]
    return agreement([(prediction_path(folder / "held_out_ours", c), prediction_path(folder / "held_out_stock", c))
                      for c in cases])


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` pairs (NAME a bundle name or prefix) -> bundle folder name -> model file."""
    found = {}
    for item in items:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--checkpoint {item!r}: use NAME=PATH (e.g. tct=runs/tct/models/model.pt)")
        model = Path(path)
        model = model / "models" / "model.pt" if model.is_dir() else model
        if not model.is_file():
            raise SystemExit(f"--checkpoint {item!r}: {model} is not a file")
        found[get_recipe(name).bundle] = model
    return found


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` pairs (a value that is not JSON is taken as a string)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: use KEY=JSON (e.g. sw_crop_to_body=false)")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="*", default=list(CPU_RECIPES), help="bundle names or prefixes")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="trained weights of a bundle (model.pt, or a trained bundle_root); repeatable")
    parser.add_argument("--schedule", type=float, default=0.5, help="share of the CPU recipe's schedule to train")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], help="phantom voxels")
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 2.5], help="phantom spacing, mm")
    parser.add_argument("--seed", type=int, default=7, help="phantom patient")
    parser.add_argument("--work-dir", default=None, help="keep phantoms, runs and predictions here")
    parser.add_argument("--bundles-dir", default=None, help="bundles folder (default: the repository's bundles/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="an override of our path only, to take one of its parts out (e.g. sw_crop_to_body=false, "
                             "amp=false); repeatable")
    args = parser.parse_args(argv)
    ours_overrides = parse_settings(args.set)
    bundles_dir = Path(args.bundles_dir) if args.bundles_dir else None

    checkpoints = parse_checkpoints(args.checkpoint)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_inference_"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load average {os.getloadavg()[0]:.1f}; work folder {work}", flush=True)
    rows = []
    for name in args.bundles:
        recipe = get_recipe(name)
        folder = work / recipe.bundle
        folder.mkdir(parents=True, exist_ok=True)
        if recipe.bundle in checkpoints:
            weights = {"bundle_root": str(folder / "run"), **companions(recipe, checkpoints[recipe.bundle])}
        else:
            weights = train_recipe(recipe, folder / "train", args.schedule, bundles_dir)
        dataset_dir, datalist = write_case(recipe, work, tuple(args.shape), tuple(args.spacing), args.seed)
        # read the case once so that neither path pays for the first read from disk
        (dataset_dir / f"{CASE_ID}.nii.gz").read_bytes()
        overrides = {**dict(recipe.overrides), **dict(recipe.eval_overrides), **weights,
                     "dataset_dir": str(dataset_dir), "datalist": str(datalist), "num_workers": 0}
        # the held-out phantoms first: both paths are then warm (imports, oneDNN kernels) when timed
        scores = held_out_agreement(recipe, {**overrides, **ours_overrides}, folder, work, bundles_dir)
        ours = run_pipeline(recipe, {**overrides, **ours_overrides}, folder / "ours", stock=False, bundles_dir=bundles_dir)
        print(f"  {recipe.bundle}: ours {ours['wall']:.1f} s", flush=True)
        stock = run_pipeline(recipe, overrides, folder / "stock", stock=True, bundles_dir=bundles_dir)
        big = agreement([(prediction_path(folder / "ours", CASE_ID), prediction_path(folder / "stock", CASE_ID))])
        row = {"bundle": recipe.bundle, "stock": stock, "ours": ours, "speedup": stock["wall"] / ours["wall"],
               "dsc": scores, "agreement": min(scores.values()) if scores else float("nan"), "big_case_dsc": big}
        rows.append(row)
        windows = ours["windows"]
        print(f"{recipe.bundle}: stock {stock['wall']:.1f} s (cpu {stock['cpu']:.1f} s), ours {ours['wall']:.1f} s "
              f"(cpu {ours['cpu']:.1f} s), speed-up {row['speedup']:.2f}x; {windows.describe() if windows else ''}\n"
              f"  stock: {StageClock.describe(stock['stages'])}; ours: {StageClock.describe(ours['stages'])}\n"
              f"  DSC vs stock per class, held-out recipe phantoms {', '.join(f'{k}: {v:.4f}' for k, v in scores.items())}\n"
              f"  DSC vs stock per class, this case (out of the model's training distribution) "
              f"{', '.join(f'{k}: {v:.4f}' for k, v in big.items())}", flush=True)

    print("\n| bundle | stock fp32 (s) | ours (s) | speed-up | stock CPU s / ours CPU s | windows skipped | "
          "min DSC vs stock, held-out phantoms (classes) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        w = r["ours"]["windows"]
        skipped = f"{w.skipped} of {w.total}" if w else "-"
        print(f"| {r['bundle']} | {r['stock']['wall']:.1f} | {r['ours']['wall']:.1f} | {r['speedup']:.2f}x | "
              f"{r['stock']['cpu'] / r['ours']['cpu']:.2f}x | {skipped} | {r['agreement']:.4f} ({len(r['dsc'])}) |")
    print(f"\ninference speedup min {min(r['speedup'] for r in rows):.2f}, "
          f"agreement min {min(r['agreement'] for r in rows):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
