"""Run a bundle's own ``inference.json`` on images a user names (what ``medsegzoo predict`` does).

The bundle config stays the single definition of inference: :class:`BundlePredictor` writes a
temporary datalist of the inputs (:mod:`medsegzoo.inference.inputs`), parses
``configs/inference.json`` (plus any override configs, e.g. ``cpu.json`` for a CPU-recipe
model) with ``dataset_dir``, ``datalist``, ``infer_split`` and ``output_dir`` overridden,
and runs its ``initialize`` and ``run`` sections exactly as ``python -m monai.bundle run``
would. Around the evaluator it only listens: per case it measures the time (loading to
written files), counts the sliding windows computed and skipped, and measures the volume of
every class of the written label map in mL.

Settings a user may change from the command line map to the bundle's own config keys:
``device`` (``--device``), ``use_mirroring`` / ``mirror_axes`` (``--fast``: test-time
mirroring off), ``save_class_masks`` (``--masks``), ``sw_progress`` (the window progress bar)
and ``num_workers`` (one loader process that prepares the next case while the network runs).
Everything is checked before any file is written: the bundle's configs, its weights, the
device.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.data.datalist import make_case, save_datalist
from medsegzoo.data.predictions import prediction_path
from medsegzoo.errors import MedSegZooError
from medsegzoo.inference.inputs import PredictionInput
from medsegzoo.inference.sliding_window import BodySlidingWindowInferer
from medsegzoo.transforms.io import SavePredictiond

__all__ = ["DEVICES", "BundlePredictor", "CaseResult", "PredictError", "summary", "volumes_ml"]

DEVICES = ("auto", "cpu", "cuda")
_DEVICE_EXPRESSIONS = {"cpu": "$torch.device('cpu')", "cuda": "$torch.device('cuda:0')"}


class PredictError(MedSegZooError):
    """A bundle that cannot predict (no weights, no CUDA where asked, a failing config)."""


@dataclasses.dataclass
class CaseResult:
    """What was predicted for one case.

    Attributes:
        case_id: the case.
        source: the input (file or DICOM folder).
        label_map: the written label map.
        seconds: wall time from loading to the written files.
        volumes_ml: class name -> predicted volume in mL (classes absent from the map: 0).
        windows_computed: sliding windows run through the network (all passes).
        windows_skipped: windows skipped outside the body.
    """

    case_id: str
    source: Path
    label_map: Path
    seconds: float
    volumes_ml: dict[str, float]
    windows_computed: int = 0
    windows_skipped: int = 0


def _medsegzoo_cause(err: BaseException) -> MedSegZooError | None:
    """The first medsegzoo error in an exception's chain (MONAI wraps config failures)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, MedSegZooError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _find(obj: Any, kind: type, depth: int = 4) -> Any:
    """``obj`` or the first object of type ``kind`` among its nested ``inferer`` attributes."""
    for _ in range(depth + 1):
        if obj is None or isinstance(obj, kind):
            return obj
        obj = obj.__dict__.get("inferer") if hasattr(obj, "__dict__") else None
    return None


def volumes_ml(labels: Any, affine: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Volume in mL of each class (values 1..N) of a label map on a grid with ``affine``."""
    values = torch.as_tensor(labels).detach().reshape(-1).long().cpu()
    counts = torch.bincount(values.clamp(min=0), minlength=len(class_names) + 1)
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0
    return {name: float(counts[i + 1]) * voxel_ml for i, name in enumerate(class_names)}


class BundlePredictor:
    """Predicts images with a bundle's ``inference.json``.

    Args:
        bundle_dir: the bundle folder (``configs/inference.json``, ``models/``), e.g. one
            fetched with ``medsegzoo zoo download``.
        configs: more config files merged after ``inference.json`` (names in ``configs/``
            or paths), e.g. ``cpu.json`` for weights trained with the CPU recipe.
        device: ``"auto"`` (the bundle's choice: CUDA when present), ``"cpu"`` or ``"cuda"``.
        fast: test-time mirroring off (bundles that mirror: STU-Net).
        class_masks: also write one mask per class.
        progress: show the sliding-window progress bar.

    Raises:
        PredictError: an unknown device.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        configs: Sequence[str | os.PathLike] = (),
        device: str = "auto",
        fast: bool = False,
        class_masks: bool = False,
        progress: bool = True,
    ) -> None:
        if device not in DEVICES:
            raise PredictError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
        self.bundle_dir = Path(bundle_dir)
        self.configs = ["inference.json", *[str(c) for c in configs]]
        self.device = device
        self.fast = fast
        self.class_masks = class_masks
        self.progress = progress
        self._keys: set[str] | None = None

    def _run(self, overrides: dict[str, Any]) -> BundleRun:
        return BundleRun(self.bundle_dir, self.configs, {"bundle_root": str(self.bundle_dir), **overrides}, run_id="run")

    def _parse(self, overrides: dict[str, Any]) -> Any:
        try:
            return parse_bundle(self._run(overrides))
        except MedSegZooError:
            raise
        except Exception as err:  # noqa: BLE001 - a config MONAI cannot read: name the bundle
            raise PredictError(f"{self.bundle_dir}: its configs {self.configs} cannot be parsed ({type(err).__name__}: {err})") from None

    def _resolve(self, parser: Any, key: str) -> Any:
        try:
            return parser.get_parsed_content(key)
        except Exception as err:  # noqa: BLE001 - surface the medsegzoo error inside MONAI's wrapper
            cause = _medsegzoo_cause(err)
            if cause is not None:
                raise cause from None
            raise PredictError(f"{self.bundle_dir}: config entry {key!r} fails ({type(err).__name__}: {err})") from None

    def check(self) -> None:
        """Everything that can fail before any work: the configs, the device, the weights.

        Raises:
            PredictError: the bundle folder or a config is missing, CUDA is asked where there
                is none, the weights file is missing.
        """
        if not (self.bundle_dir / "configs" / "inference.json").is_file():
            raise PredictError(f"{self.bundle_dir}: not a bundle folder (no configs/inference.json)")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise PredictError("--device cuda: this machine has no CUDA device (PyTorch sees none); "
                               "use --device cpu or auto")
        parser = self._parse({})
        self._keys = set(parser.config.keys()) if isinstance(parser.config, dict) else set()
        model_file = Path(str(self._resolve(parser, "model_file")))
        if not model_file.is_file():
            raise PredictError(
                f"{model_file}: the bundle {self.bundle_dir} has no weights; train it (python -m monai.bundle run "
                "training ...) or fetch a trained bundle with `medsegzoo zoo download`"
            )

    def overrides(self, cases: Sequence[PredictionInput], out_dir: Path, work_dir: Path) -> dict[str, Any]:
        """The config values ``predict`` sets (only keys the bundle has, besides the data paths)."""
        keys = self._keys or set()
        values: dict[str, Any] = {
            "dataset_dir": str(work_dir),
            "datalist": str(work_dir / "datalist.json"),
            "infer_split": "test",
            "output_dir": str(out_dir),
        }
        optional = {
            "save_class_masks": self.class_masks,
            "sw_progress": self.progress,
            "num_workers": 0 if len(cases) < 2 else 1,
        }
        if self.device in _DEVICE_EXPRESSIONS:
            optional["device"] = _DEVICE_EXPRESSIONS[self.device]
        if self.fast:
            optional.update({"use_mirroring": False, "mirror_axes": []})
        values.update({k: v for k, v in optional.items() if k in keys})
        return values

    @staticmethod
    def write_datalist(cases: Sequence[PredictionInput], path: Path) -> Path:
        """The temporary datalist of the cases (absolute image paths, no labels)."""
        entries = [make_case(c.case_id, str(c.image.resolve()), dataset="predict") for c in cases]
        return save_datalist({"name": "predict", "layout": "predict", "test": entries}, path)

    def run(
        self,
        cases: Sequence[PredictionInput],
        out_dir: str | os.PathLike,
        work_dir: str | os.PathLike,
        on_case: Callable[[CaseResult], None] | None = None,
    ) -> list[CaseResult]:
        """Predict every case with the bundle; returns one result per case, in order.

        Args:
            cases: the inputs (already checked).
            out_dir: where the label maps go (``<case_id>.nii.gz``).
            work_dir: a scratch folder (the datalist).
            on_case: called after each case.

        Raises:
            PredictError: the bundle fails (the message names it and the cause).
        """
        if self._keys is None:
            self.check()
        out = Path(out_dir).resolve()
        work = Path(work_dir).resolve()
        self.write_datalist(cases, work / "datalist.json")
        parser = self._parse(self.overrides(cases, out, work))
        by_id = {c.case_id: c for c in cases}
        if parser.get("initialize") is not None:
            self._resolve(parser, "initialize")
        evaluator = self._resolve(parser, "evaluator")
        windows = _find(getattr(evaluator, "inferer", None), BodySlidingWindowInferer)
        post = self._resolve(parser, "postprocessing")
        saver = next((t for t in getattr(post, "transforms", [post]) if isinstance(t, SavePredictiond)), None)
        class_names = list(saver.saver.class_names) if saver is not None else []
        results: list[CaseResult] = []
        clock = {"start": time.perf_counter()}

        def started(engine: Any) -> None:
            clock["start"] = time.perf_counter()
            if windows is not None:
                windows.reset_counts()

        def completed(engine: Any) -> None:
            seconds = time.perf_counter() - clock["start"]
            # after MONAI's decollated post-processing: one dict per case, the case id stays in the batch
            outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
            batches = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
            for item, batch in zip(outputs, batches, strict=True):
                case = by_id[str(batch["case_id"])]
                counts = windows.windows if windows is not None else None
                result = CaseResult(
                    case.case_id, case.source, prediction_path(out, case.case_id), seconds / len(outputs),
                    volumes_ml(item["pred"], case.affine, class_names),
                    counts.computed if counts else 0, counts.skipped if counts else 0,
                )
                results.append(result)
                if on_case is not None:
                    on_case(result)

        evaluator.add_event_handler(Events.GET_BATCH_STARTED, started)
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, completed)
        self._resolve(parser, "run")
        return results

    def describe(self) -> str:
        """One line: the bundle and the configs."""
        return f"{self.bundle_dir.name} ({' + '.join(self.configs)})"


def summary(results: Sequence[CaseResult], seconds: float) -> dict[str, Any]:
    """A JSON-ready summary of a prediction run."""
    return {
        "seconds": seconds,
        "cases": [
            {"case_id": r.case_id, "source": str(r.source), "label_map": str(r.label_map), "seconds": r.seconds,
             "windows_computed": r.windows_computed, "windows_skipped": r.windows_skipped,
             "volumes_ml": {k: round(v, 3) for k, v in r.volumes_ml.items()}}
            for r in results
        ],
    }
