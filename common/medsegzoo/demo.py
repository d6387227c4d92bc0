"""``make demo``: the whole project at smoke scale on built-in synthetic data.

Steps (each a real command a user would run, executed in a subprocess so the demo exercises
exactly the command-line paths):

1. ``medsegzoo phantoms`` writes small phantom data sets in several public layouts and sites;
2. ``medsegzoo datalist`` reads them back into MONAI datalists;
3. every bundle found under ``bundles/`` with a demo recipe trains at smoke scale with
   ``python -m monai.bundle run``, runs its inference and evaluate configs;
4. ``REPORT.md`` in the output folder summarises what was generated and measured, with PNG
   overlays of phantoms and predictions.

Run from the repository root: ``python -m medsegzoo.demo --out demo_output``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medsegzoo.utils.atomic import atomic_write_text

# (data set folder name, layout, cases, site, extra phantoms arguments)
DEMO_DATASETS: list[tuple[str, str, int, int, list[str]]] = [
    ("btcv_site0", "btcv", 4, 0, []),
    ("kits19_site1", "kits19", 4, 1, []),
    ("msd_spleen_site2", "msd_spleen", 3, 2, []),
    ("abdomenatlas_site3", "abdomenatlas", 3, 3, []),
]
PHANTOM_SIZE = 48


@dataclass
class StepLog:
    """Commands run by the demo and their wall-clock times, for the report."""

    rows: list[tuple[str, float, int]] = field(default_factory=list)

    def run(self, cmd: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        """Run ``cmd``; on failure print its output and stop the demo with its exit code."""
        shown = " ".join(shlex.quote(c) for c in cmd)
        print(f"\n$ {shown}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, text=True, capture_output=True)
        elapsed = time.perf_counter() - start
        self.rows.append((shown, elapsed, proc.returncode))
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        print("\n".join(tail), flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"demo step failed (exit {proc.returncode}): {shown}")


def _medsegzoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsegzoo", *args]


def generate_data(out: Path, log: StepLog) -> list[dict]:
    """Steps 1-2: phantoms in several layouts and sites, read back as datalists."""
    summaries = []
    for name, layout, cases, site, extra in DEMO_DATASETS:
        root = out / "data" / name
        log.run(_medsegzoo("phantoms", str(root), "--layout", layout, "--cases", str(cases),
                           "--size", str(PHANTOM_SIZE), "--site", str(site), "--seed", str(site),
                           "--overwrite", *extra))
        datalist_path = out / "datalists" / f"{name}.json"
        log.run(_medsegzoo("datalist", layout, str(root), "--out", str(datalist_path)))
        datalist = json.loads(datalist_path.read_text())
        entries = [e for key in ("training", "validation", "test", "unlabeled") for e in datalist.get(key, [])]
        classes = sorted({c for e in entries for c in e.get("labeled_classes", [])})
        summaries.append({
            "name": name, "layout": layout, "site": site, "root": root,
            "datalist": datalist_path, "cases": len(entries), "classes": classes,
            "first": entries[0] if entries else None, "base": Path(datalist.get("dataset_dir", root)),
        })
    return summaries


@dataclass
class BundleDemo:
    """How the demo runs one bundle at smoke scale.

    Attributes:
        bundle: folder name under ``bundles/``.
        title: heading in the report.
        prepare: writes the bundle's phantom data; returns the ``--key value`` overrides
            (``dataset_dir``, ``datalist``, ...) shared by every step.
        steps: ``(run id, config files)`` in order; ``bundle_root`` is set by the demo.
        report: path of the evaluation summary (Markdown) relative to ``bundle_root``.
        labels: label system of the predictions (legend of the overlay).
        env: extra environment of the bundle's processes.
        predictions: glob (relative to ``bundle_root``) of the predicted label maps.
        postfix: what the bundle appends to an image's name to name its prediction.
        find_overlay: ``(bundle_root, overrides) -> (prediction, image)`` for bundles whose
            predictions do not mirror the data set's folder tree.
    """

    bundle: str
    title: str
    prepare: Callable[[Path, StepLog], dict[str, str]]
    steps: list[tuple[str, list[str]]]
    report: str
    labels: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    predictions: str = "eval/**/*_seg.nii.gz"
    postfix: str = "_seg"
    find_overlay: Callable[[Path, dict[str, str]], tuple[Path, Path] | None] | None = None


def _phantom_datalist(out: Path, log: StepLog, folder: str, layout: str, cases: int, seed: int,
                      site: int, split: str | None = "0.5/0.25/0.25", size: int = PHANTOM_SIZE,
                      extra: Sequence[str] = ()) -> tuple[Path, Path]:
    """``medsegzoo phantoms`` + ``medsegzoo datalist`` into ``out/folder``; returns (root, datalist)."""
    root = out / folder
    log.run(_medsegzoo("phantoms", str(root), "--layout", layout, "--cases", str(cases), "--size",
                       str(size), "--seed", str(seed), "--site", str(site), "--overwrite", "--quiet", *extra))
    datalist = out / f"{folder}.json"
    log.run(_medsegzoo("datalist", layout, str(root), "--out", str(datalist),
                       *(["--split", split] if split else [])))
    return root, datalist


def _prepare_tct(out: Path, log: StepLog) -> dict[str, str]:
    """Partially labeled sets from three sites (kidneys, liver, spleen) in one datalist."""
    from medsegzoo.data.datalist import combine_datalists

    root = out / "tct_data"
    parts = [("kits19", 1), ("msd_liver", 2), ("msd_spleen", 0)]
    pieces = [_phantom_datalist(root, log, f"{layout}_{site}", layout, 4, site + 1, site)
              for layout, site in parts]
    datalist = combine_datalists([(dl, ds) for ds, dl in pieces], root / "datalist.json", root, name="tct_demo")
    return {"dataset_dir": str(root), "datalist": str(datalist)}


def _prepare_tcseg(out: Path, log: StepLog) -> dict[str, str]:
    """BraTS-like FLAIR phantoms (NIfTI), few labeled cases."""
    root, datalist = _phantom_datalist(out, log, "tcseg_brats", "brats2019", 8, 0, 0, size=40)
    return {"dataset_dir": str(root), "datalist": str(datalist)}


def _prepare_stunet(out: Path, log: StepLog) -> dict[str, str]:
    """One FLARE22-like site: STU-Net trains on it (A-Eval protocol 1 at smoke scale)."""
    root, datalist = _phantom_datalist(out, log, "stunet_flare22", "flare22", 4, 0, 0, split="0.5/0.0/0.5",
                                       extra=["--no-tumors"])
    return {"dataset_dir": str(root), "datalist": str(datalist)}


UNIVERSAL_DATALISTS = ["btcv_site0", "kits19_site1", "msd_spleen_site2", "abdomenatlas_site3"]


def _prepare_universal(out: Path, log: StepLog) -> dict[str, str]:
    """The demo's four partially/fully labeled phantom sets (written in step 1), one datalist each."""
    paths = [str(out.parent / "datalists" / f"{name}.json") for name in UNIVERSAL_DATALISTS]
    return {"datalist": "[" + ",".join(f"'{p}'" for p in paths) + "]",
            "val_split": "training", "infer_split": "training"}


def _universal_overlay(bundle_root: Path, overrides: dict[str, str]) -> tuple[Path, Path] | None:
    """Predictions are named ``<case_id>.nii.gz``: find a KiTS case (it has a tumor class)."""
    for name in ("kits19_site1", *UNIVERSAL_DATALISTS):
        datalist = json.loads((bundle_root.parents[1] / "datalists" / f"{name}.json").read_text())
        for entry in datalist.get("training", []):
            pred = bundle_root / "predictions" / f"{entry['case_id']}.nii.gz"
            if pred.is_file():
                return pred, Path(datalist["dataset_dir"]) / entry["image"]
    return None


STUNET_CONFIGS = ["configs/train.json", "configs/smoke.json"]
TCSEG_CONFIGS = ["configs/train.json", "configs/presets/brats2019.json", "configs/smoke.json"]

UNIVERSAL_CONFIGS = ["configs/train.json", "configs/smoke.json"]


def _train_infer_evaluate(configs: list[str]) -> list[tuple[str, list[str]]]:
    """The three runs of a bundle whose inference/evaluate configs extend its training configs."""
    return [
        ("training", configs),
        ("inference", [*configs, "configs/inference.json"]),
        ("evaluating", [*configs, "configs/evaluate.json"]),
    ]


BUNDLE_DEMOS: list[BundleDemo] = [
    BundleDemo(
        bundle="tct_partial_label_segmentation",
        title="TCT: partially labeled sets -> 5 organs",
        prepare=_prepare_tct,
        steps=[
            ("training", ["configs/train.json", "configs/smoke.json"]),
            ("inference", ["configs/train.json", "configs/inference.json", "configs/smoke.json"]),
            ("evaluating", ["configs/train.json", "configs/inference.json", "configs/evaluate.json",
                            "configs/smoke.json"]),
        ],
        report="eval/report_test/summary.md",
        labels="tct5",
    ),
    BundleDemo(
        bundle="tcseg_semi_supervised_segmentation",
        title="TCSeg: few labeled + many unlabeled scans",
        prepare=_prepare_tcseg,
        steps=_train_infer_evaluate(TCSEG_CONFIGS),
        report="eval/report_last/summary.md",
        env={"OMP_NUM_THREADS": "1"},
    ),
    BundleDemo(
        bundle="clip_universal_segmentation",
        title="CLIP-driven universal model: text-conditioned heads over 32 classes",
        prepare=_prepare_universal,
        steps=[
            # random-weight open_clip at smoke scale (no weights can be downloaded offline)
            ("text_embeddings", ["configs/text_embeddings.json", "configs/smoke.json"]),
            ("training", UNIVERSAL_CONFIGS),
            ("inference", [*UNIVERSAL_CONFIGS[:1], "configs/inference.json", "configs/smoke.json"]),
            ("evaluating", [*UNIVERSAL_CONFIGS[:1], "configs/inference.json", "configs/evaluate.json",
                            "configs/smoke.json"]),
        ],
        report="eval/report/summary.md",
        labels="universal32",
        find_overlay=_universal_overlay,
    ),
    BundleDemo(
        bundle="stunet_cross_dataset_evaluation",
        title="STU-Net-S: nnU-Net-style training, A-Eval evaluation",
        prepare=_prepare_stunet,
        steps=_train_infer_evaluate(STUNET_CONFIGS),
        report="eval/report/summary.md",
        labels="aeval8",
        predictions="predictions/**/*_seg.nii.gz",
    ),
]


def _config_arg(files: Sequence[str]) -> str:
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def _prediction_and_image(bundle_root: Path, data_root: Path, pattern: str = "eval/**/*_seg.nii.gz",
                          postfix: str = "_seg") -> tuple[Path, Path] | None:
    """The first prediction matching ``pattern`` whose image is found under ``data_root``.

    Predictions mirror the data set's folder tree (``<tree>/<image>_seg.nii.gz``); the image is
    the longest trailing part of that path, with ``postfix`` removed, that exists in the data.
    """
    for pred in sorted(bundle_root.glob(pattern)):
        name = pred.name.replace(f"{postfix}.nii.gz", ".nii.gz")
        parts = pred.relative_to(bundle_root).parts[:-1]
        for start in range(len(parts) + 1):
            image = data_root.joinpath(*parts[start:], name)
            if image.is_file():
                return pred, image
    return None


def run_bundle_demo(demo: BundleDemo, repo: Path, out: Path, log: StepLog) -> list[str]:
    """Train, infer and evaluate one bundle at smoke scale; return its report section."""
    bundle_dir = repo / "bundles" / demo.bundle
    bundle_root = out / "bundles" / demo.bundle
    overrides = {**demo.prepare(out / "data", log), "bundle_root": str(bundle_root)}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **demo.env}
    for run_id, configs in demo.steps:
        cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", _config_arg(configs)]
        for key, value in overrides.items():
            cmd += [f"--{key}", value]
        log.run(cmd, cwd=bundle_dir, env=env)
    lines = [f"## {demo.title}", "", f"Bundle `bundles/{demo.bundle}` at smoke scale "
             "(a few iterations on phantoms; see its docs/README.md for the paper's numbers).", ""]
    summary = bundle_root / demo.report
    if summary.is_file():
        body = summary.read_text().splitlines()
        prefix = os.path.relpath(summary.parent, out)
        # drop the summary's own title, shift its headings one level down, and point its
        # relative image links (`![x](box_dsc.png)`) at the report folder
        for line in body[1:]:
            line = "#" + line if line.startswith("#") else line
            lines.append(re.sub(r"\]\((?!/|https?:)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", line))
    else:
        lines += [f"(no evaluation summary at `{summary}`)"]
    if demo.find_overlay is not None:
        found = demo.find_overlay(bundle_root, overrides)
    else:
        found = _prediction_and_image(bundle_root, Path(overrides["dataset_dir"]), demo.predictions, demo.postfix)
    if found:
        pred, image = found
        png = out / "figures" / f"{demo.bundle}_prediction.png"
        if _overlay(image, pred, png, demo.labels):
            lines += ["", f"![{demo.bundle} prediction]({png.relative_to(out)})", ""]
    return lines


def _overlay(image: Path, label: Path, png: Path, labels: str | None = None) -> bool:
    """Write a PNG overlay with the shared helper; report (not fail) when it is unavailable."""
    try:
        from medsegzoo.inference.overlay import save_overlay_png
    except ImportError:
        return False
    save_overlay_png(str(image), str(label), str(png), labels=labels)
    return True


def data_section(out: Path, summaries: list[dict]) -> list[str]:
    """Markdown for the generated data sets, with one overlay per data set that has a label map."""
    lines = ["## Synthetic data", "",
             f"Phantoms of {PHANTOM_SIZE}^3 voxels written by `medsegzoo phantoms` in each public layout, "
             "read back by `medsegzoo datalist`.", "",
             "| data set | layout | site | cases | labeled classes (canonical) |", "|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['name']} | {s['layout']} | {s['site']} | {s['cases']} | {', '.join(s['classes'])} |")
    lines.append("")
    for s in summaries:
        first = s["first"]
        if not first or "label" not in first:
            continue
        image, label = s["base"] / first["image"], s["base"] / first["label"]
        png = out / "figures" / f"{s['name']}_phantom.png"
        if _overlay(image, label, png, s["layout"]):
            lines += [f"![{s['name']} phantom]({png.relative_to(out)})", ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--repo", default=".", help="repository root holding bundles/ (default: .)")
    parser.add_argument("--bundles", nargs="*", default=None,
                        help="bundles to run (default: every bundle with a demo recipe)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    log = StepLog()
    start = time.perf_counter()

    summaries = generate_data(out, log)
    report = ["# medsegzoo demo report", "",
              "Everything below was produced by `make demo` on synthetic phantoms, at smoke scale: "
              "the numbers show that the pipelines run end to end, not how well the methods work "
              "(see each bundle's docs/README.md for the phantom experiments).", ""]
    report += data_section(out, summaries)
    repo = Path(args.repo).resolve()
    for demo in BUNDLE_DEMOS:
        if args.bundles is not None and demo.bundle not in args.bundles:
            continue
        report += run_bundle_demo(demo, repo, out, log)

    report += ["## Commands run", "", "| command | seconds | exit |", "|---|---|---|"]
    report += [f"| `{cmd}` | {sec:.1f} | {rc} |" for cmd, sec, rc in log.rows]
    report += ["", f"Total demo time: {time.perf_counter() - start:.0f} s.", ""]
    path = atomic_write_text(out / "REPORT.md", "\n".join(report))
    print(f"\nDemo report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
