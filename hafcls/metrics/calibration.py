"""Calibration: ECE, per-level ECE, severity-ECE and temperature scaling
(docs/ranking-and-decoding.md).

- :func:`ece`: 15 equal-width confidence bins ``(b/15, (b+1)/15]`` (a confidence of 0 joins the
  first), top-1 confidence (max softmax probability, ties to the lower class index) against
  top-1 correctness: ``Σ_b (|B_b|/N) |acc_b - conf_b|``.
- :func:`per_level_ece`: the same at every depth t = 1..H with node probabilities = sums of the
  class probabilities of ``hierarchy.level(t)``; depth H equals :func:`ece`.
- :func:`severity_ece` (this project's definition): for the decision actually made (argmax,
  CRM or a hedged node), the predicted expected cost ``E_p[C(ŷ, Y)]`` against the realised
  ``C(ŷ, y)``, over 15 equal-mass bins of the predicted cost (samples sorted by it, stable).
- :func:`fit_temperature`: the one scalar T minimising the validation NLL of ``softmax(z/T)``.
  The NLL is convex in 1/T, so a safeguarded Newton search on 1/T (bracket kept by the sign of
  the derivative) converges in a few passes, in float64.

Scores are logits or log-probabilities; probabilities are their float64 softmax.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.hierarchical import (
    _need_hierarchy,
    level_probabilities,
    node_distance_cost,
    probabilities,
)
from hafcls.metrics.inputs import as_scores, as_targets
from hafcls.validation import check_int

ECE_BINS = 15


def _check_bins(n_bins) -> int:
    return check_int(n_bins, 1, f"n_bins must be a positive integer, got {n_bins!r}.",
                     "pass n_bins=15.")


def binned_calibration_error(predicted, realised, n_bins: int = ECE_BINS,
                             equal_mass: bool = False) -> float:
    """``Σ_b (|B_b|/N) |mean predicted - mean realised|`` over bins of ``predicted``.

    Equal-width bins over [0, 1] (right-closed), or ``equal_mass`` bins of the sorted values.
    """
    pred = torch.as_tensor(predicted, dtype=torch.float64).flatten()
    real = torch.as_tensor(realised, dtype=torch.float64).flatten()
    n_bins = _check_bins(n_bins)
    n = pred.shape[0]
    if n == 0 or real.shape[0] != n:
        raise HafclsError("Calibration needs as many outcomes as predictions, and at least one.",
                          "pass one prediction and one outcome per sample.")
    if equal_mass:
        order = torch.sort(pred, stable=True).indices
        bins = torch.empty(n, dtype=torch.long)
        bins[order] = torch.arange(n) * n_bins // n  # sizes differ by at most one
    else:
        bins = (torch.ceil(pred * n_bins).long() - 1).clamp_(0, n_bins - 1)
    gap = (torch.bincount(bins, pred, minlength=n_bins)
           - torch.bincount(bins, real, minlength=n_bins)).abs()
    return float(gap.sum() / n)  # Σ_b |B_b|/N |mean_b p - mean_b r| = Σ_b |Σ p - Σ r| / N


def _confidence(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    conf, top = probs.max(dim=1)  # first max: lower index
    return conf, top


def ece(scores, targets, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 prediction (see the module docstring)."""
    probs = probabilities(scores).cpu()
    y = as_targets(targets, probs.shape[0], probs.shape[1], "cpu")
    conf, top = _confidence(probs)
    return binned_calibration_error(conf, (top == y).double(), n_bins)


def per_level_ece(scores, targets, hierarchy: Hierarchy, n_bins: int = ECE_BINS
                  ) -> dict[str, float]:
    """``{"ece@depth{t}": ...}`` for t = 1..H (see the module docstring)."""
    h = _need_hierarchy(hierarchy)
    probs = probabilities(as_scores(scores, h.num_classes)).cpu()
    y = as_targets(targets, probs.shape[0], h.num_classes, "cpu")
    out = {}
    for t in range(1, h.height + 1):
        conf, top = _confidence(level_probabilities(probs, h, t))
        truth = torch.from_numpy(h.level(t)).index_select(0, y)
        out[f"ece@depth{t}"] = binned_calibration_error(conf, (top == truth).double(), n_bins)
    return out


def severity_ece(scores, targets, hierarchy: Hierarchy, decisions=None, cost=None,
                 n_bins: int = ECE_BINS) -> float:
    """Severity calibration error of the decisions made (see the module docstring).

    ``decisions``: N indices into ``hierarchy.nodes`` (default: the argmax class's node; pass
    CRM's or a hedged node's); ``cost``: ``nodes x classes`` matrix (default
    :func:`node_distance_cost`, the published distance extended to internal nodes).
    """
    h = _need_hierarchy(hierarchy)
    probs = probabilities(as_scores(scores, h.num_classes)).cpu()
    y = as_targets(targets, probs.shape[0], h.num_classes, "cpu")
    if decisions is None:
        node = torch.from_numpy(h.class_nodes).index_select(0, probs.argmax(dim=1))
    else:
        node = as_targets(decisions, probs.shape[0], h.num_nodes, "cpu")
    c = node_distance_cost(h) if cost is None else np.asarray(cost, dtype=np.float64)
    if c.shape != (h.num_nodes, h.num_classes):
        raise HafclsError(
            f"cost must be nodes x classes = {h.num_nodes} x {h.num_classes}, got {c.shape}.",
            "index rows by hierarchy.nodes and columns by hierarchy.classes.")
    rows = torch.from_numpy(c).index_select(0, node)  # N x K: each sample's decision row
    expected = (rows * probs).sum(dim=1)
    realised = rows.gather(1, y[:, None])[:, 0]
    return binned_calibration_error(expected, realised, n_bins, equal_mass=True)


def fit_temperature(logits, targets, bounds: tuple[float, float] = (1e-2, 1e2),
                    tol: float = 1e-10, max_iter: int = 100) -> float:
    """The temperature T in ``bounds`` minimising the mean NLL of ``softmax(logits / T)``."""
    z = as_scores(logits).double().cpu()
    y = as_targets(targets, z.shape[0], z.shape[1], "cpu")
    if z.shape[0] == 0 or not bool(torch.isfinite(z).all()):
        raise HafclsError("fit_temperature needs finite logits of at least one sample.",
                          "pass the validation logits (N x K) and their labels.")
    zy = z.gather(1, y[:, None])[:, 0]

    def slope(b: float) -> tuple[float, float]:
        """d/db and d²/db² of the mean NLL at inverse temperature b."""
        p = torch.softmax(z * b, dim=1)
        mean = (p * z).sum(dim=1)
        var = (p * z * z).sum(dim=1) - mean * mean
        return float((mean - zy).mean()), float(var.clamp_min(0).mean())

    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    g_lo, _ = slope(lo)
    g_hi, _ = slope(hi)
    if g_lo >= 0:
        return 1.0 / lo  # NLL increasing already at the largest T
    if g_hi <= 0:
        return 1.0 / hi  # separable data: sharper is always better, up to the bound
    b = 1.0 if lo < 1.0 < hi else math.sqrt(lo * hi)
    for _ in range(max_iter):
        g, curv = slope(b)
        if abs(g) < tol:
            break
        if g > 0:
            hi = b
        else:
            lo = b
        step = b - g / curv if curv > 0 else -1.0
        b = step if lo <= step <= hi else math.sqrt(lo * hi)  # Newton, else bisect (log scale)
        if hi - lo <= tol * b:
            break
    return 1.0 / b
