"""Semi-supervised training: labeled + unlabeled batches from two loaders, an EMA teacher.

Three pieces a bundle config wires together (``bundles/tcseg_semi_supervised_segmentation``):

* :func:`semi_supervised_split`: the labeled and unlabeled cases of a datalist. The first
  ``labeled_ratio`` of the ``training`` split (in datalist order, as the UA-MT family takes
  the first N cases of ``train.list``) keep their labels; the other training cases and every
  ``unlabeled`` entry are used without labels. Bad input fails before training starts: a
  ratio that leaves no labeled case, no unlabeled case for a semi-supervised run, labeled
  cases that label different classes.
* :class:`TwoStreamLoader`: one iterable of ``{"labeled": batch, "unlabeled": batch}`` made
  from two ordinary data loaders (2 + 2 in the paper), each re-started when it runs out.
  A fixed ``iterations_per_epoch`` turns an iteration budget (20 000) into ignite epochs.
* :class:`SemiSupervisedTrainer`: MONAI's :class:`~monai.engines.SupervisedTrainer` with an
  iteration that runs an objective on the student, the EMA teacher and both batches (for
  TCSeg :class:`~medsegzoo.losses.tcseg.TCSegLoss`). The teacher is ignite's
  :class:`~ignite.handlers.EMAHandler` (``ema = (1 - m) ema + m student`` after every
  iteration; ``m = 0.01`` is the mean-teacher decay 0.99), so it is saved, restored and
  updated by the same event machinery as everything else. By default the teacher runs in
  train mode, as the released TCSeg code and the UA-MT family run theirs (dropout on,
  BatchNorm on batch statistics, its buffers its own); ``teacher_mode="eval"`` runs it in
  eval mode with the student's BatchNorm statistics copied after every update.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from ignite.handlers import EMAHandler
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

from medsegzoo.data.datalist import load_datalist, load_split
from medsegzoo.engines.precision import MixedPrecisionTrainer
from medsegzoo.errors import DataValidationError, MedSegZooError

__all__ = [
    "TEACHER_MODES",
    "SemiSupervisedTrainer",
    "TwoStreamLoader",
    "overlap_for_stride",
    "require_checkpoint",
    "semi_supervised_split",
]

LABELED, UNLABELED = "labeled", "unlabeled"
TEACHER_MODES = ("train", "eval")


def semi_supervised_split(
    datalist: str | os.PathLike | Mapping[str, Any],
    dataset_dir: str | os.PathLike | None = None,
    labeled_ratio: float | None = None,
    labeled_count: int | None = None,
    key: str = "training",
    require_unlabeled: bool = True,
    order_file: str | os.PathLike | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Labeled and unlabeled cases (absolute paths) of a datalist.

    Args:
        datalist: medsegzoo/MONAI datalist JSON file or dict.
        dataset_dir: folder its relative paths start from (None: the datalist's rule).
        labeled_ratio: fraction of the ``key`` split that keeps its labels (0.1 / 0.2 in TCSeg);
            ``round(ratio * n)`` cases, the first ones in datalist order.
        labeled_count: an exact number of labeled cases instead of a ratio (8 for LA 10 %).
        key: the split holding the training cases.
        require_unlabeled: fail when no unlabeled case is left (semi-supervised runs).
        order_file: a list file (one case name per line, e.g. LA's ``train.list``) that orders
            the cases before the first ones are taken, so the labeled subset is the one the
            literature uses; cases it does not name come last, in datalist order.

    Returns:
        ``{"labeled": [...], "unlabeled": [...]}``; unlabeled entries carry no ``label``.

    Raises:
        DataValidationError: (naming the datalist) neither or both of ratio/count given, a
            ratio outside (0, 1], no labeled case, a labeled case without a label, labeled
            cases that disagree on their ``labeled_classes`` or source data set, no unlabeled
            case when one is required.
    """
    where = str(datalist) if not isinstance(datalist, Mapping) else f"datalist {datalist.get('name', '<dict>')!r}"
    data = load_datalist(datalist) if not isinstance(datalist, Mapping) else datalist
    cases = load_split(datalist if not isinstance(datalist, Mapping) else data, key, dataset_dir)
    if order_file is not None:
        cases = _ordered(cases, order_file, where)
    if (labeled_ratio is None) == (labeled_count is None):
        raise DataValidationError(f"{where}: give exactly one of labeled_ratio and labeled_count")
    if labeled_ratio is not None:
        if not 0.0 < labeled_ratio <= 1.0:
            raise DataValidationError(f"{where}: labeled_ratio must be in (0, 1], got {labeled_ratio}")
        n_labeled = int(round(labeled_ratio * len(cases)))
        asked = f"labeled_ratio {labeled_ratio} of {len(cases)} '{key}' cases"
    else:
        n_labeled = int(labeled_count)  # type: ignore[arg-type]
        asked = f"labeled_count {labeled_count} of {len(cases)} '{key}' cases"
    if n_labeled < 1:
        raise DataValidationError(f"{where}: {asked} leaves no labeled case; raise the ratio or add labeled cases")
    if n_labeled > len(cases):
        raise DataValidationError(f"{where}: {asked}: there are not that many cases")
    labeled, rest = cases[:n_labeled], cases[n_labeled:]
    missing = [c.get("case_id", c.get("image")) for c in labeled if not c.get("label")]
    if missing:
        raise DataValidationError(f"{where}: labeled cases without a 'label' file: {missing}")
    _check_same_classes(labeled, where)
    unlabeled = [{k: v for k, v in c.items() if k not in ("label", "masks")} for c in rest]
    unlabeled += load_split(datalist if not isinstance(datalist, Mapping) else data, UNLABELED, dataset_dir)
    if require_unlabeled and not unlabeled:
        raise DataValidationError(
            f"{where}: no unlabeled case: {asked} uses every training case and the 'unlabeled' split is empty "
            "(lower the ratio, add unlabeled images, or train with supervised_only)"
        )
    return {LABELED: labeled, UNLABELED: unlabeled}


def _ordered(cases: list[dict[str, Any]], order_file: str | os.PathLike, where: str) -> list[dict[str, Any]]:
    """Cases sorted by their position in a list file (first path component of each line)."""
    path = Path(order_file)
    if not path.is_file():
        raise DataValidationError(f"{where}: order file {path} does not exist")
    names = [line.strip().split("/")[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rank = {name: i for i, name in enumerate(names)}
    return sorted(cases, key=lambda c: rank.get(str(c.get("case_id")), len(rank)))  # stable: unnamed keep their order


def _check_same_classes(labeled: list[dict[str, Any]], where: str) -> None:
    """All labeled cases must label the same classes of the same source label map."""
    seen: dict[tuple, list[str]] = {}
    for case in labeled:
        classes = tuple(sorted(case["labeled_classes"])) if "labeled_classes" in case else None
        seen.setdefault((case.get("dataset"), classes), []).append(str(case.get("case_id", case.get("image"))))
    if len(seen) > 1:
        detail = "; ".join(f"dataset={d!r} classes={list(c) if c is not None else 'unspecified'}: {ids[:5]}" for (d, c), ids in seen.items())
        raise DataValidationError(
            f"{where}: labeled cases disagree on their label classes ({detail}); a semi-supervised run needs one "
            "label map for every labeled case (convert them to one system first)"
        )


def require_checkpoint(path: str | os.PathLike) -> str:
    """Fail early, with the reason, when an inference checkpoint does not exist.

    A missing ``model_best.pt`` usually means the run had no validation split (TCSeg's rule:
    then no "best" checkpoint is selected, only "last" exists).

    Returns:
        The path as a string.

    Raises:
        MedSegZooError: the file does not exist.
    """
    if not os.path.isfile(path):
        hint = (
            " A 'best' checkpoint exists only when the datalist has a validation split (model selection never "
            "uses the test split); use checkpoint 'last'."
            if os.path.basename(str(path)).startswith("model_best")
            else " Train first (run training) or point ckpt_dir at the run's models folder."
        )
        raise MedSegZooError(f"checkpoint {path} does not exist.{hint}")
    return str(path)


def overlap_for_stride(patch_size: Sequence[int], stride: Sequence[int]) -> list[float]:
    """Per-axis ``overlap`` of MONAI's sliding window that yields the given window strides.

    TCSeg states strides (18 x 18 x 4 for LA, 16^3 otherwise); MONAI takes overlaps and steps
    by ``int(roi * (1 - overlap))``. Half a voxel is added before dividing so the truncation
    lands on the stride itself and not one below it.

    Args:
        patch_size: window size per axis.
        stride: step per axis, ``1 <= stride <= patch``.

    Returns:
        Overlaps in [0, 1).

    Raises:
        MedSegZooError: lengths differ or a stride is out of range.
    """
    if len(patch_size) != len(stride) or any(not 1 <= s <= p for s, p in zip(stride, patch_size)):
        raise MedSegZooError(f"overlap_for_stride: need 1 <= stride <= patch per axis, got patch {list(patch_size)}, stride {list(stride)}")
    return [0.0 if s == p else 1.0 - (s + 0.5) / p for s, p in zip(stride, patch_size)]


class TwoStreamLoader:
    """Pairs of batches ``{"labeled": ..., "unlabeled": ...}`` from two loaders.

    Each loader restarts when it runs out, so an epoch can be any number of iterations.

    Args:
        labeled: loader of labeled batches.
        unlabeled: loader of unlabeled batches, or None (supervised-only: ``"unlabeled"`` is None).
        iterations_per_epoch: iterations per ignite epoch (default: the labeled loader's length).

    Raises:
        MedSegZooError: an empty loader (a loader with no batch would stall training forever).
    """

    def __init__(self, labeled: Iterable, unlabeled: Iterable | None = None, iterations_per_epoch: int | None = None) -> None:
        for name, loader in ((LABELED, labeled), (UNLABELED, unlabeled)):
            if loader is not None and hasattr(loader, "__len__") and len(loader) == 0:  # type: ignore[arg-type]
                raise MedSegZooError(
                    f"TwoStreamLoader: the {name} loader is empty (no case, or fewer cases than its batch size with "
                    "drop_last); check the datalist split and the batch size"
                )
        self.labeled, self.unlabeled = labeled, unlabeled
        length = iterations_per_epoch if iterations_per_epoch is not None else len(labeled)  # type: ignore[arg-type]
        if length < 1:
            raise MedSegZooError(f"TwoStreamLoader: iterations_per_epoch must be >= 1, got {length}")
        self.iterations_per_epoch = int(length)
        self._streams: dict[str, Iterator | None] = {LABELED: None, UNLABELED: None}

    def __len__(self) -> int:
        return self.iterations_per_epoch

    def _next(self, name: str, loader: Iterable) -> Any:
        for _ in range(2):
            stream = self._streams[name]
            if stream is None:
                stream = self._streams[name] = iter(loader)
            try:
                return next(stream)
            except StopIteration:
                self._streams[name] = None
        raise MedSegZooError(f"TwoStreamLoader: the {name} loader yields no batch")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _ in range(self.iterations_per_epoch):
            yield {
                LABELED: self._next(LABELED, self.labeled),
                UNLABELED: None if self.unlabeled is None else self._next(UNLABELED, self.unlabeled),
            }


class SemiSupervisedTrainer(MixedPrecisionTrainer):
    """SupervisedTrainer whose iteration runs a student/teacher objective on two batches.

    The objective is called as ``loss_function(network, teacher, labeled_image, label,
    unlabeled_image, iteration)`` and returns a dict with a differentiable ``"loss"``, a
    ``"pred"`` (the student's logits on the labeled images) and any scalar terms, which land
    in ``engine.state.output`` (for :class:`~monai.handlers.StatsHandler`: ``"loss"`` and
    ``"terms"``). An objective with ``needs_unlabeled = False`` (supervised-only baseline)
    gets no teacher and no unlabeled batch.

    Args:
        device: training device.
        max_epochs: epochs of ``train_data_loader`` (iterations = epochs x its length).
        train_data_loader: a :class:`TwoStreamLoader`.
        network: the student.
        optimizer: optimizer of the student.
        loss_function: the objective (see above).
        ema_momentum: EMA update weight of the student (``1 - decay``; 0.01 = decay 0.99).
        ema_momentum_warmup: optional start value of a linear momentum warm-up (ignite's).
        ema_warmup_iterations: length of that warm-up.
        teacher_mode: ``"train"`` (released code: the teacher's dropout is on and its BatchNorm
            uses batch statistics; ignite's ``handle_buffers="ema_train"``) or ``"eval"`` (the
            teacher in eval mode with the student's running statistics copied after every
            update; ignite's ``handle_buffers="copy"``). Set before every step.
        image_key: key of images in both batches.
        label_key: key of labels in the labeled batch.
        kwargs: everything else :class:`~monai.engines.SupervisedTrainer` takes
            (``train_handlers``, ``amp`` / ``amp_dtype`` as in
            :class:`~medsegzoo.engines.precision.MixedPrecisionTrainer`: the student's and the
            teacher's forward passes autocast, the objective's terms are float32;
            ``decollate`` defaults to False because the two-stream batch is a nested dict).

    Attributes:
        teacher: the EMA teacher (``None`` for a supervised-only objective); put it into the
            checkpoint's ``save_dict`` so that a resumed run continues with it.
        ema_handler: the attached :class:`~ignite.handlers.EMAHandler`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: TwoStreamLoader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable[..., Mapping[str, torch.Tensor]],
        ema_momentum: float = 0.01,
        ema_momentum_warmup: float | None = None,
        ema_warmup_iterations: int | None = None,
        teacher_mode: str = "train",
        image_key: str = CommonKeys.IMAGE,
        label_key: str = CommonKeys.LABEL,
        **kwargs: Any,
    ) -> None:
        if teacher_mode not in TEACHER_MODES:
            raise MedSegZooError(f"SemiSupervisedTrainer: teacher_mode must be one of {TEACHER_MODES}, got {teacher_mode!r}")
        kwargs.setdefault("decollate", False)
        kwargs.setdefault("epoch_length", len(train_data_loader))  # MONAI needs it for non-DataLoader iterables
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        self.image_key, self.label_key = image_key, label_key
        self.teacher_mode = teacher_mode
        self.needs_unlabeled = bool(getattr(loss_function, "needs_unlabeled", True))
        if self.needs_unlabeled and getattr(train_data_loader, "unlabeled", None) is None:
            raise MedSegZooError("SemiSupervisedTrainer: the objective needs unlabeled data but the loader has no unlabeled stream")
        self.ema_handler: EMAHandler | None = None
        self.teacher: torch.nn.Module | None = None
        if self.needs_unlabeled:
            buffers = "ema_train" if teacher_mode == "train" else "copy"
            self.ema_handler = EMAHandler(
                network, momentum=ema_momentum, momentum_warmup=ema_momentum_warmup, warmup_iters=ema_warmup_iterations, handle_buffers=buffers
            )
            # a resumed run restores engine.state itself; the momentum attribute is then re-created
            self.ema_handler.attach(self, name="ema_momentum", warn_if_exists=False)
            self.teacher = self.ema_handler.ema_model

    def _iteration(self, engine: Engine, batchdata: dict[str, Any]) -> dict[str, Any]:
        """One optimisation step on a labeled and an unlabeled batch."""
        if batchdata is None or batchdata.get(LABELED) is None:
            raise MedSegZooError("SemiSupervisedTrainer: a batch without labeled data")
        labeled = batchdata[LABELED]
        image = labeled[self.image_key].to(engine.state.device, non_blocking=engine.non_blocking)  # type: ignore[attr-defined]
        label = labeled[self.label_key].to(engine.state.device, non_blocking=engine.non_blocking)  # type: ignore[attr-defined]
        unlabeled_image = None
        if self.needs_unlabeled:
            unlabeled = batchdata.get(UNLABELED)
            if unlabeled is None:
                raise MedSegZooError("SemiSupervisedTrainer: the semi-supervised objective got no unlabeled batch")
            unlabeled_image = unlabeled[self.image_key].to(engine.state.device, non_blocking=engine.non_blocking)  # type: ignore[attr-defined]
        engine.network.train()  # type: ignore[attr-defined]
        if self.teacher is not None:  # a validation or a restored checkpoint must not leave it in another mode
            self.teacher.train(self.teacher_mode == "train")
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)  # type: ignore[attr-defined]
        # the objective calls both networks itself: hand it autocast forwards (float32 outputs)
        student = self.autocast.wrap(engine.network)  # type: ignore[attr-defined]
        teacher = self.autocast.wrap(self.teacher) if self.teacher is not None else None
        terms = engine.loss_function(student, teacher, image, label, unlabeled_image, engine.state.iteration)  # type: ignore[attr-defined]
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        # MONAI's iteration events, so gradient clipping and other handlers work as with SupervisedTrainer
        if engine.amp and engine.scaler is not None:  # type: ignore[attr-defined]  # float16 on CUDA
            engine.scaler.scale(terms["loss"]).backward()  # type: ignore[attr-defined]
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)  # type: ignore[attr-defined]
            engine.scaler.update()  # type: ignore[attr-defined]
        else:
            terms["loss"].backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()  # type: ignore[attr-defined]
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        scalars = {k: float(v.detach()) for k, v in terms.items() if k not in ("loss", "pred") and torch.is_tensor(v) and v.numel() == 1}
        return {
            CommonKeys.IMAGE: image,
            CommonKeys.LABEL: label,
            CommonKeys.PRED: terms["pred"],
            CommonKeys.LOSS: terms["loss"].detach(),
            "terms": scalars,
        }
