"""Run an A-Eval cross-dataset protocol with the STU-Net bundle and write the train x test matrix.

A-Eval (REFERENCE.md section 3) studies how data usage changes cross-dataset generalisation:

1. **individual**: train one model per training set, test every model on every test set;
2. **pseudo-labeling**: train on a set's labeled scans, pseudo-label its ``unlabeled`` scans with
   that model, retrain on both (no label selection, as A-Eval);
3. **modalities**: train on a set's CT cases only, MR cases only, and both (per-image z-score
   for MR and for the mix);
4. **joint**: train one model on every training set with labels aligned to one label system:
   first on the sets that label every class of the system, then pseudo-label the classes the
   other sets lack and retrain on all, then pseudo-label every set's unlabeled scans and retrain.

Every model is trained, and every test set predicted, by the bundle's own configs through
``monai.bundle.run`` (the same code path as the command line); predictions are scored in the
shared system (``aeval8``/``aeval10``) by :func:`medsegzoo.evaluation.scoring.score_predictions`
and the per-case tables go to the A-Eval protocol of the evaluation engine
(:func:`medsegzoo.evaluation.protocols.aeval.aeval_protocol`) and its report.

Command line::

    python -m medsegzoo.drivers.aeval --protocol 1 \\
        --bundle bundles/stunet_cross_dataset_evaluation --work-dir runs/aeval_p1 \\
        --set flare22=/data/FLARE22/datalist.json --set amos=/data/AMOS/datalist.json \\
        --set btcv=/data/BTCV/datalist.json::/data/BTCV \\
        --train-sets flare22 amos --test-sets flare22 amos btcv

A set is ``NAME=DATALIST`` or ``NAME=DATALIST::DATASET_DIR`` (the folder its relative paths
start from; default: the datalist's folder). Training uses the set's ``training`` split, testing
its ``test`` split (``--test-split``). Extra config files (``--config configs/smoke.json``) and
overrides (``--override max_epochs=100``, JSON values) reach every bundle run.

Work folder: ``<work>/<model>/`` per trained model (``models/`` with checkpoints and the
fingerprint, ``pred/<test set>/`` predictions, ``eval/<test set>/`` per-test reports),
``<work>/datalists/`` the derived datalists (pseudo-labels, modality subsets, joint sets),
``<work>/report/`` the A-Eval report (``summary.md`` with the matrix, heatmaps, CSVs) and
``<work>/aeval_per_case.csv`` (every per-case row with ``train_set`` and ``test_set``).
A model whose ``models/model.pt`` exists is not trained again (resume a long protocol by
running the same command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from medsegzoo.data.datalist import load_split
from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import DataValidationError, MedSegZooError, UnknownNameError
from medsegzoo.evaluation.protocols.aeval import aeval_protocol
from medsegzoo.evaluation.reports import write_csv, write_report
from medsegzoo.evaluation.scoring import score_predictions
from medsegzoo.taxonomy import convert_label_map, get_label_system, labeled_classes, side_parts
from medsegzoo.utils import atomic_path, atomic_write_json

__all__ = [
    "DataSet",
    "ProtocolRunner",
    "fill_missing_classes",
    "main",
    "parse_set",
    "run_protocol",
]

PROTOCOLS: dict[int, str] = {1: "individual", 2: "pseudo_labeling", 3: "modalities", 4: "joint"}


@dataclass(frozen=True)
class DataSet:
    """One data set of a protocol: its datalist and the folder its relative paths start from.

    Attributes:
        name: short name used in the matrix (row/column label).
        datalist: datalist JSON path.
        dataset_dir: base folder of the relative paths.
    """

    name: str
    datalist: Path
    dataset_dir: Path

    def split(self, key: str) -> list[dict[str, Any]]:
        """Entries of one split with absolute paths."""
        return load_split(self.datalist, key, base_dir=self.dataset_dir)

    def modality(self, split: str = "test") -> str:
        """"CT", "MR" or "CT+MR" from the entries' ``modality`` (CT when none says)."""
        found = {str(c.get("modality", "CT")).upper() for c in self.split(split)} or {"CT"}
        return "+".join(sorted(found)) if len(found) > 1 else found.pop()


def parse_set(text: str) -> DataSet:
    """Parse ``NAME=DATALIST[::DATASET_DIR]``.

    Raises:
        DataValidationError: malformed text or a datalist that does not exist.
    """
    if "=" not in text:
        raise DataValidationError(f"--set {text!r}: expected NAME=DATALIST or NAME=DATALIST::DATASET_DIR")
    name, rest = text.split("=", 1)
    datalist, _, base = rest.partition("::")
    path = Path(datalist).expanduser().resolve()
    if not path.is_file():
        raise DataValidationError(f"--set {name}: datalist {path} does not exist")
    return DataSet(name.strip(), path, Path(base).resolve() if base else path.parent)


def _covered(classes: Sequence[str], system: str) -> set[str]:
    """Classes of ``system`` that a case's ``labeled_classes`` cover (merged organs cover their sides)."""
    names = set(classes)
    for name in classes:
        names.update(side_parts(name) or ())
    return {c for c in get_label_system(system).classes if c in names}


def _case_labeled(case: Mapping[str, Any], system: str) -> set[str]:
    """Classes of ``system`` the case's label map holds after conversion."""
    by_dataset = set(labeled_classes(str(case["dataset"]), system))
    if case.get("labeled_classes"):
        by_dataset &= _covered(case["labeled_classes"], system)
    return by_dataset


def fill_missing_classes(
    label: np.ndarray,
    label_source: str,
    prediction: np.ndarray,
    system: str,
    missing: Sequence[str],
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Ground truth in ``system`` with the classes it lacks taken from a prediction.

    The ground truth wins wherever it labels a voxel; a predicted ``missing`` class is written
    only onto ground-truth background (A-Eval protocol 4, second round).

    Args:
        label: native label map of the case.
        label_source: its data set (or system) name.
        prediction: the model's label map in ``system`` (same shape).
        system: target label system.
        missing: classes of ``system`` the case does not label.
        affine: affine of ``label`` (left/right splits of merged organs).

    Returns:
        Label map in ``system`` values.

    Raises:
        DataValidationError: shapes differ.
    """
    if label.shape != prediction.shape:
        raise DataValidationError(f"pseudo-label shape {prediction.shape} differs from label shape {label.shape}")
    out = convert_label_map(label, label_source, system, affine=affine)
    classes = get_label_system(system).classes
    values = [classes.index(c) + 1 for c in missing]
    take = (out == 0) & np.isin(prediction, values)
    out[take] = prediction[take]
    return out


class ProtocolRunner:
    """Train, predict and evaluate models of the bundle for one protocol.

    Args:
        bundle_dir: the bundle folder (its ``configs/`` are used).
        work_dir: output folder (see the module docstring).
        configs: extra config files merged after the bundle's (e.g. ``configs/smoke.json``).
        overrides: config overrides for every run (e.g. ``{"max_epochs": 100}``).
        label_system: label system the models are trained in; ``"native"`` uses each training
            set's own data set map (protocol 1/2/3 as in A-Eval).
        evaluation_system: shared system of the scores (``aeval8`` or ``aeval10``).
        test_split: split of the test sets that is scored.
        use_mirroring: mirror test-time augmentation at inference.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        work_dir: str | os.PathLike,
        configs: Sequence[str | os.PathLike] = (),
        overrides: Mapping[str, Any] | None = None,
        label_system: str = "aeval8",
        evaluation_system: str = "aeval8",
        test_split: str = "test",
        use_mirroring: bool = True,
    ) -> None:
        self.bundle_dir = Path(bundle_dir).resolve()
        config_dir = self.bundle_dir / "configs"
        if not (config_dir / "train.json").is_file():
            raise DataValidationError(f"{self.bundle_dir}: not a bundle folder (no configs/train.json)")
        self.config_dir = config_dir
        self.extra_configs = [str(Path(c).resolve()) for c in configs]
        self.overrides = dict(overrides or {})
        self.label_system = label_system
        if label_system != "native":
            get_label_system(label_system)
        self.evaluation_system = get_label_system(evaluation_system).name
        self.test_split = test_split
        self.use_mirroring = use_mirroring
        self.work_dir = Path(work_dir).resolve()
        self.tables: list[pd.DataFrame] = []

    # ---- bundle runs -------------------------------------------------------------------
    def _configs(self, *names: str) -> list[str]:
        return [str(self.config_dir / n) for n in names] + self.extra_configs

    def _run(self, run_id: str, configs: list[str], **overrides: Any) -> None:
        from monai.bundle import run

        merged = {**self.overrides, **overrides}
        run(
            run_id,
            config_file=configs,
            meta_file=str(self.config_dir / "metadata.json"),
            logging_file=str(self.config_dir / "logging.conf"),
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in merged.items()},
        )

    def model_dir(self, model: str) -> Path:
        """Folder of one trained model (``bundle_root`` of its runs)."""
        return self.work_dir / _slug(model)

    def _system_for(self, dataset: str | None) -> str:
        if self.label_system != "native":
            return self.label_system
        if not dataset:
            raise DataValidationError("label_system 'native' needs training cases of one data set")
        return dataset

    def train(self, model: str, datalist: Path, dataset_dir: Path, system: str, **overrides: Any) -> Path:
        """Train one model (skipped when its final checkpoint exists); returns its folder."""
        root = self.model_dir(model)
        if (root / "models" / "model.pt").is_file():
            return root
        root.mkdir(parents=True, exist_ok=True)
        self._run(
            "training", self._configs("train.json"),
            bundle_root=root, datalist=datalist, dataset_dir=dataset_dir, label_system=system, **overrides,
        )
        return root

    def predict(self, model: str, data: DataSet, split: str, system: str, out: Path, **overrides: Any) -> Path:
        """Write the model's label maps (in ``system``) for one split of ``data`` into ``out``."""
        self._run(
            "inference", self._configs("inference.json"),
            bundle_root=self.model_dir(model), datalist=data.datalist, dataset_dir=data.dataset_dir,
            label_system=system, infer_split=split, output_dir=out, use_mirroring=self.use_mirroring,
            **overrides,
        )
        return out

    def evaluate(self, model: str, system: str, tests: Sequence[DataSet], **overrides: Any) -> pd.DataFrame:
        """Predict and score every test set with one model; the rows carry train/test names."""
        frames = []
        for test in tests:
            pred_dir = self.model_dir(model) / "pred" / _slug(test.name)
            self.predict(model, test, self.test_split, system, pred_dir, **overrides)
            table = score_predictions(
                test.datalist, pred_dir, system, self.model_dir(model) / "eval" / _slug(test.name),
                dataset_dir=test.dataset_dir, split=self.test_split, evaluation_system=self.evaluation_system,
                metrics=("dsc", "nsd"), title=f"{model} on {test.name}",
            )
            frames.append(table.assign(train_set=model, test_set=test.name, test_modality=test.modality(self.test_split)))
        out = pd.concat(frames, ignore_index=True)
        self.tables.append(out)
        return out

    # ---- datalists ---------------------------------------------------------------------
    def write_datalist(self, name: str, training: list[dict[str, Any]], validation: list[dict[str, Any]] | None = None) -> Path:
        """Write a derived datalist (absolute paths) under ``<work>/datalists``."""
        path = self.work_dir / "datalists" / f"{_slug(name)}.json"
        payload = {"name": name, "layout": "derived", "label_system": None,
                   "training": training, "validation": validation or [], "test": []}
        atomic_write_json(path, payload)
        return path

    def pseudo_label(
        self, model: str, data: DataSet, split: str, system: str, base_cases: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Pseudo-label one split of ``data`` with ``model``.

        Without ``base_cases`` (unlabeled scans) the prediction is the label. With them (labeled
        cases that lack classes of ``system``) the prediction only fills the missing classes on
        ground-truth background (:func:`fill_missing_classes`).

        Returns:
            Datalist entries whose labels are in ``system`` (``dataset`` = ``system``).
        """
        out_dir = self.work_dir / "pseudo_labels" / _slug(model) / _slug(data.name) / split
        self.predict(model, data, split, system, out_dir)
        classes = list(get_label_system(system).classes)
        entries = []
        for case in base_cases if base_cases is not None else data.split(split):
            pred_path = prediction_path(out_dir, case["case_id"])
            if not pred_path.is_file():
                raise DataValidationError(f"{pred_path}: pseudo-label was not written for {case['image']}")
            entry = {k: v for k, v in case.items() if k not in ("label", "masks")}
            if base_cases is not None:
                label_img = nib.load(case["label"])
                pred = np.rint(np.asarray(nib.load(str(pred_path)).dataobj)).astype(np.int32)
                missing = [c for c in classes if c not in _case_labeled(case, system)]
                filled = fill_missing_classes(
                    np.rint(np.asarray(label_img.dataobj)).astype(np.int32), str(case["dataset"]), pred, system,
                    missing, affine=label_img.affine,
                )
                pred_path = pred_path.with_name(pred_path.name.replace(".nii", "_filled.nii", 1))
                with atomic_path(pred_path) as tmp:  # the temporary name keeps .nii.gz for nibabel
                    nib.save(nib.Nifti1Image(filled.astype(np.uint8), label_img.affine), str(tmp))
            entry.update(label=str(pred_path), dataset=system, labeled_classes=classes)
            entries.append(entry)
        return entries

    # ---- the protocols -------------------------------------------------------------------
    def protocol_individual(self, trains: Sequence[DataSet], tests: Sequence[DataSet]) -> None:
        """Protocol 1: one model per training set, evaluated on every test set."""
        for data in trains:
            system = self._system_for(_single_dataset(data.split("training")))
            self.train(data.name, data.datalist, data.dataset_dir, system)
            self.evaluate(data.name, system, tests)

    def protocol_pseudo_labeling(self, trains: Sequence[DataSet], tests: Sequence[DataSet]) -> None:
        """Protocol 2: labeled only, then labeled + pseudo-labeled ``unlabeled`` scans."""
        for data in trains:
            labeled = data.split("training")
            system = self._system_for(_single_dataset(labeled))
            self.train(data.name, data.datalist, data.dataset_dir, system)
            self.evaluate(data.name, system, tests)
            if not data.split("unlabeled"):
                raise DataValidationError(f"protocol 2: set {data.name} ({data.datalist}) has no 'unlabeled' split to pseudo-label")
            pseudo = self.pseudo_label(data.name, data, "unlabeled", system)
            model = f"{data.name} w/ PL"
            path = self.write_datalist(model, labeled + pseudo, data.split("validation"))
            self.train(model, path, data.dataset_dir, system)
            self.evaluate(model, system, tests)

    def protocol_modalities(self, trains: Sequence[DataSet], tests: Sequence[DataSet]) -> None:
        """Protocol 3: CT only, MR only and CT+MR models of each training set."""
        for data in trains:
            cases = data.split("training")
            system = self._system_for(_single_dataset(cases))
            by_modality = {m: [c for c in cases if str(c.get("modality", "CT")).upper() == m] for m in ("CT", "MR")}
            variants = [(m, by_modality[m]) for m in ("CT", "MR") if by_modality[m]]
            if len(variants) == 2:
                variants.append(("CT+MR", cases))
            if len(variants) < 2:
                raise DataValidationError(f"protocol 3: set {data.name} has no case of both CT and MR (modality entries)")
            for modality, subset in variants:
                model = f"{data.name} {modality}"
                path = self.write_datalist(model, subset)
                norm = "ct_dataset" if modality == "CT" else "per_image_zscore"
                self.train(model, path, data.dataset_dir, system, modality=modality.split("+")[0], normalization=norm)
                self.evaluate(model, system, tests, normalization=norm)

    def protocol_joint(self, trains: Sequence[DataSet], tests: Sequence[DataSet]) -> None:
        """Protocol 4: joint training with labels aligned to one system, in up to three rounds."""
        if self.label_system == "native":
            raise DataValidationError("protocol 4 aligns every set to one label system: pass --label-system (e.g. flare22)")
        system = self.label_system
        classes = set(get_label_system(system).classes)
        cases = {d.name: d.split("training") for d in trains}
        complete = [d for d in trains if all(_case_labeled(c, system) == classes for c in cases[d.name])]
        partial = [d for d in trains if d not in complete]
        modalities = {str(c.get("modality", "CT")).upper() for d in trains for c in cases[d.name]}
        norm = "ct_dataset" if modalities == {"CT"} else "per_image_zscore"
        round_sets = complete or list(trains)
        training = [c for d in round_sets for c in cases[d.name]]
        # validation on the sets that label every class (a partial set's missing organs would
        # read as misses); its Dice draws the learning curve, the last weights are scored
        validation = [c for d in round_sets for c in d.split("validation")]
        model = "Joint"
        rounds = [("Joint r1" if (partial and complete) else model, training)]
        name, data = rounds[0]
        self._train_joint(name, data, system, norm, validation)
        if partial and complete:
            filled = [e for d in partial for e in self.pseudo_label(name, d, "training", system, base_cases=cases[d.name])]
            training = training + filled
            name = "Joint r2"
            self._train_joint(name, training, system, norm, validation)
        unlabeled = [d for d in trains if d.split("unlabeled")]
        if unlabeled:
            pseudo = [e for d in unlabeled for e in self.pseudo_label(name, d, "unlabeled", system)]
            training = training + pseudo
            name = "Joint w/ PL"
            self._train_joint(name, training, system, norm, validation)
        self.evaluate(name, system, tests, normalization=norm)

    def _train_joint(self, model: str, training: list[dict[str, Any]], system: str, norm: str,
                     validation: list[dict[str, Any]]) -> None:
        path = self.write_datalist(model, training, validation)
        self.train(model, path, path.parent, system, normalization=norm)

    # ---- the matrix ------------------------------------------------------------------------
    def report(self, title: str) -> Any:
        """Write the A-Eval report of every evaluation run so far; returns the A-Eval result."""

        if not self.tables:
            raise MedSegZooError("no evaluation was run; nothing to report")
        table = pd.concat(self.tables, ignore_index=True)
        write_csv(table, self.work_dir / "aeval_per_case.csv")
        modalities = dict(zip(table["test_set"], table["test_modality"]))
        result = aeval_protocol(table, metrics=("dsc", "nsd"), classes=list(get_label_system(self.evaluation_system).classes),
                                modalities=modalities)
        write_report(table.assign(algorithm=table["train_set"]), self.work_dir / "report", title, metrics=["dsc", "nsd"],
                     classes=list(get_label_system(self.evaluation_system).classes), aeval=result)
        for metric, matrix in result.matrices.items():
            write_csv(matrix.values, self.work_dir / f"aeval_matrix_{metric}.csv", index=True)
        return result


def _single_dataset(cases: Sequence[Mapping[str, Any]]) -> str | None:
    names = {str(c.get("dataset")) for c in cases if c.get("dataset")}
    return names.pop() if len(names) == 1 else None


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)).strip("_") or "model"


def run_protocol(
    protocol: int,
    sets: Sequence[DataSet],
    train_sets: Sequence[str],
    test_sets: Sequence[str],
    bundle_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    **runner_kwargs: Any,
) -> Any:
    """Run one A-Eval protocol and write its report.

    Args:
        protocol: 1 (individual), 2 (pseudo-labeling), 3 (modalities) or 4 (joint).
        sets: every data set named below.
        train_sets: names of the training sets.
        test_sets: names of the test sets.
        bundle_dir: the STU-Net bundle folder.
        work_dir: output folder.
        **runner_kwargs: see :class:`ProtocolRunner`.

    Returns:
        The :class:`~medsegzoo.evaluation.protocols.aeval.AEvalResult`.

    Raises:
        UnknownNameError: unknown protocol or set name.
    """
    if protocol not in PROTOCOLS:
        raise UnknownNameError(f"unknown A-Eval protocol {protocol}; known: {PROTOCOLS}")
    by_name = {s.name: s for s in sets}
    for name in [*train_sets, *test_sets]:
        if name not in by_name:
            raise UnknownNameError(f"data set {name!r} was not given with --set; given: {sorted(by_name)}")
    runner = ProtocolRunner(bundle_dir, work_dir, **runner_kwargs)
    trains = [by_name[n] for n in train_sets]
    tests = [by_name[n] for n in test_sets]
    getattr(runner, f"protocol_{PROTOCOLS[protocol]}")(trains, tests)
    return runner.report(f"A-Eval protocol {protocol} ({PROTOCOLS[protocol].replace('_', ' ')})")


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise DataValidationError(f"--override {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    """The driver's argument parser."""
    p = argparse.ArgumentParser(prog="python -m medsegzoo.drivers.aeval", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", type=int, required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--bundle", required=True, help="the bundle folder (bundles/stunet_cross_dataset_evaluation)")
    p.add_argument("--work-dir", required=True, help="output folder")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=DATALIST[::DATASET_DIR]")
    p.add_argument("--train-sets", nargs="+", required=True)
    p.add_argument("--test-sets", nargs="+", required=True)
    p.add_argument("--config", action="append", default=[], help="extra config file merged into every run")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
    p.add_argument("--label-system", default="aeval8", help="training label system, or 'native' (default aeval8)")
    p.add_argument("--evaluation-system", default="aeval8", help="shared system of the scores (aeval8 or aeval10)")
    p.add_argument("--test-split", default="test")
    p.add_argument("--no-mirroring", action="store_true", help="disable mirror test-time augmentation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        result = run_protocol(
            args.protocol, [parse_set(s) for s in args.sets], args.train_sets, args.test_sets, args.bundle, args.work_dir,
            configs=args.config, overrides=dict(_parse_override(o) for o in args.override),
            label_system=args.label_system, evaluation_system=args.evaluation_system, test_split=args.test_split,
            use_mirroring=not args.no_mirroring,
        )
    except MedSegZooError as err:
        print(f"aeval_driver: error: {err}", file=sys.stderr)
        return 1
    print(next(iter(result.matrices.values())).values.round(2).to_string())
    print(f"report: {Path(args.work_dir).resolve() / 'report' / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
