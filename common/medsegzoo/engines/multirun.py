"""TCSeg's multi-run protocol: N seeds, last and best checkpoints, median and maximum.

One command trains a bundle with several seeds, runs its inference config with the last
checkpoint of each run and (only when the datalist has a validation split) with the
best-on-validation checkpoint, scores every prediction folder with DSC, 95HD and ASD in mm,
and writes the median/maximum table of
:func:`medsegzoo.evaluation.protocols.multirun.multirun_summary`::

    python -m medsegzoo.engines.multirun --bundle bundles/tcseg_semi_supervised_segmentation \\
        --dataset_dir /data/LA --datalist /data/LA/datalist.json --out runs/la10 --seeds 5 \\
        --configs configs/presets/la.json --set labeled_ratio=0.1

Each seed trains in its own process (``python -m monai.bundle run training``), so runs do
not share global random state, and writes into ``OUT/seed_<s>/`` (``models/``,
``pred_last/``, ``pred_best/``, ``report_last/``, ...). A run whose ``model_last.pt`` exists
resumes or is skipped by the bundle's resume handler, so an interrupted protocol continues
where it stopped. Model selection never sees the test split: "best" is chosen by the
bundle's validator on the ``validation`` split; without one only "last" is reported and the
summary says why (TCSeg section 4.2).

:func:`evaluate_predictions` is the scoring step on its own (also used by the bundle's
``evaluate.json``): predictions named ``<image stem>_<postfix>.nii.gz`` against the
datalist's ground truth, converted to the bundle's label system.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsegzoo.data.datalist import load_datalist, load_split, resolve_base_dir
from medsegzoo.data.formats import read_volume
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.evaluation.metrics import compute_case_metrics
from medsegzoo.evaluation.protocols.multirun import MultiRunSummary, multirun_summary, runs_from_tables
from medsegzoo.evaluation.reports import write_report
from medsegzoo.taxonomy import convert_label_map, get_label_system
from medsegzoo.utils import atomic_write_text

__all__ = ["TCSEG_METRICS", "bundle_setting", "evaluate_predictions", "main", "prediction_path", "run_protocol"]

# the paper's metrics: DSC, 95HD and ASD (ASD = average symmetric surface distance, "assd")
TCSEG_METRICS: tuple[str, ...] = ("dsc", "hd95", "assd")


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".h5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def prediction_path(pred_dir: str | os.PathLike, image: str | os.PathLike, postfix: str = "seg", data_root: str | os.PathLike | None = None) -> Path:
    """Where MONAI's ``SaveImaged`` (``separate_folder=False``) put the prediction of ``image``.

    With ``data_root`` (the bundle's ``data_root_dir``) the image's folder below it is kept,
    which keeps predictions of same-named files apart (every LA case is ``mri_norm2.h5``).
    """
    folder = Path(pred_dir)
    if data_root is not None:
        rel = os.path.relpath(os.path.dirname(os.path.abspath(image)), os.path.abspath(data_root))
        folder = folder / rel
    return folder / f"{_stem(image)}_{postfix}.nii.gz"


def evaluate_predictions(
    pred_dir: str | os.PathLike,
    datalist: str | os.PathLike,
    label_system: str,
    split: str = "test",
    dataset_dir: str | os.PathLike | None = None,
    postfix: str = "seg",
    metrics: Sequence[str] = TCSEG_METRICS,
    out_dir: str | os.PathLike | None = None,
    title: str = "TCSeg evaluation",
) -> pd.DataFrame:
    """Score a prediction folder against a datalist split (tidy per-case table).

    Args:
        pred_dir: folder of ``<image stem>_<postfix>.nii.gz`` label maps in ``label_system``.
        datalist: datalist JSON.
        label_system: label system of the predictions (the ground truth is converted to it
            from each case's ``dataset``).
        split: split to score.
        dataset_dir: folder the datalist's relative paths start from.
        postfix: prediction file postfix.
        metrics: metric names of :func:`~medsegzoo.evaluation.metrics.compute_case_metrics`.
        out_dir: when given, the report (per_case.csv, per_class.csv, summary.md) is written there.
        title: report title.

    Returns:
        One row per (case, class): ``case``, ``class``, the metrics, ``gt_present``, ...

    Raises:
        DataValidationError: an empty split, a missing prediction (named), or shapes that differ.
    """
    cases = load_split(datalist, split, dataset_dir)
    if not cases:
        raise DataValidationError(f"{datalist}: the '{split}' split is empty, nothing to evaluate")
    system = get_label_system(label_system)
    classes = {i + 1: name for i, name in enumerate(system.classes)}
    rows: list[dict[str, Any]] = []
    root = resolve_base_dir(load_datalist(datalist), datalist, dataset_dir)
    missing = [str(prediction_path(pred_dir, c["image"], postfix, root)) for c in cases if not prediction_path(pred_dir, c["image"], postfix, root).is_file()]
    if missing:
        raise DataValidationError(f"{pred_dir}: {len(missing)} prediction(s) missing, e.g. {missing[:3]} (run inference first)")
    for case in cases:
        if not case.get("label"):
            raise DataValidationError(f"{datalist}: case {case.get('case_id')} in '{split}' has no label to evaluate against")
        gt_volume = read_volume(case["label"], field="label")
        gt = np.asarray(gt_volume.array)
        gt = gt[..., 0] if gt.ndim == 4 and gt.shape[-1] == 1 else gt
        gt = convert_label_map(gt.astype(np.int64), str(case.get("dataset", label_system)), label_system)
        pred_file = prediction_path(pred_dir, case["image"], postfix, root)
        pred = np.asarray(read_volume(pred_file).array).astype(np.int64)
        pred = pred[..., 0] if pred.ndim == 4 and pred.shape[-1] == 1 else pred
        if pred.shape != gt.shape:
            raise DataValidationError(f"{pred_file}: shape {pred.shape} differs from the ground truth {case['label']} {gt.shape}")
        # files without geometry (LA's h5) carry their spacing in the datalist entry
        spacing = case.get("spacing") or np.linalg.norm(np.asarray(gt_volume.affine)[:3, :3], axis=0).tolist()
        for row in compute_case_metrics(pred, gt, spacing, classes, metrics=metrics):
            rows.append({"case": str(case.get("case_id", _stem(case["image"]))), **row})
    table = pd.DataFrame(rows)
    if out_dir is not None:
        write_report(table, out_dir, title, metrics=list(metrics), plots=False)
    return table


def bundle_setting(bundle: str | os.PathLike, configs: Sequence[str], overrides: dict[str, Any], key: str) -> Any:
    """The parsed value of one config entry of a bundle (merged configs plus overrides)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(Path(bundle) / c) for c in configs])
    parser.update({k: v for k, v in overrides.items() if k == key})
    return parser.get_parsed_content(key)


def _bundle_command(bundle: Path, run_id: str, configs: Sequence[str], overrides: dict[str, Any]) -> list[str]:
    files = "[" + ",".join(f"'{bundle / c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise MedSegZooError(f"command failed (exit {proc.returncode}), log {log}:\n{' '.join(cmd)}\n{tail}")


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
        configs: extra config files (bundle-relative) merged after ``configs/train.json``.
        overrides: more ``--key value`` overrides for every command.
        label_system: label system of the predictions (default: the datalist's cases' data set).
        split: split to score (never used for model selection).
        title: heading of the summary.
        group: constant columns added to every run row (e.g. ``{"method": "TCSeg"}``).

    Returns:
        ``(summary, runs)``: the median/maximum summary and one row per (seed, checkpoint).

    Raises:
        MedSegZooError: a training or inference command failed (with its log tail).
        DataValidationError: the datalist has no cases in ``split``.
    """
    bundle, out = Path(bundle).resolve(), Path(out).resolve()
    data = load_datalist(datalist)
    has_validation = bool(data.get("validation"))
    if label_system is None:
        label_system = bundle_setting(bundle, ["configs/train.json", *configs], overrides or {}, "label_system")
    checkpoints = ["last", "best"] if has_validation else ["last"]
    tables: dict[tuple[object, str], pd.DataFrame] = {}
    base = {"dataset_dir": Path(dataset_dir).resolve(), "datalist": Path(datalist).resolve(), "bundle_root": bundle, **(overrides or {})}
    for seed in seeds:
        run_dir = out / f"seed_{seed}"
        common = {**base, "seed": seed, "ckpt_dir": run_dir / "models", "output_dir": run_dir}
        train_configs = ["configs/train.json", *configs]
        _run(_bundle_command(bundle, "training", train_configs, common), run_dir / "train.log")
        for checkpoint in checkpoints:
            pred_dir = run_dir / f"pred_{checkpoint}"
            infer = {**common, "checkpoint": checkpoint, "prediction_dir": pred_dir, "inference_split": split}
            _run(_bundle_command(bundle, "inference", [*train_configs, "configs/inference.json"], infer), run_dir / f"infer_{checkpoint}.log")
            tables[(seed, checkpoint)] = evaluate_predictions(
                pred_dir, datalist, label_system, split, dataset_dir, out_dir=run_dir / f"report_{checkpoint}", title=f"seed {seed}, {checkpoint} checkpoint"
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
    parser = argparse.ArgumentParser(prog="python -m medsegzoo.engines.multirun", description=__doc__.splitlines()[0])
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
