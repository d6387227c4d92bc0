"""Evaluation protocols on the tidy per-case table: A-Eval, Touchstone, multi-run, detection.

Names resolve lazily (see :mod:`medsegzoo.utils.lazy`); to export a name, add one line
to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "AEvalMatrix": "medsegzoo.evaluation.protocols.aeval",
    "AEvalResult": "medsegzoo.evaluation.protocols.aeval",
    "aeval_matrix": "medsegzoo.evaluation.protocols.aeval",
    "aeval_protocol": "medsegzoo.evaluation.protocols.aeval",
    "per_class_matrices": "medsegzoo.evaluation.protocols.aeval",
    "per_class_table": "medsegzoo.evaluation.protocols.aeval",
    "MetricAnalysis": "medsegzoo.evaluation.protocols.touchstone",
    "TouchstoneResult": "medsegzoo.evaluation.protocols.touchstone",
    "aggregate_c": "medsegzoo.evaluation.protocols.touchstone",
    "aggregate_i": "medsegzoo.evaluation.protocols.touchstone",
    "class_summary": "medsegzoo.evaluation.protocols.touchstone",
    "per_case_scores": "medsegzoo.evaluation.protocols.touchstone",
    "touchstone_protocol": "medsegzoo.evaluation.protocols.touchstone",
    "worst_case": "medsegzoo.evaluation.protocols.touchstone",
    "MultiRunSummary": "medsegzoo.evaluation.protocols.multirun",
    "multirun_summary": "medsegzoo.evaluation.protocols.multirun",
    "runs_from_tables": "medsegzoo.evaluation.protocols.multirun",
    "DetectionResult": "medsegzoo.evaluation.protocols.detection",
    "PseudoLabelQuality": "medsegzoo.evaluation.protocols.detection",
    "detection_from_table": "medsegzoo.evaluation.protocols.detection",
    "patient_detection": "medsegzoo.evaluation.protocols.detection",
    "pseudo_label_quality": "medsegzoo.evaluation.protocols.detection",
    "ResourceUsage": "medsegzoo.evaluation.protocols.speed",
    "measure_resources": "medsegzoo.evaluation.protocols.speed",
    "microseconds_per_mm3": "medsegzoo.evaluation.protocols.speed",
    "speed_table": "medsegzoo.evaluation.protocols.speed",
    "volume_mm3": "medsegzoo.evaluation.protocols.speed",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - a list, built from the table above
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
