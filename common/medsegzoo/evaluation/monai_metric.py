"""The metrics as a MONAI ``CumulativeIterationMetric`` and an ignite handler for bundle evaluators.

:class:`SegmentationMetrics` computes DSC, NSD, HD95 and ASSD per case and class with
:func:`medsegzoo.evaluation.metrics.compute_case_metrics` (so the values equal the
``medsegzoo evaluate`` command's) and buffers them like MONAI's ``DiceMetric``.
:class:`SegmentationMetricsHandler` wraps it in :class:`monai.handlers.IgniteMetricHandler`
for a bundle's ``evaluate.json``::

    "val_nsd": {
        "_target_": "medsegzoo.evaluation.SegmentationMetricsHandler",
        "class_names": "@class_names",
        "metric": "nsd",
        "tolerances_mm": "touchstone",
        "convention": "touchstone",
        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"
    }

Inputs are batch-first tensors (or lists of channel-first tensors): either label maps
``(B, 1, H, W, D)`` with integer values (cheapest: no one-hot) or one-hot / multi-hot masks
``(B, C, H, W, D)``. The voxel spacing comes from the ``spacing`` argument of the call, else
from the ``affine`` of a MONAI ``MetaTensor`` (ground truth first), else from the
``spacing`` given at construction; without any of them the metric refuses to guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from medsegzoo.errors import DataValidationError, UnknownNameError
from medsegzoo.evaluation.conventions import EmptyMaskConvention
from medsegzoo.evaluation.metrics import METRICS, compute_case_metrics

__all__ = ["FLAG_COLUMNS", "SegmentationMetrics", "SegmentationMetricsHandler", "spacing_from_affine"]

# per-class flags buffered after the metric values (1.0 / 0.0)
FLAG_COLUMNS: tuple[str, ...] = ("gt_present", "pred_present")


def spacing_from_affine(affine: Any) -> tuple[float, float, float]:
    """Voxel spacing along the three array axes: the lengths of the affine's first three columns."""
    matrix = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(matrix[:3, :3], axis=0))  # type: ignore[return-value]


def _integer_labels(array: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array
    as_int = array.astype(np.int32)
    if not np.array_equal(as_int, array):
        raise DataValidationError(
            f"SegmentationMetrics: one-channel {what} holds non-integer values; pass label maps "
            f"(e.g. AsDiscrete(argmax=True)) or one-hot masks, not probabilities"
        )
    return as_int


class SegmentationMetrics(CumulativeIterationMetric):
    """DSC / NSD / HD95 / ASSD per case and class, buffered across iterations.

    Args:
        class_names: foreground class names in label-value / channel order (value or
            channel ``i + 1`` is ``class_names[i]``), or a mapping value/channel -> name.
        metric: the metric that :meth:`aggregate` reduces (and the ignite handler reports).
        metrics: all metrics computed and buffered, a subset of ("dsc", "nsd", "hd95", "assd").
        tolerances_mm: NSD tolerance preset ("flare22", "aeval", "touchstone"), a number, or
            a class -> mm mapping.
        convention: empty-mask convention, "aeval" or "touchstone".
        spacing: voxel spacing in mm used when the inputs carry none.
        reduction: MONAI reduction of :meth:`aggregate` ("mean": class mean per case, then
            mean over cases, NaN left out; "none", "mean_batch", ...).
        get_not_nans: :meth:`aggregate` also returns the count of defined values.
        hd_percentile: percentile of the robust Hausdorff distance (95: HD95).

    The buffer holds, per case, a ``(classes, len(metrics) + 2)`` tensor: the metrics in
    ``metrics`` order, then ``gt_present`` and ``pred_present`` as 1.0 / 0.0.
    """

    def __init__(
        self,
        class_names: Sequence[str] | Mapping[int, str],
        metric: str = "dsc",
        metrics: Sequence[str] = METRICS,
        tolerances_mm: str | float | Mapping[str, float] | None = "touchstone",
        convention: str | EmptyMaskConvention = "aeval",
        spacing: Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        hd_percentile: float = 95.0,
    ) -> None:
        super().__init__()
        self.classes: dict[int, str] = (
            {int(k): str(v) for k, v in class_names.items()}
            if isinstance(class_names, Mapping)
            else {i + 1: str(n) for i, n in enumerate(class_names)}
        )
        if not self.classes:
            raise DataValidationError("SegmentationMetrics needs at least one class name")
        self.metrics = tuple(str(m).lower() for m in metrics)
        self.metric = str(metric).lower()
        unknown = [m for m in (*self.metrics, self.metric) if m not in METRICS]
        if unknown or self.metric not in self.metrics:
            raise UnknownNameError(
                f"metric {self.metric!r} must be one of the computed metrics {list(self.metrics)}; "
                f"known metrics: {list(METRICS)}"
            )
        self.tolerances_mm = tolerances_mm
        self.convention = convention
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.reduction = reduction
        self.get_not_nans = get_not_nans
        self.hd_percentile = hd_percentile

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the last buffer axis: the metrics, then the presence flags."""
        return (*self.metrics, *FLAG_COLUMNS)

    def _item_spacing(self, index: int, y_pred: torch.Tensor, y: torch.Tensor, spacing: Any) -> tuple[float, ...]:
        if spacing is not None:
            values = np.asarray(spacing.detach().cpu() if isinstance(spacing, torch.Tensor) else spacing, dtype=np.float64)
            return tuple(values[index] if values.ndim == 2 else values)
        for tensor in (y, y_pred):
            affine = getattr(tensor, "affine", None)
            if affine is not None:
                affine = affine[index] if affine.ndim == 3 else affine
                return spacing_from_affine(affine)
        if self.spacing is not None:
            return self.spacing
        raise DataValidationError(
            "SegmentationMetrics: no voxel spacing: pass spacing=... to the call or the constructor, "
            "or MetaTensors with an affine (MONAI LoadImage); distances in voxels would be silently wrong"
        )

    def _rows(self, pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> list[dict[str, Any]]:
        if pred.shape[0] == 1 and gt.shape[0] == 1 and not (len(self.classes) == 1 and 0 in self.classes):
            # label maps: integer values name the classes
            return compute_case_metrics(
                _integer_labels(pred[0], "prediction"), _integer_labels(gt[0], "ground truth"),
                spacing, self.classes, self.tolerances_mm, self.convention, self.metrics, self.hd_percentile,
            )
        if pred.shape[0] != gt.shape[0]:
            raise DataValidationError(f"prediction has {pred.shape[0]} channels, ground truth {gt.shape[0]}")
        outside = [c for c in self.classes if not 0 <= c < pred.shape[0]]
        if outside:
            raise DataValidationError(f"class channels {outside} do not exist in one-hot inputs with {pred.shape[0]} channels")
        triples = [(name, pred[c] > 0.5, gt[c] > 0.5) for c, name in self.classes.items()]
        return compute_case_metrics(
            None, None, spacing, triples, self.tolerances_mm, self.convention, self.metrics, self.hd_percentile
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, spacing: Any = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """Metrics of each case of a batch: a float64 tensor ``(B, classes, len(columns))``."""
        if y is None:
            raise DataValidationError("SegmentationMetrics needs the ground truth y")
        if y_pred.ndim != 5 or y.ndim != 5:
            raise DataValidationError(f"expected batch-first 3D tensors (B, C, H, W, D), got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        out = torch.empty((y_pred.shape[0], len(self.classes), len(self.columns)), dtype=torch.float64)
        for b in range(y_pred.shape[0]):
            pred = y_pred[b].detach().cpu().numpy()
            gt = y[b].detach().cpu().numpy()
            rows = self._rows(pred, gt, self._item_spacing(b, y_pred, y, spacing))
            for c, row in enumerate(rows):
                out[b, c] = torch.tensor([float(row[m]) for m in self.metrics] + [float(row[f]) for f in FLAG_COLUMNS])
        return out

    def values(self, metric: str | None = None) -> torch.Tensor:
        """Buffered values ``(cases, classes)`` of one metric (default: ``self.metric``)."""
        column = self.columns.index(self._check(metric or self.metric))
        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor):
            raise DataValidationError("SegmentationMetrics: nothing buffered yet")
        return buffer[..., column].clone()

    def _check(self, metric: str) -> str:
        if metric not in self.columns:
            raise UnknownNameError(f"SegmentationMetrics buffers {list(self.columns)}, not {metric!r}")
        return metric

    def aggregate(self, reduction: MetricReduction | str | None = None, metric: str | None = None):  # type: ignore[override]
        """Reduce the buffered values of ``metric`` (default ``self.metric``), NaN left out.

        Returns:
            The reduced tensor, and the not-NaN count when ``get_not_nans``.
        """
        f, not_nans = do_metric_reduction(self.values(metric), reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f

    def table(self, case_ids: Sequence[str] | None = None):
        """The buffer as the tidy per-case table (pandas DataFrame) of ``medsegzoo evaluate``.

        Args:
            case_ids: names of the buffered cases in order (default: "case_0", "case_1", ...).
        """
        import pandas as pd

        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor):
            raise DataValidationError("SegmentationMetrics: nothing buffered yet")
        values = buffer.numpy()
        ids = list(case_ids) if case_ids is not None else [f"case_{i}" for i in range(values.shape[0])]
        if len(ids) != values.shape[0]:
            raise DataValidationError(f"{len(ids)} case ids for {values.shape[0]} buffered cases")
        records = []
        for i, case in enumerate(ids):
            for c, name in enumerate(self.classes.values()):
                record: dict[str, Any] = {"case": case, "class": name}
                record.update({m: float(values[i, c, k]) for k, m in enumerate(self.metrics)})
                record.update({f: bool(values[i, c, len(self.metrics) + k]) for k, f in enumerate(FLAG_COLUMNS)})
                records.append(record)
        return pd.DataFrame.from_records(records)


class SegmentationMetricsHandler(IgniteMetricHandler):
    """Ignite handler around :class:`SegmentationMetrics` for bundle evaluators (``evaluate.json``).

    ``engine.state.metrics[name]`` receives the mean of ``metric`` (class mean per case,
    then the mean over cases, NaN left out); with ``save_details`` the per-case, per-class
    buffer goes to ``engine.state.metric_details[name]``.

    Args:
        class_names: as :class:`SegmentationMetrics`.
        metric: the metric reported, as :class:`SegmentationMetrics`.
        output_transform: picks ``(y_pred, y)`` from the engine output, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: keep the per-case values in ``engine.state.metric_details``.
        **metric_kwargs: the other arguments of :class:`SegmentationMetrics` (``metrics``,
            ``tolerances_mm``, ``convention``, ``spacing``, ``reduction``, ``hd_percentile``).
    """

    def __init__(
        self,
        class_names: Sequence[str] | Mapping[int, str],
        metric: str = "dsc",
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        **metric_kwargs: Any,
    ) -> None:
        metric_fn = SegmentationMetrics(class_names, metric=metric, **metric_kwargs)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
