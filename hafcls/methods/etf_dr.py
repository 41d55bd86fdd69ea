"""A fixed simplex ETF classifier with the dot-regression loss (Yang et al., NeurIPS 2022).

See ``docs/etf-dr.md``.
"""

from __future__ import annotations

from hafcls.losses import DotRegressionLoss
from hafcls.methods.base import COSINE_TEMPERATURE, Method, register_method


def build_dot_regression(method: Method, head, hierarchy) -> DotRegressionLoss:
    return DotRegressionLoss(head.class_vectors())


@register_method("etf-dr")
def etf_dr(dataset: str | None = None) -> Method:
    return Method(
        name="etf-dr", head="etf", loss="dot_regression", build=build_dot_regression,
        score_temperature=COSINE_TEMPERATURE, needs_head=True,
        description="Fixed simplex ETF with the dot-regression loss (Yang et al. 2022).",
    )
