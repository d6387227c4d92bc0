"""Evaluation engine: exact and fast metrics, the case engine, protocols, statistics, reports.

* metrics (DSC, NSD, HD95, ASSD) per class and case: :mod:`medsegzoo.evaluation.metrics`,
  the surfel machinery behind them: :mod:`medsegzoo.evaluation.surface`, empty-mask
  conventions and NSD tolerance presets: :mod:`medsegzoo.evaluation.conventions`;
* folders / datalists of cases to the tidy per-case table: :mod:`medsegzoo.evaluation.cases`;
* the MONAI metric and ignite handler face: :mod:`medsegzoo.evaluation.monai_metric`;
* statistics, protocols (A-Eval, Touchstone, multi-run, detection), reports and plots:
  :mod:`~medsegzoo.evaluation.stats`, :mod:`~medsegzoo.evaluation.protocols`,
  :mod:`~medsegzoo.evaluation.reports`, :mod:`~medsegzoo.evaluation.plots`.

Names resolve lazily (see :mod:`medsegzoo.utils.lazy`): ``import medsegzoo.evaluation``
stays cheap and a bundle config imports only the module it uses. To export a name, add one
line to ``_EXPORTS``: public name -> defining module.
"""

from __future__ import annotations

from medsegzoo.utils.lazy import lazy_exports

_METRICS = "medsegzoo.evaluation.metrics"
_SURFACE = "medsegzoo.evaluation.surface"
_CONVENTIONS = "medsegzoo.evaluation.conventions"
_CASES = "medsegzoo.evaluation.cases"
_MONAI = "medsegzoo.evaluation.monai_metric"
_STATS = "medsegzoo.evaluation.stats"
_REPORTS = "medsegzoo.evaluation.reports"
_PLOTS = "medsegzoo.evaluation.plots"

_EXPORTS: dict[str, str] = {
    # metrics (metrics helper)
    "METRICS": _METRICS,
    "compute_case_metrics": _METRICS,
    "compute_class_metrics": _METRICS,
    "dice_coefficient": _METRICS,
    "label_bounding_boxes": _METRICS,
    "SurfaceDistances": _SURFACE,
    "compute_surface_distances": _SURFACE,
    "surfel_area_table": _SURFACE,
    "AEVAL": _CONVENTIONS,
    "TOUCHSTONE": _CONVENTIONS,
    "CONVENTIONS": _CONVENTIONS,
    "EmptyMaskConvention": _CONVENTIONS,
    "NSD_TOLERANCES_MM": _CONVENTIONS,
    "ToleranceTable": _CONVENTIONS,
    "get_convention": _CONVENTIONS,
    "get_tolerances": _CONVENTIONS,
    # case engine
    "CasePair": _CASES,
    "EvaluationResult": _CASES,
    "evaluate_cases": _CASES,
    "evaluate_pairs": _CASES,
    "pair_cases": _CASES,
    # MONAI / ignite face
    "SegmentationMetrics": _MONAI,
    "SegmentationMetricsHandler": _MONAI,
    # statistics (protocols helper)
    "CORRECTIONS": _STATS,
    "BootstrapRanking": _STATS,
    "GroupComparison": _STATS,
    "adjust_pvalues": _STATS,
    "bootstrap_ranking": _STATS,
    "compare_groups": _STATS,
    "complete_cases": _STATS,
    "demographic_parity_difference": _STATS,
    "kruskal_wallis": _STATS,
    "pairwise_mann_whitney": _STATS,
    "pairwise_wilcoxon": _STATS,
    "rank_algorithms": _STATS,
    "significance_matrix": _STATS,
    "wilcoxon_greater": _STATS,
    "worst_case_mean": _STATS,
    # reports and plots (protocols helper)
    "KNOWN_METRICS": _REPORTS,
    "write_csv": _REPORTS,
    "write_report": _REPORTS,
    "bootstrap_blob_plot": _PLOTS,
    "box_plot": _PLOTS,
    "matrix_heatmap": _PLOTS,
    "save_figure": _PLOTS,
    "significance_map_plot": _PLOTS,
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the names of _EXPORTS, as the other packages do
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
