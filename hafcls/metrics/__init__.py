"""Evaluation metrics: accuracy, mistake severity, HierDist@k, HOPS, hierarchical P/R/F,
calibration, neural collapse, seed summaries.

Rates are fractions in [0, 1]; rankings break ties by the lower class index. See
:mod:`hafcls.metrics.severity` for the exact definitions.
"""

from hafcls.metrics.calibration import (
    binned_calibration_error,
    ece,
    fit_temperature,
    per_level_ece,
    severity_ece,
)
from hafcls.metrics.collapse import neural_collapse
from hafcls.metrics.hierarchical import (
    full_path_accuracy,
    hedging_cost,
    hierarchical_prf,
    level_probabilities,
    node_ancestors,
    node_distance_cost,
    probabilities,
)
from hafcls.metrics.hops import hops, topk_order_accuracy
from hafcls.metrics.ranking import full_ranking
from hafcls.metrics.severity import (
    DEFAULT_KS,
    SeverityMeter,
    as_distance_matrix,
    evaluate,
    hierdist_curve,
    ranked_distances,
    topk_indices,
)
from hafcls.metrics.summary import format_mean_ci, format_summary, summarize

__all__ = [
    "DEFAULT_KS",
    "SeverityMeter",
    "as_distance_matrix",
    "binned_calibration_error",
    "ece",
    "evaluate",
    "fit_temperature",
    "format_mean_ci",
    "format_summary",
    "full_path_accuracy",
    "full_ranking",
    "hierarchical_prf",
    "hierdist_curve",
    "hops",
    "level_probabilities",
    "neural_collapse",
    "per_level_ece",
    "severity_ece",
    "node_ancestors",
    "hedging_cost",
    "node_distance_cost",
    "probabilities",
    "ranked_distances",
    "summarize",
    "topk_indices",
    "topk_order_accuracy",
]
