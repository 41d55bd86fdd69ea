"""Hierarchy-aware decisions on top of any classifier's probabilities, without retraining.

- :func:`crm`: conditional risk minimisation (Karthik et al., ICLR 2021). ``risk_j = Σ_i p_i
  D[i, j]`` is the expected distance of predicting j; ranking by ``-risk`` predicts the
  min-risk class and the top-k are the k lowest risks.
- :func:`hedge`: back off to the deepest node of the tree whose probability reaches a threshold
  ("hedging your bets"), with :func:`hedged_metrics` for its accuracy and specificity.
- :func:`topk_with_severity`: the top-k classes of each sample with their distance to the top-1
  and their lowest common ancestor (what a user interface shows).

Node probabilities (the mass of the classes at or below each node) are differences of one
cumulative sum over the classes in depth-first order, so nothing loops over samples or classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.severity import (
    as_distance_matrix,
    as_scores,
    as_targets,
    derived_tables,
    topk_indices,
)

_BLOCK_ELEMENTS = 1 << 20  # ~1000 rows of K=1000: small temporaries, few thread syncs
HEDGE_TOLERANCE = 1e-12  # a node qualifies when its (normalised) probability >= threshold - this


# ---------------------------------------------------------------------- tree tables
def _preorder_ranges(h: Hierarchy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes in depth-first order, and for every node the range of positions of its classes.

    Returns ``(order, start, end)``: ``order[q]`` is the class at position q, and the classes at
    or below node v are ``order[start[v]:end[v]]``, a contiguous range, so a node's probability
    is a difference of two cumulative sums.
    """
    children: list[list[int]] = [[] for _ in range(h.num_nodes)]
    for node, parent in enumerate(h.parents.tolist()):
        if parent >= 0:
            children[parent].append(node)
    class_of_node = np.full(h.num_nodes, -1, dtype=np.int64)
    class_of_node[h.class_nodes] = np.arange(h.num_classes)
    start = np.zeros(h.num_nodes, dtype=np.int64)
    end = np.zeros(h.num_nodes, dtype=np.int64)
    order: list[int] = []
    stack = [(0, False)]  # node 0 is the root (breadth-first order)
    while stack:  # one visit per node, once per hierarchy
        node, leaving = stack.pop()
        if leaving:
            end[node] = len(order)
            continue
        start[node] = len(order)
        if class_of_node[node] >= 0:
            order.append(int(class_of_node[node]))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children[node]))
    return np.asarray(order, dtype=np.int64), start, end


class _Tree:
    """Index tensors (on one device) to sum class probabilities into tree nodes, row-major.

    Node probabilities come from one cumulative sum over the classes in depth-first order. For
    CRM only the inner nodes (nodes with children, and the root) are needed: with
    ``Q(v) = H·S − Σ_{u on v's path, u ≠ root} P(u)`` the published-distance risk is
    ``risk_j = Q(j) − p_j·(H − depth_j)`` for a class at an inner node and
    ``Q(parent(j)) − p_j·(H − depth_j + 1)`` for a leaf class.
    """

    def __init__(self, h: Hierarchy, device):
        order, start, end = _preorder_ranges(h)
        self.num_classes = h.num_classes
        self.height = h.height
        self.order = None if np.array_equal(order, np.arange(len(order))) else \
            torch.from_numpy(order).to(device)
        self.all_nodes = self._ranges(start, end, device)

        parents, depths = h.parents, h.node_depths
        has_child = np.zeros(h.num_nodes, dtype=bool)
        has_child[parents[parents >= 0]] = True
        has_child[0] = True
        inner = np.flatnonzero(has_child)  # breadth-first, so grouped by depth, root first
        position = np.full(h.num_nodes, -1, dtype=np.int64)
        position[inner] = np.arange(len(inner))
        bounds = np.searchsorted(depths[inner], np.arange(int(depths[inner].max()) + 2))
        self.inner_levels = [
            (int(bounds[t]), int(bounds[t + 1]),
             torch.from_numpy(position[parents[inner[bounds[t]:bounds[t + 1]]]]).to(device))
            for t in range(1, len(bounds) - 1) if bounds[t + 1] > bounds[t]
        ]
        cls = h.class_nodes
        leaf = ~has_child[cls]
        self.risk_source = torch.from_numpy(
            np.where(leaf, position[np.maximum(parents[cls], 0)], position[cls])).to(device)
        self.own_weight = torch.from_numpy(h.height - depths[cls] + leaf).to(device)
        self.inner = torch.from_numpy(inner).to(device)
        self.num_nodes = h.num_nodes
        self.class_nodes = torch.from_numpy(h.class_nodes).to(device)
        # bottom-up sums, deepest level first: each level's nodes and their parents
        self.levels_up = [(torch.from_numpy(here).to(device),
                           torch.from_numpy(parents[here]).to(device))
                          for here in (np.flatnonzero(depths == t)
                                       for t in range(int(depths.max()), 0, -1))]

    @staticmethod
    def of(h: Hierarchy, device) -> _Tree:
        per_device = derived_tables(h).setdefault("inference_tree", {})
        device = torch.device(device)
        if device not in per_device:
            per_device[device] = _Tree(h, device)
        return per_device[device]

    @staticmethod
    def _ranges(start: np.ndarray, end: np.ndarray, device) -> tuple[torch.Tensor, ...]:
        """Cumulative-sum columns to read for class ranges ``start..end-1`` (``end > start``).

        The last entry lists the ranges that start at 0, where nothing is subtracted.
        """
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device)
                     for a in (np.maximum(start - 1, 0), end - 1, np.flatnonzero(start == 0)))

    def _mass(self, probs: torch.Tensor, ranges: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """B x len(ranges) sums of the class probabilities over each depth-first range."""
        before_col, last_col, from_zero = ranges
        ordered = probs if self.order is None else probs.index_select(1, self.order)
        cum = ordered.cumsum(dim=1)
        before = cum.index_select(1, before_col)
        before[:, from_zero] = 0
        return cum.index_select(1, last_col).sub_(before)

    def node_mass_t(self, probs: torch.Tensor) -> torch.Tensor:
        """nodes x B probabilities of every node (sum over the classes at or below it).

        On the CPU the sums run bottom-up, one tree level at a time, over whole rows of B
        samples (``index_add_`` along dim 0): picking scattered *columns* of a B x K tensor, as
        the cumulative-sum form does, is ~6x slower there and subtracts nearly equal numbers.
        Elsewhere the cumulative-sum form is kept: its column gathers are fast on a GPU and,
        unlike ``index_add_``'s atomics, deterministic.
        """
        if probs.device.type != "cpu":
            return self._mass(probs, self.all_nodes).T
        mass = probs.new_zeros(self.num_nodes, probs.shape[0])
        mass.index_copy_(0, self.class_nodes, probs.T)
        for nodes, parents in self.levels_up:
            mass.index_add_(0, parents, mass.index_select(0, nodes))
        return mass

    def node_mass(self, probs: torch.Tensor) -> torch.Tensor:
        """B x nodes probabilities of every node (a transposed view of :meth:`node_mass_t`)."""
        return self.node_mass_t(probs).T

    def risk(self, probs: torch.Tensor, out: torch.Tensor | None = None,
             negate: bool = False) -> torch.Tensor:
        """B x K published-distance risk (or ``-risk``) of class probabilities (B x K)."""
        acc = self.node_mass_t(probs).index_select(0, self.inner)  # inner nodes x B
        acc[0] *= self.height  # Q(root) = H·S
        for lo, hi, parent in self.inner_levels:  # top-down, one depth at a time
            acc[lo:hi] = acc.index_select(0, parent) - acc[lo:hi]
        if negate:  # on the few inner rows, not on the B x K result
            acc.neg_()
        risk = acc.index_select(0, self.risk_source).T
        out = risk.contiguous() if out is None else out.copy_(risk)
        weight = self.own_weight.to(probs.dtype)
        return out.addcmul_(probs, weight, value=1 if negate else -1)


def _as_probs(probs, num_classes: int, return_totals: bool = False):
    """Checked probabilities (float32 or float64); with ``return_totals`` also their float64
    row sums, from the same pass that checks for NaN and infinities."""
    probs = as_scores(probs, num_classes, name="probs")
    if probs.dtype not in (torch.float32, torch.float64):
        probs = probs.float()
    totals = probs.sum(dim=1, dtype=torch.float64)
    if not bool(torch.isfinite(totals).all()) and not bool(torch.isfinite(probs).all()):
        raise HafclsError("probs contain NaN or infinite values.",
                          "pass finite probabilities, e.g. softmax(logits).")
    if probs.numel() and float(probs.min()) < 0:
        raise HafclsError("probs contain negative values; these look like logits.",
                          "pass probabilities, e.g. logits.softmax(dim=1).")
    return (probs, totals) if return_totals else probs


def _like_input(result: torch.Tensor, original):
    return result.numpy() if isinstance(original, np.ndarray) else result


def _num_classes(hierarchy_or_distance) -> int:
    if isinstance(hierarchy_or_distance, Hierarchy):
        return hierarchy_or_distance.num_classes
    return int(as_distance_matrix(hierarchy_or_distance).shape[0])


# ---------------------------------------------------------------------- CRM
def conditional_risk(probs, hierarchy_or_distance):
    """Expected distance of predicting each class: ``risk = probs @ D`` (N x K).

    With a :class:`Hierarchy` (published distance ``H - depth(LCA)``) the product is computed on
    the tree in O(N x nodes) instead of O(N x K²):
    ``risk_j = H·S − Σ_{t=1..depth(j)} P(ancestor_t(j)) − p_j·(H − depth(j))`` with P the node
    probabilities and S = Σ p. A matrix ``D[true, predicted]`` is used by a dense matmul.
    Returns a tensor, or a numpy array when ``probs`` is one; float64 stays float64, anything
    else is computed in float32.
    """
    return _like_input(_risk(probs, hierarchy_or_distance, negate=False), probs)


def crm(probs, hierarchy_or_distance):
    """CRM scores to rank by: ``-risk`` (see :func:`conditional_risk`), so higher is better.

    ``argmax`` is the min-risk class and :func:`hafcls.metrics.topk_indices` gives the k lowest
    risks (ties to the lower class index); pass the result to :func:`hafcls.metrics.evaluate`
    as scores. No retraining, any model's softmax probabilities.
    """
    return _like_input(_risk(probs, hierarchy_or_distance, negate=True), probs)


def _risk(probs, hierarchy_or_distance, negate: bool) -> torch.Tensor:
    k = _num_classes(hierarchy_or_distance)
    p = _as_probs(probs, k)
    out = torch.empty_like(p)
    rows = max(1, _BLOCK_ELEMENTS // k)
    if isinstance(hierarchy_or_distance, Hierarchy):
        tree = _Tree.of(hierarchy_or_distance, p.device)
        for start in range(0, p.shape[0], rows):
            tree.risk(p[start:start + rows], out=out[start:start + rows], negate=negate)
    else:
        d = torch.from_numpy(np.array(as_distance_matrix(hierarchy_or_distance)))
        d = d.to(device=p.device, dtype=p.dtype)
        if negate:
            d = -d
        for start in range(0, p.shape[0], rows):
            torch.mm(p[start:start + rows], d, out=out[start:start + rows])
    return out


# ---------------------------------------------------------------------- hedging
@dataclass
class HedgeResult:
    """Hedged predictions: one node of the hierarchy per sample.

    ``node_index`` indexes ``hierarchy.nodes``; ``probability`` is the node's probability (the
    normalised mass of the classes at or below it); ``depth`` the node's depth.
    """

    node_index: torch.Tensor
    probability: torch.Tensor
    depth: torch.Tensor
    node_ids: list[str]
    threshold: float

    def __len__(self) -> int:
        return int(self.node_index.shape[0])


def hedge(probs, hierarchy: Hierarchy, threshold: float) -> HedgeResult:
    """For each sample, the deepest node whose probability reaches ``threshold``.

    A node's probability is the sum of the probabilities of the classes at or below it; each
    row is first normalised to sum to 1 (computed in float64). A node qualifies when its
    probability is ``>= threshold - 1e-12`` (the tolerance absorbs rounding in the sums). Among
    the deepest qualifying nodes the more probable wins, then the lower node index.

    - ``threshold = 1``: the deepest node holding all the mass: the root, unless every class
      with non-zero probability lies below one node (a one-hot row gives its class).
    - ``threshold = 0``: no hedging, the top-1 class (ties to the lower class index). The
      literal rule would make every node qualify and pick the most probable node of maximal
      depth, which with classes at several depths can be a near-zero-probability deep class
      rather than the prediction; for trees whose classes all sit at depth H (the usual case)
      both readings agree.
    """
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError("hedge needs a Hierarchy (it returns tree nodes).",
                          "pass the hafcls Hierarchy the model was trained with.")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise HafclsError(f"threshold must be a number in [0, 1], got {threshold!r}.",
                          "pass e.g. threshold=0.8.") from None
    if not 0.0 <= threshold <= 1.0:
        raise HafclsError(f"threshold must be in [0, 1], got {threshold}.",
                          "pass a probability, e.g. threshold=0.8.")
    p = _as_probs(probs, hierarchy.num_classes)
    totals = p.sum(dim=1, dtype=torch.float64)
    if p.shape[0] and float(totals.min()) <= 0:
        raise HafclsError("A row of probs sums to 0, so no node has a probability.",
                          "pass probabilities, e.g. softmax(logits).")
    tree = _Tree.of(hierarchy, "cpu")
    depths = torch.from_numpy(hierarchy.node_depths)
    n = p.shape[0]
    if threshold == 0.0:
        top1 = topk_indices(p, 1)[:, 0].cpu()
        node = torch.from_numpy(hierarchy.class_nodes).index_select(0, top1)
        prob = p.gather(1, top1[:, None].to(p.device))[:, 0].double().cpu() / totals.cpu()
    else:
        node = torch.empty(n, dtype=torch.long)
        prob = torch.empty(n, dtype=torch.float64)
        rows = max(1, _BLOCK_ELEMENTS // hierarchy.num_nodes)
        depth_row = depths[None, :]
        for start in range(0, n, rows):
            block = p[start:start + rows].cpu().double()
            mass = tree.node_mass(block / block.sum(dim=1, keepdim=True))
            ok = mass >= threshold - HEDGE_TOLERANCE
            level = torch.where(ok, depth_row, -1)
            deepest = level == level.max(dim=1, keepdim=True).values
            best = torch.where(deepest, mass, -1.0).argmax(dim=1)  # first max: lower index
            node[start:start + rows] = best
            prob[start:start + rows] = mass.gather(1, best[:, None])[:, 0]
    nodes = hierarchy.nodes
    return HedgeResult(node_index=node, probability=prob, depth=depths[node],
                       node_ids=[nodes[i] for i in node.tolist()], threshold=threshold)


def hedged_metrics(result: HedgeResult, targets, hierarchy: Hierarchy) -> dict[str, float]:
    """Accuracy and specificity of hedged predictions.

    - ``accuracy``: fraction of samples whose hedged node is the true class's node or one of
      its ancestors (the root is always correct).
    - ``specificity``: mean normalised information gain of the hedged node,
      ``1 - log(#classes at or below it) / log(K)`` (Deng et al., CVPR 2012): 1 for a node with
      a single class below it, 0 for the root. With K = 1 it is 1.
    - ``mean_depth``: mean depth of the hedged nodes; ``n``: number of samples.
    """
    if not isinstance(result, HedgeResult):
        raise HafclsError("hedged_metrics expects the result of hedge().",
                          "call hedge(probs, hierarchy, threshold) first.")
    n = len(result)
    if n == 0:
        raise HafclsError("The hedge result holds no samples.", "hedge at least one sample.")
    y = as_targets(targets, n, hierarchy.num_classes, "cpu")
    node = result.node_index.cpu()
    depth = result.depth.cpu()
    ancestors = torch.from_numpy(hierarchy.ancestor_matrix)
    correct = ancestors[y, depth] == node
    node_idx, _ = hierarchy.membership()
    below = torch.from_numpy(np.bincount(node_idx, minlength=hierarchy.num_nodes))
    k = hierarchy.num_classes
    if k > 1:
        gain = 1.0 - torch.log(below[node].double()) / math.log(k)
    else:
        gain = torch.ones(n, dtype=torch.float64)
    return {
        "accuracy": float(correct.double().mean()),
        "specificity": float(gain.mean()),
        "mean_depth": float(depth.double().mean()),
        "n": n,
    }


# ---------------------------------------------------------------------- top-k for display
def topk_with_severity(probs, hierarchy: Hierarchy, k: int = 5, scores=None) -> list[dict]:
    """The top-k classes of each sample, their distance to the top-1, and their common ancestor.

    Classes are ranked by ``scores`` when given (e.g. :func:`crm` scores), else by ``probs``;
    ties go to the lower class index; k > K is clipped to K. Returns one dict per sample::

        {"top": [{"index", "id", "name", "prob", "distance"} ...],   # best first
         "lca": {"index", "id", "name", "depth"}}                     # LCA of the top-k

    ``distance`` is the published distance to the top-1 class (0 for the top-1 itself).
    """
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError("topk_with_severity needs a Hierarchy (for names and ancestors).",
                          "pass the hafcls Hierarchy of the model.")
    p = _as_probs(probs, hierarchy.num_classes).cpu()
    rank_by = p if scores is None else as_scores(scores, hierarchy.num_classes).cpu()
    if rank_by.shape[0] != p.shape[0]:
        raise HafclsError(f"scores have {rank_by.shape[0]} rows but probs have {p.shape[0]}.",
                          "pass scores and probs of the same samples.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise HafclsError(f"k must be a positive integer, got {k!r}.", "pass e.g. k=5.")
    ranked = topk_indices(rank_by, int(k)).numpy()
    d = as_distance_matrix(hierarchy)[ranked[:, :1], ranked].astype(np.int64)
    ancestors = hierarchy.ancestor_matrix[ranked]  # N x k x (H+1)
    # the top-k agree on a prefix of depths: the LCA depth is the number of agreeing depths - 1
    agree = (ancestors == ancestors[:, :1]).all(axis=1).sum(axis=1)
    lca = ancestors[:, 0][np.arange(len(ranked)), agree - 1]
    top_probs = p.numpy()[np.arange(len(ranked))[:, None], ranked]

    nodes, classes, names = hierarchy.nodes, hierarchy.classes, hierarchy.class_names
    depths = hierarchy.node_depths
    out = []
    for idx_row, p_row, d_row, a in zip(ranked.tolist(), top_probs.tolist(), d.tolist(),
                                        lca.tolist()):
        out.append({
            "top": [{"index": c, "id": classes[c], "name": names[c], "prob": pr, "distance": dd}
                    for c, pr, dd in zip(idx_row, p_row, d_row)],
            "lca": {"index": a, "id": nodes[a], "name": hierarchy.name(nodes[a]),
                    "depth": int(depths[a])},
        })
    return out
