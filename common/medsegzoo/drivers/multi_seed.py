"""TCSeg's multi-run protocol: N seeds, last and best checkpoints, median and maximum.

One command trains a bundle with several seeds, runs its inference with the last weights of
each run (``models/model.pt``) and, only when the datalist has a validation split, with the
best-on-validation weights (``models/model_best.pt``), scores every prediction folder with
DSC, 95HD and ASD in mm (:func:`medsegzoo.evaluation.scoring.score_predictions`), and writes
the median/maximum table of :func:`medsegzoo.evaluation.protocols.multirun.multirun_summary`::

    python -m medsegzoo.drivers.multi_seed --bundle bundles/tcseg_semi_supervised_segmentation \\
        --dataset_dir /data/LA --datalist /data/LA/datalist.json --out runs/la10 --seeds 5 \\
        --configs configs/presets/la.json --set labeled_ratio=0.1

Each seed trains in its own process (``python -m monai.bundle run training``), so runs do
not share global random state, and writes into ``OUT/seed_<s>/`` (``models/``, ``eval_last/``,
``eval_best/`` with their ``report/``). A run whose checkpoints exist resumes or is skipped by
the bundle's resume handler, so an interrupted protocol continues where it stopped. Model
selection never sees the test split: "best" is chosen by the bundle's validator on the
``validation`` split; without one only "last" is reported and the summary says why (TCSeg
section 4.2).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medsegzoo.bundle_runs import BundleRun, parse_bundle, run_in_subprocess
from medsegzoo.data.datalist import load_datalist
from medsegzoo.errors import MedSegZooError
from medsegzoo.evaluation.protocols.multirun import (
    MultiRunSummary,
    multirun_summary,
    runs_from_tables,
)
from medsegzoo.evaluation.scoring import score_predictions
from medsegzoo.utils import atomic_write_text

__all__ = ["TCSEG_METRICS", "main", "run_protocol"]

# the paper's metrics: DSC, 95HD and ASD (ASD = average symmetric surface distance, "assd")
TCSEG_METRICS: tuple[str, ...] = ("dsc", "hd95", "assd")
WEIGHTS = {"last": "model.pt", "best": "model_best.pt"}


def run_protocol(
    bundle: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike,
    out: str | os.PathLike,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    configs: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    label_system: str | None = None,
    split: str = "test",
    title: str = "TCSeg multi-run protocol",
    group: dict[str, Any] | None = None,
) -> tuple[MultiRunSummary, pd.DataFrame]:
    """Train, infer and score ``len(seeds)`` runs; write ``OUT/multirun.md`` and ``OUT/runs.csv``.

    Args:
        bundle: bundle folder.
        dataset_dir: the data set folder (bundle's ``dataset_dir``).
        datalist: the datalist (bundle's ``datalist``).
        out: output folder.
        seeds: training seeds.
        configs: extra config files (bundle-relative, e.g. a preset) merged after ``train.json``
            and after ``inference.json``.
        overrides: more ``--key value`` overrides for every command.
        label_system: label system of the predictions (default: the datalist's cases' data set).
        split: split to score (never used for model selection).
        title: heading of the summary.
        group: constant columns added to every run row (e.g. ``{"method": "TCSeg"}``).

    Returns:
        ``(summary, runs)``: the median/maximum summary and one row per (seed, checkpoint).

    Raises:
        BundleRunError: a training or inference command failed (with its log tail).
        DataValidationError: the datalist has no cases in ``split``.
    """
    bundle, out = Path(bundle).resolve(), Path(out).resolve()
    data = load_datalist(datalist)
    has_validation = bool(data.get("validation"))
    base = {"dataset_dir": Path(dataset_dir).resolve(), "datalist": Path(datalist).resolve(), "bundle_root": bundle,
            **(overrides or {})}
    if label_system is None:
        label_system = parse_bundle(BundleRun(bundle, ["train.json", *configs], base)).get_parsed_content("label_system")
    checkpoints = ["last", "best"] if has_validation else ["last"]
    tables: dict[tuple[object, str], pd.DataFrame] = {}
    for seed in seeds:
        run_dir = out / f"seed_{seed}"
        common = {**base, "seed": seed, "ckpt_dir": run_dir / "models"}
        run_in_subprocess(BundleRun(bundle, ["train.json", *configs], {**common, "output_dir": run_dir / "logs"},
                                    run_id="training"), log=run_dir / "train.log")
        for checkpoint in checkpoints:
            pred_dir = run_dir / f"eval_{checkpoint}"
            infer = {**common, "model_file": run_dir / "models" / WEIGHTS[checkpoint], "output_dir": pred_dir,
                     "infer_split": split}
            run_in_subprocess(BundleRun(bundle, ["inference.json", *configs], infer, run_id="inference"),
                              log=run_dir / f"infer_{checkpoint}.log")
            tables[(seed, checkpoint)] = score_predictions(
                datalist, pred_dir, label_system, pred_dir / "report", dataset_dir=dataset_dir, split=split,
                metrics=TCSEG_METRICS, title=f"seed {seed}, {checkpoint} checkpoint",
            )
    runs = runs_from_tables(tables, TCSEG_METRICS)
    for key, value in (group or {}).items():
        runs[key] = value
    summary = multirun_summary(runs, metrics=list(TCSEG_METRICS), has_validation=has_validation, group_by=list(group or {}))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    atomic_write_text(out / "multirun.md", f"# {title}\n\n{summary.to_markdown()}\n")
    return summary, runs


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise MedSegZooError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the multi-run protocol (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m medsegzoo.drivers.multi_seed", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle folder")
    parser.add_argument("--dataset_dir", required=True, help="data set folder")
    parser.add_argument("--datalist", required=True, help="datalist JSON")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seeds", type=int, default=5, help="number of runs, seeds 0..N-1 (default 5)")
    parser.add_argument("--seed-list", type=int, nargs="*", default=None, help="explicit seeds instead of 0..N-1")
    parser.add_argument("--configs", nargs="*", default=[], help="extra bundle config files merged after train.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every command")
    parser.add_argument("--split", default="test", help="split to score (default test)")
    parser.add_argument("--label-system", default=None, help="label system of the predictions")
    args = parser.parse_args(argv)
    seeds = args.seed_list if args.seed_list else list(range(args.seeds))
    try:
        summary, _ = run_protocol(
            args.bundle, args.dataset_dir, args.datalist, args.out, seeds, args.configs, _parse_overrides(args.set), args.label_system, args.split
        )
    except MedSegZooError as err:
        print(f"multirun: error: {err}", file=sys.stderr)
        return 1
    print(summary.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
