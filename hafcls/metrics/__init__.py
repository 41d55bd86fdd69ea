"""Evaluation metrics: accuracy, mistake severity, HierDist@k, neural collapse, seed summaries.

Rates are fractions in [0, 1]; rankings break ties by the lower class index. See
:mod:`hafcls.metrics.severity` for the exact definitions.
"""

from hafcls.metrics.collapse import neural_collapse
from hafcls.metrics.severity import (
    DEFAULT_KS,
    SeverityMeter,
    as_distance_matrix,
    evaluate,
    topk_indices,
)
from hafcls.metrics.summary import format_mean_ci, format_summary, summarize

__all__ = [
    "DEFAULT_KS",
    "SeverityMeter",
    "as_distance_matrix",
    "evaluate",
    "format_mean_ci",
    "format_summary",
    "neural_collapse",
    "summarize",
    "topk_indices",
]
