"""Patient-level tumor detection and voxel-level pseudo-label quality.

Detection (CLIP-Driven Universal Model, paper 002, Table 4): DSC says nothing about false
alarms on scans without a tumor, so each patient is also judged as a whole. A patient is
positive in the ground truth when the tumor class is present; it is predicted positive
when the predicted tumor volume exceeds a threshold (in voxels or mm^3; a threshold filters
isolated false-positive specks). Sensitivity is measured on the positive patients,
specificity on the negative ones.

Pseudo-label quality (TCSeg, paper 004, Fig. 4): PPV = TP / (TP + FP), NPV = TN / (TN + FN)
and recall = TP / (TP + FN) of pseudo-labels against the ground truth, voxel by voxel,
over the voxels marked reliable (all voxels when no reliability mask is given),
accumulated over volumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsegzoo.errors import DataValidationError
from medsegzoo.evaluation.protocols.tables import format_number, markdown_table, require_columns

__all__ = [
    "DetectionResult",
    "PseudoLabelQuality",
    "detection_from_table",
    "mask_volume",
    "patient_detection",
    "pseudo_label_quality",
]


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


def mask_volume(mask: np.ndarray, spacing: Sequence[float] | None = None) -> tuple[int, float]:
    """Voxel count and volume in mm^3 (NaN without spacing) of a binary mask."""
    voxels = int(np.count_nonzero(mask))
    if spacing is None:
        return voxels, float("nan")
    return voxels, voxels * float(np.prod(np.asarray(spacing, dtype=float)))


@dataclass(frozen=True)
class DetectionResult:
    """Patient-level detection counts and rates.

    Attributes:
        tp, fn, tn, fp: patient counts.
        threshold: the predicted-volume threshold (strictly exceeded to count positive).
        unit: ``"voxels"`` or ``"mm3"``.
        per_case: one row per patient: ``case``, ``gt_positive``, ``pred_volume``,
            ``pred_positive``, ``outcome`` (TP/FN/TN/FP).
        label: what was detected (e.g. the tumor class), for the report.
    """

    tp: int
    fn: int
    tn: int
    fp: int
    threshold: float
    unit: str
    per_case: pd.DataFrame
    label: str = "tumor"

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN); NaN without positive patients."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP); NaN without negative patients."""
        return _ratio(self.tn, self.tn + self.fp)

    def summary(self) -> dict[str, float | int | str]:
        """Counts and rates as a flat dict (for JSON and tables)."""
        return {
            "label": self.label,
            "positive_patients": self.tp + self.fn,
            "negative_patients": self.tn + self.fp,
            "tp": self.tp,
            "fn": self.fn,
            "tn": self.tn,
            "fp": self.fp,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "threshold": self.threshold,
            "unit": self.unit,
        }

    def to_markdown(self) -> str:
        """One-row table with counts, sensitivity and specificity."""
        s = self.summary()
        row = pd.DataFrame(
            [
                {
                    "class": s["label"],
                    "sensitivity": f"{format_number(100 * self.sensitivity, 1)} % ({self.tp}/{self.tp + self.fn})",
                    "specificity": f"{format_number(100 * self.specificity, 1)} % ({self.tn}/{self.tn + self.fp})",
                    "TP": self.tp,
                    "FN": self.fn,
                    "TN": self.tn,
                    "FP": self.fp,
                }
            ]
        )
        return (
            f"A patient is predicted positive when the predicted {self.label} volume exceeds "
            f"{self.threshold:g} {self.unit}; positive in the ground truth when the class is present.\n\n"
            + markdown_table(row, index=False)
        )


def patient_detection(
    cases: pd.DataFrame,
    threshold: float = 0.0,
    unit: str = "voxels",
    label: str = "tumor",
) -> DetectionResult:
    """Patient-level sensitivity and specificity from one row per patient.

    Args:
        cases: columns ``case``, ``gt_positive`` (bool) and ``pred_volume`` (in ``unit``).
        threshold: a patient is predicted positive when ``pred_volume > threshold``.
        unit: unit of ``pred_volume`` and the threshold (``"voxels"`` or ``"mm3"``).
        label: name of the detected class, for the report.

    Returns:
        :class:`DetectionResult`.

    Raises:
        DataValidationError: missing columns, a case listed twice, NaN volumes, or a
            negative threshold.
    """
    require_columns(cases, ["case", "gt_positive", "pred_volume"], "detection table")
    if threshold < 0:
        raise DataValidationError(f"detection threshold must be >= 0, got {threshold}")
    if cases["case"].duplicated().any():
        dup = cases.loc[cases["case"].duplicated(), "case"].iloc[0]
        raise DataValidationError(f"detection table lists case {dup!r} more than once")
    vol = cases["pred_volume"].to_numpy(dtype=float)
    if not np.isfinite(vol).all():
        bad = cases.loc[~np.isfinite(vol), "case"].tolist()[:5]
        raise DataValidationError(f"detection table: predicted volume missing for cases {bad}")
    gt = cases["gt_positive"].astype(bool).to_numpy()
    pred = vol > threshold
    outcome = np.where(gt, np.where(pred, "TP", "FN"), np.where(pred, "FP", "TN"))
    per_case = pd.DataFrame(
        {"case": cases["case"].to_numpy(), "gt_positive": gt, "pred_volume": vol, "pred_positive": pred, "outcome": outcome}
    )
    counts = {k: int((outcome == k).sum()) for k in ("TP", "FN", "TN", "FP")}
    return DetectionResult(
        tp=counts["TP"], fn=counts["FN"], tn=counts["TN"], fp=counts["FP"],
        threshold=float(threshold), unit=unit, per_case=per_case, label=label,
    )


def detection_from_table(
    table: pd.DataFrame,
    tumor_class: str,
    threshold: float = 0.0,
    unit: str = "voxels",
) -> DetectionResult:
    """Detection from the tidy per-case table's rows of ``tumor_class``.

    Ground truth comes from ``gt_present``. The predicted volume comes from
    ``pred_voxels`` (``unit="voxels"``) or ``pred_volume_mm3`` (``unit="mm3"``) when the
    engine wrote them; with neither column only ``threshold=0`` can be honoured (a
    patient is positive when ``pred_present``), any other threshold is an error rather
    than a silently different rule.

    Raises:
        DataValidationError: class absent, unknown unit, or a threshold without volumes.
    """
    require_columns(table, ["case", "class", "gt_present"], "per-case table")
    rows = table[table["class"] == tumor_class]
    if rows.empty:
        raise DataValidationError(f"per-case table has no rows for class {tumor_class!r}; classes: {sorted(table['class'].unique())}")
    column = {"voxels": "pred_voxels", "mm3": "pred_volume_mm3"}.get(unit)
    if column is None:
        raise DataValidationError(f"detection unit must be 'voxels' or 'mm3', got {unit!r}")
    if column in rows.columns:
        volume = rows[column].astype(float)
    elif threshold == 0 and "pred_present" in rows.columns:
        volume = rows["pred_present"].astype(bool).astype(float)
    else:
        raise DataValidationError(
            f"per-case table has no {column!r} column; a detection threshold of {threshold:g} {unit} needs predicted volumes"
        )
    cases = pd.DataFrame({"case": rows["case"].to_numpy(), "gt_positive": rows["gt_present"].astype(bool).to_numpy(), "pred_volume": volume.to_numpy()})
    return patient_detection(cases, threshold, unit, label=tumor_class)


@dataclass
class PseudoLabelQuality:
    """Accumulates voxel counts of pseudo-labels against the ground truth.

    Use :meth:`update` per volume, then read :attr:`ppv`, :attr:`npv`, :attr:`recall`.
    Foreground is ``label > 0`` unless ``label_value`` picks one class.

    Attributes:
        label_value: class value treated as foreground (None: any non-zero value).
        tp, fp, tn, fn: accumulated voxel counts.
        reliable_voxels, total_voxels: how many voxels were counted, and seen.
    """

    label_value: int | None = None
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    reliable_voxels: int = 0
    total_voxels: int = 0

    def _foreground(self, x: np.ndarray) -> np.ndarray:
        return x > 0 if self.label_value is None else x == self.label_value

    def update(self, pseudo: np.ndarray, gt: np.ndarray, reliable: np.ndarray | None = None) -> PseudoLabelQuality:
        """Add one volume.

        Args:
            pseudo: pseudo-label map (or binary mask).
            gt: ground-truth label map, same shape.
            reliable: boolean mask of voxels marked reliable (None: all voxels).

        Returns:
            self, for chaining.

        Raises:
            DataValidationError: shapes differ.
        """
        if pseudo.shape != gt.shape or (reliable is not None and reliable.shape != gt.shape):
            shapes = (pseudo.shape, gt.shape, None if reliable is None else reliable.shape)
            raise DataValidationError(f"pseudo-label, ground truth and reliability mask shapes differ: {shapes}")
        p, g = self._foreground(np.asarray(pseudo)), self._foreground(np.asarray(gt))
        self.total_voxels += p.size
        if reliable is not None:
            keep = np.asarray(reliable, dtype=bool)
            p, g = p[keep], g[keep]
        self.reliable_voxels += p.size
        tp = int(np.count_nonzero(p & g))
        fp = int(np.count_nonzero(p)) - tp
        fn = int(np.count_nonzero(g)) - tp
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += int(p.size) - tp - fp - fn
        return self

    @property
    def ppv(self) -> float:
        """TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        """TN / (TN + FN)."""
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def coverage(self) -> float:
        """Fraction of the voxels seen that were marked reliable."""
        return _ratio(self.reliable_voxels, self.total_voxels)

    def summary(self) -> dict[str, float | int]:
        """Counts and rates as a flat dict."""
        return {
            "ppv": self.ppv, "npv": self.npv, "recall": self.recall, "coverage": self.coverage,
            "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
            "reliable_voxels": self.reliable_voxels, "total_voxels": self.total_voxels,
        }


def pseudo_label_quality(
    pseudo: np.ndarray | Sequence[np.ndarray],
    gt: np.ndarray | Sequence[np.ndarray],
    reliable: np.ndarray | Sequence[np.ndarray] | None = None,
    label_value: int | None = None,
) -> PseudoLabelQuality:
    """PPV, NPV and recall of pseudo-labels over one volume or a list of volumes.

    Args:
        pseudo: pseudo-label map(s).
        gt: ground-truth map(s), same shapes.
        reliable: reliability mask(s) (None: every voxel counts).
        label_value: foreground class (None: any non-zero value).

    Returns:
        The accumulated :class:`PseudoLabelQuality`.

    Raises:
        DataValidationError: different numbers of volumes or shapes.
    """
    single = isinstance(pseudo, np.ndarray)
    ps = [pseudo] if single else list(pseudo)
    gs = [gt] if isinstance(gt, np.ndarray) else list(gt)
    rs: list[np.ndarray | None]
    if reliable is None:
        rs = [None] * len(ps)
    else:
        rs = [reliable] if isinstance(reliable, np.ndarray) else list(reliable)
    if not (len(ps) == len(gs) == len(rs)):
        raise DataValidationError(f"pseudo-label quality: {len(ps)} pseudo-labels, {len(gs)} ground truths, {len(rs)} masks")
    q = PseudoLabelQuality(label_value=label_value)
    for p, g, r in zip(ps, gs, rs):
        q.update(p, g, r)
    return q
