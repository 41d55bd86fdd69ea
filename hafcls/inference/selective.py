"""Hierarchical selective classification: the risk-coverage curve of backing off to ancestors.

(Goren et al., NeurIPS 2024; docs/ranking-and-decoding.md.) Each sample climbs from its top-1 class
towards the root and stops at the deepest node on that path whose probability (sum of its
classes' probabilities, rows normalised, float64) is at least the threshold τ: τ = 0 keeps the
top-1 class, τ above 1 (``inf``) gives the root. A node is correct when it is the true class or
one of its ancestors; its coverage is ``1 - log2(#classes at or below it) / log2(K)`` (1 for a
leaf class, 0 for the root). Risk = 1 - mean correctness, coverage = mean coverage.

Node probabilities on a path only grow towards the root, so each sample's decision is a step
function of τ with one step per ancestor: the curve is exact at every threshold where any
decision changes, built from one sort of the N x H step values (no loop over samples).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hafcls.inference.crm import _Tree
from hafcls.inference.decode import _BLOCK_ELEMENTS, _probs
from hafcls.metrics.inputs import as_targets


def _coverage(hierarchy) -> torch.Tensor:
    node_idx, _ = hierarchy.membership()
    below = np.bincount(node_idx, minlength=hierarchy.num_nodes).astype(np.float64)
    k = hierarchy.num_classes
    cov = 1.0 - np.log2(np.maximum(below, 1)) / math.log2(k) if k > 1 else np.ones_like(below)
    return torch.from_numpy(cov)


def risk_coverage(probs, targets, hierarchy) -> dict:
    """``{"thresholds", "risk", "coverage", "aurc"}``: the hierarchical risk-coverage curve.

    ``thresholds`` ascend from 0 to ``inf``; ``risk[i]`` and ``coverage[i]`` hold at threshold
    ``thresholds[i]`` (a node qualifies when its probability is ``>= τ``). ``aurc`` is the area
    under risk as a function of coverage (trapezoids, coverage from 0 at the root to its value at
    τ = 0). Arrays are float64 numpy arrays.
    """
    p, total = _probs(probs, hierarchy)
    n = p.shape[0]
    y = as_targets(targets, n, hierarchy.num_classes, "cpu")
    anc = torch.from_numpy(hierarchy.ancestor_matrix)
    depth_of = torch.from_numpy(hierarchy.node_depths)
    top = p.argmax(dim=1)  # first max: lower class index
    path = anc.index_select(0, top)  # N x (H+1); below a class's depth it repeats itself
    own = depth_of.index_select(0, torch.from_numpy(hierarchy.class_nodes)[top])
    tree = _Tree.of(hierarchy, "cpu")
    rows = max(1, _BLOCK_ELEMENTS // hierarchy.num_nodes)  # the decoders' node-mass blocks
    mass = torch.cat([tree.node_mass(p[i:i + rows] / total[i:i + rows]).gather(1, path[i:i + rows])
                      for i in range(0, n, rows)])
    truth = anc.index_select(0, y)
    correct = (path == truth).double()  # node on the true path at its depth
    cov = _coverage(hierarchy)[path]
    # climbing from depth t to t-1 happens once τ exceeds mass[:, t] (t = 1..own depth)
    height = path.shape[1] - 1
    step = torch.arange(1, height + 1)[None, :] <= own[:, None]
    values = mass[:, 1:][step]
    d_cov = (cov[:, :-1] - cov[:, 1:])[step]
    d_corr = (correct[:, :-1] - correct[:, 1:])[step]
    start_cov = cov.gather(1, own[:, None])[:, 0].sum()
    start_corr = correct.gather(1, own[:, None])[:, 0].sum()
    order = torch.sort(values, stable=True).indices
    sorted_values = values[order]
    cum_cov = torch.cat([torch.zeros(1, dtype=torch.float64), d_cov[order].cumsum(0)])
    cum_corr = torch.cat([torch.zeros(1, dtype=torch.float64), d_corr[order].cumsum(0)])
    thresholds = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64), sorted_values]))
    applied = torch.searchsorted(sorted_values, thresholds, right=False)  # events with value < τ
    thresholds = torch.cat([thresholds, torch.tensor([math.inf], dtype=torch.float64)])
    applied = torch.cat([applied, torch.tensor([len(sorted_values)])])
    coverage = ((start_cov + cum_cov[applied]) / n).clamp_(0.0, 1.0).numpy()
    risk = (1.0 - (start_corr + cum_corr[applied]) / n).clamp_(0.0, 1.0).numpy()
    up = np.argsort(coverage, kind="stable")
    aurc = float(np.trapezoid(risk[up], coverage[up])) if len(up) > 1 else 0.0
    return {"thresholds": thresholds.numpy(), "risk": risk, "coverage": coverage, "aurc": aurc}
