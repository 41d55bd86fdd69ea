"""Hierarchy-aware decisions on top of any classifier's probabilities, without retraining.

- :mod:`hafcls.inference.crm`: CRM (:func:`crm`, :func:`conditional_risk`), threshold hedging
  (:func:`hedge`, :func:`hedged_metrics`) and :func:`topk_with_severity`.
- :mod:`hafcls.inference.decode`: decisions matched to a metric (docs/ranking-and-decoding.md):
  :func:`optimal_node` for any node-to-class cost matrix and :func:`hfbeta_decode`, the
  node set maximising the expected hF_β.
- :mod:`hafcls.inference.selective`: :func:`risk_coverage`, the hierarchical risk-coverage
  curve and its area.
"""

from hafcls.inference.crm import (
    HEDGE_TOLERANCE,
    HedgeResult,
    conditional_risk,
    crm,
    hedge,
    hedged_metrics,
    topk_with_severity,
)
from hafcls.inference.decode import expected_cost, hfbeta_decode, optimal_node
from hafcls.inference.selective import risk_coverage

__all__ = [
    "HEDGE_TOLERANCE",
    "HedgeResult",
    "conditional_risk",
    "crm",
    "expected_cost",
    "hedge",
    "hedged_metrics",
    "hfbeta_decode",
    "optimal_node",
    "risk_coverage",
    "topk_with_severity",
]
