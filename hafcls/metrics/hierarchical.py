"""Hierarchical precision / recall / F, full-path accuracy and tree tables over node indices.

- :func:`hierarchical_prf` (Kiritchenko et al.; docs/ranking-and-decoding.md, what hiclass
  computes):
  α = the predicted node(s) and their ancestors, β = the true class and its ancestors, the root
  excluded from both. Micro: ``hP = Σ|α∩β| / Σ|α|``, ``hR = Σ|α∩β| / Σ|β|``; macro: per-sample
  ``hP_i``, ``hR_i`` and ``hF_i`` averaged over samples (a root-only prediction has ``|α| = 0``
  and ``hP_i = 0``, scikit-learn's ``zero_division=0``). ``hF_β = (1+β²)hP·hR / (β²hP + hR)``.
- :func:`full_path_accuracy`: node probability = sum of its classes' probabilities; a sample
  counts when the most probable node at every depth 1..H is on its true path (ties to the lower
  node index). Depth t holds ``hierarchy.level(t)``: a class shallower than t stands for itself.

In a tree ``|α∩β|`` for one predicted node is the depth of the LCA, so everything comes from one
comparison of ancestors at every depth: N x (H+1) arrays, no loop over samples or nodes.
"""

from __future__ import annotations

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.inputs import as_scores, as_targets, derived_tables


def _need_hierarchy(hierarchy) -> Hierarchy:
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError("This metric needs a Hierarchy (it uses tree nodes).",
                          "pass the hafcls Hierarchy of the classes.")
    return hierarchy


def node_ancestors(hierarchy: Hierarchy) -> np.ndarray:
    """``nodes x (H+1)`` ancestor of every node at each depth, -1 below the node's depth."""
    tables = derived_tables(hierarchy)
    if "node_ancestors" not in tables:
        parents, depths = hierarchy.parents, hierarchy.node_depths
        out = np.full((hierarchy.num_nodes, int(depths.max()) + 1), -1, dtype=np.int64)
        cur = np.arange(hierarchy.num_nodes)
        for t in range(out.shape[1] - 1, -1, -1):  # one step up per depth, all nodes at once
            cur = np.where(depths[cur] > t, parents[cur], cur)
            out[:, t] = np.where(depths[cur] == t, cur, -1)
        tables["node_ancestors"] = out
    return tables["node_ancestors"]


def node_distance_cost(hierarchy: Hierarchy) -> np.ndarray:
    """``nodes x classes`` cost ``H - depth(LCA(n, l))`` (0 when n is the class's own node): the
    published distance extended to internal nodes (backing off to an ancestor at depth t costs
    H - t). float64."""
    anc = node_ancestors(hierarchy)
    cls = anc[hierarchy.class_nodes]
    same = (anc[:, None, 1:] == cls[None, :, 1:]) & (anc[:, None, 1:] >= 0)
    cost = (hierarchy.height - same.sum(axis=2)).astype(np.float64)
    cost[hierarchy.class_nodes, np.arange(hierarchy.num_classes)] = 0.0
    return cost


def hedging_cost(hierarchy: Hierarchy, wrong: float = 1.0, vague: float = 0.6) -> np.ndarray:
    """``nodes x classes`` cost that makes backing off worth it: a node that is not on the true
    class's path costs ``wrong``; a correct node costs ``vague·(1 − coverage(n))`` with
    coverage(n) = 1 − log2(#classes under n)/log2(K) (the class itself 0, the root ``vague``).

    Under :func:`node_distance_cost` a class never costs more than its ancestors, so the
    Bayes-optimal node is always a class (= CRM); this cost trades specificity against the risk
    of a wrong answer, as in hierarchical selective classification. float64.
    """
    if not 0.0 <= vague <= wrong:
        raise HafclsError(
            f"hedging_cost needs 0 <= vague <= wrong, got vague={vague!r}, wrong={wrong!r}.",
            "charge a vague (correct but coarse) answer no more than a wrong one.",
        )
    node_idx, cls_idx = hierarchy.membership()
    below = np.bincount(node_idx, minlength=hierarchy.num_nodes).astype(np.float64)
    coverage = 1.0 - np.log2(np.maximum(below, 1.0)) / np.log2(max(hierarchy.num_classes, 2))
    cost = np.full((hierarchy.num_nodes, hierarchy.num_classes), float(wrong))
    cost[node_idx, cls_idx] = vague * (1.0 - coverage[node_idx])
    return cost


def _closure(predicted, hierarchy: Hierarchy, n: int) -> torch.Tensor:
    """N x nodes booleans: the predicted node(s) and all their ancestors."""
    pred = predicted if isinstance(predicted, torch.Tensor) else torch.as_tensor(
        np.asarray(predicted))
    pred = pred.detach().cpu()
    if pred.ndim == 1 and not pred.dtype.is_floating_point and pred.dtype != torch.bool:
        if pred.shape[0] != n or (n and (int(pred.min()) < 0
                                         or int(pred.max()) >= hierarchy.num_nodes)):
            raise HafclsError(
                f"predicted_nodes must hold {n} indices into hierarchy.nodes "
                f"(0..{hierarchy.num_nodes - 1}).",
                "pass hierarchy.node_index(...) of each prediction, or an N x nodes mask.")
        anc = torch.from_numpy(node_ancestors(hierarchy)).index_select(0, pred.long())
        mask = torch.zeros(n, hierarchy.num_nodes + 1, dtype=torch.bool)
        mask.scatter_(1, torch.where(anc < 0, hierarchy.num_nodes, anc), True)
        return mask[:, :-1]
    if pred.ndim != 2 or pred.shape != (n, hierarchy.num_nodes):
        raise HafclsError(
            f"predicted_nodes must be {n} node indices or an {n} x {hierarchy.num_nodes} "
            f"boolean mask, got shape {tuple(pred.shape)}.",
            "pass one node index (into hierarchy.nodes) or one node set per sample.")
    count = pred.bool().to(torch.int32)
    parents, depths = hierarchy.parents, hierarchy.node_depths
    for t in range(int(depths.max()), 0, -1):  # push each depth's marks to the parents
        at = np.flatnonzero(depths == t)
        count.index_add_(1, torch.from_numpy(parents[at]), count[:, torch.from_numpy(at)])
    return count > 0


def _f_beta(p, r, b2):
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    den = b2 * p + r
    return np.where(den > 0, (1 + b2) * p * r / np.where(den > 0, den, 1), 0.0)


def hierarchical_prf(true_classes, predicted_nodes, hierarchy: Hierarchy,
                     average: str = "micro", beta: float = 1.0) -> dict[str, float]:
    """Hierarchical ``precision``, ``recall``, ``f1`` and ``f_beta`` (see the module docstring).

    ``true_classes``: N class indices; ``predicted_nodes``: N indices into ``hierarchy.nodes``
    (classes or internal nodes) or an N x nodes boolean mask of node sets (e.g. the hF_β
    decoder's output; α is the union of the set and its ancestors).
    """
    h = _need_hierarchy(hierarchy)
    if average not in ("micro", "macro"):
        raise HafclsError(f"average must be 'micro' or 'macro', got {average!r}.",
                          "pass average='micro' or average='macro'.")
    if not np.isfinite(beta) or beta < 0:
        raise HafclsError(f"beta must be a finite number >= 0, got {beta!r}.", "pass beta=1.0.")
    return prf_average(*prf_counts(true_classes, predicted_nodes, h), average, beta)


def prf_counts(true_classes, predicted_nodes, hierarchy: Hierarchy
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample ``(|α∩β|, |α|, |β|)`` (float64, root excluded) of :func:`hierarchical_prf`,
    so that micro and macro averages share one pass over the N x nodes closure."""
    h = hierarchy
    y = as_targets(true_classes, len(true_classes), h.num_classes, "cpu")
    n = int(y.shape[0])
    if n == 0:
        raise HafclsError("There are no samples to score.", "pass at least one sample.")
    alpha = _closure(predicted_nodes, h, n)
    path = torch.from_numpy(h.ancestor_matrix).index_select(0, y)[:, 1:]  # root excluded
    own = torch.from_numpy(h.node_depths[h.class_nodes]).index_select(0, y)
    on_path = torch.arange(1, path.shape[1] + 1)[None, :] <= own[:, None]
    inter = (alpha.gather(1, path) & on_path).sum(dim=1).double().numpy()
    size_a = (alpha[:, 1:].sum(dim=1)).double().numpy()  # node 0 is the root
    return inter, size_a, own.double().numpy()


def prf_average(inter, size_a, size_b, average: str, beta: float) -> dict[str, float]:
    """Micro or macro hierarchical P/R/F from :func:`prf_counts`."""
    b2 = float(beta) ** 2
    if average == "micro":
        p = inter.sum() / size_a.sum() if size_a.sum() else 0.0
        r = inter.sum() / size_b.sum() if size_b.sum() else 0.0
        return {"precision": float(p), "recall": float(r), "f1": float(_f_beta(p, r, 1.0)),
                "f_beta": float(_f_beta(p, r, b2))}
    p_i = np.where(size_a > 0, inter / np.maximum(size_a, 1), 0.0)
    r_i = np.where(size_b > 0, inter / np.maximum(size_b, 1), 0.0)
    return {"precision": float(p_i.mean()), "recall": float(r_i.mean()),
            "f1": float(_f_beta(p_i, r_i, 1.0).mean()),
            "f_beta": float(_f_beta(p_i, r_i, b2).mean())}


def probabilities(scores) -> torch.Tensor:
    """Softmax of logits or log-probabilities in float64 (rows sum to 1)."""
    s = as_scores(scores)
    if not bool(torch.isfinite(s).all()):
        raise HafclsError("scores contain NaN or infinite values.",
                          "pass finite logits or log-probabilities.")
    return torch.softmax(s.double(), dim=1)


def level_probabilities(probs: torch.Tensor, hierarchy: Hierarchy, depth: int) -> torch.Tensor:
    """N x L sums of class probabilities per node of ``hierarchy.level(depth)``."""
    index = torch.from_numpy(hierarchy.level(depth)).to(probs.device)
    width = len(hierarchy.level_nodes(depth))
    out = torch.zeros(probs.shape[0], width, dtype=probs.dtype, device=probs.device)
    return out.index_add_(1, index, probs)


def full_path_accuracy(scores, targets, hierarchy: Hierarchy) -> float:
    """Share of samples whose most probable node is on the true path at every depth 1..H."""
    h = _need_hierarchy(hierarchy)
    probs = probabilities(as_scores(scores, h.num_classes)).cpu()
    y = as_targets(targets, probs.shape[0], h.num_classes, "cpu")
    if probs.shape[0] == 0:
        raise HafclsError("There are no samples to score.", "pass at least one sample.")
    ok = torch.ones(probs.shape[0], dtype=torch.bool)
    for t in range(1, h.height + 1):
        truth = torch.from_numpy(h.level(t)).index_select(0, y)
        ok &= level_probabilities(probs, h, t).argmax(dim=1) == truth  # first max: lower index
    return float(ok.double().mean())
