"""Hierarchical scorers for ``GridSearchCV``, ``cross_val_score`` and friends.

``hierarchical_scorer(metric)`` returns a callable ``scorer(estimator, X, y) -> float`` (the
form scikit-learn accepts as ``scoring=``) for a fitted :class:`HierarchyAwareClassifier`, or a
``Pipeline`` ending in one. Scikit-learn maximises scores, so metrics where lower is better are
negated, as its own ``neg_log_loss`` is:

==========================  ==========================================================  =======
metric                      value                                                       sign
==========================  ==========================================================  =======
``"top1"``                  accuracy of ``predict``                                     +
``"mistake_severity"``      mean distance of the wrong ``predict`` (0 with no mistake)   −
``"hierdist@k"``            HierDist@k of the ``predict_proba`` ranking (unseen last)    −
``"hf1"``, ``"hprecision"``,  micro hF/hP/hR of ``predict`` (or of ``predict_node`` with   +
``"hrecall"``               ``threshold=``); append ``"_macro"`` for per-sample means
==========================  ==========================================================  =======

Definitions: :mod:`hafcls.metrics.severity` (HierDist@k) and :mod:`hafcls.metrics.labels`.
"""

from __future__ import annotations

import re

import numpy as np

from hafcls.errors import HafclsError

_PRF = {"hf1": "hF", "hprecision": "hP", "hrecall": "hR"}
METRICS = ("top1", "mistake_severity", "hierdist@k", *(f"{m}{s}" for m in _PRF
                                                         for s in ("", "_macro")))


def hierarchical_scorer(metric: str = "hierdist@5", threshold: float | None = None):
    """A scikit-learn scorer for ``metric`` (see the module docstring for names and signs).

    ``threshold`` (hF/hP/hR only): score hedged node predictions ``predict_node(X, threshold)``
    instead of ``predict``.
    """
    if not isinstance(metric, str):
        raise HafclsError(f"metric must be a string, got {type(metric).__name__}.",
                          f"use one of {', '.join(METRICS)}.")
    name = metric.strip().lower()
    k = None
    match = re.fullmatch(r"hierdist@(\d+)", name)
    if match:
        k = int(match.group(1))
        if k < 1:
            raise HafclsError(f"HierDist@k needs k >= 1, got {metric!r}.", "use e.g. hierdist@5.")
    elif name not in METRICS:
        raise HafclsError(f"Unknown hierarchical metric {metric!r}.",
                          f"use one of {', '.join(METRICS)} (k a positive integer).")
    if threshold is not None and name.split("_macro")[0] not in _PRF:
        raise HafclsError(f"threshold applies to hf1/hprecision/hrecall, not {metric!r}.",
                          "drop threshold, or score hf1 of the hedged predictions.")
    return HierarchicalScorer(name, k, threshold)


class HierarchicalScorer:
    """``scorer(estimator, X, y)``: a hierarchical metric of ``estimator`` on ``(X, y)``."""

    def __init__(self, metric: str, k: int | None, threshold: float | None):
        self.metric, self.k, self.threshold = metric, k, threshold

    def __repr__(self) -> str:
        extra = "" if self.threshold is None else f", threshold={self.threshold}"
        return f"hierarchical_scorer({self.metric!r}{extra})"

    def __call__(self, estimator, X, y, sample_weight=None) -> float:
        from hafcls.metrics import evaluate
        from hafcls.metrics.labels import class_indices, evaluate_labels

        if sample_weight is not None:
            raise HafclsError("Hierarchical scorers do not take sample weights.",
                              "score without sample_weight.")
        final, X = _final_estimator(estimator, X)
        estimator, hierarchy = final, final.hierarchy_
        if self.metric == "top1":
            return float(np.mean(estimator.predict(X) == np.asarray(y)))
        if self.k is not None:
            seen = estimator.predict_proba(X)
            scores = np.full((seen.shape[0], hierarchy.num_classes), -1.0)
            scores[:, class_indices(final.classes_, hierarchy)] = seen  # unseen rank last
            out = evaluate(scores, class_indices(y, hierarchy, "y"), hierarchy, ks=(self.k,))
            return -float(out[f"hierdist@{self.k}"])
        if self.metric == "mistake_severity":
            severity = evaluate_labels(y, estimator.predict(X), hierarchy)["mistake_severity"]
            return 0.0 if np.isnan(severity) else -float(severity)
        pred = (estimator.predict(X) if self.threshold is None
                else estimator.predict_node(X, self.threshold))
        base, _, macro = self.metric.partition("_")
        key = f"{_PRF[base]}_{'macro' if macro else 'micro'}"
        return float(evaluate_labels(y, pred, hierarchy)[key])


def _final_estimator(estimator, X):
    """The classifier at the end of a Pipeline (or the estimator itself) and its input: the
    Pipeline's other steps applied to ``X`` (a Pipeline has no ``predict_node``)."""
    while hasattr(estimator, "steps"):
        if len(estimator.steps) > 1:
            X = estimator[:-1].transform(X)
        estimator = estimator.steps[-1][1]
    if not hasattr(estimator, "hierarchy_"):
        raise HafclsError(
            f"A hierarchical scorer needs a fitted HierarchyAwareClassifier, got "
            f"{type(estimator).__name__}.",
            "score a hafcls.sklearn.HierarchyAwareClassifier (or a Pipeline ending in one).",
        )
    return estimator, X
