"""Decisions matched to the metric (Plaud et al., ICML 2025; docs/ranking-and-decoding.md).

- :func:`optimal_node`: for a cost matrix ``C[n, l]`` over ``hierarchy.nodes`` x
  ``hierarchy.classes``, the node minimising the expected cost ``Σ_l p(l) C[n, l]`` per sample
  (ties to the lower node index). Exact pruning: a node n with parent a is never chosen when
  ``E[n] - E[a] >= p(n)·min_in + (p(a) - p(n))·min_sib + (1 - p(a))·min_out >= 0``, the mins
  taken of ``C[n, l] - C[a, l]`` over the classes under n, under a but not n, and outside a
  (a has the lower index, so it wins a tie). Only the surviving nodes of a row block enter one
  float64 matrix product. When the cost is tree-shaped (constant on most subtrees, as hedging
  and distance costs are), ``E`` comes instead from node probabilities and a sparse form of the
  cost (:mod:`hafcls.inference.node_cost`), without pruning and without the dense product.
- :func:`hfbeta_decode`: the node set maximising the expected hF_β. For a set S of k nodes the
  expected hF_β is ``Σ_{n∈S} Δ_k(n)`` with ``Δ_k(n) = Σ_{l under n} p(l)(1+β²)/(k + β²|β_l|)``,
  ``|β_l|`` the size of the class's ancestor set; so for each k the best set is the k nodes of
  largest Δ_k, and the best k wins (the empty set scores 0). ``count_root=True`` (default)
  counts the root in every set, as the paper's ``depth(l)+1`` does; then only nodes with
  ``p(n) ≥ 1/(1 + β²(D(n)+1))`` can be chosen, which bounds the candidates per sample.
  ``count_root=False`` leaves the root out, as :func:`hafcls.metrics.hierarchical_prf` does;
  the bound fails there (a lone low-probability node can be optimal), so every node with
  mass is a candidate: exact, but O(nodes²) per sample, for small trees.
"""

from __future__ import annotations

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.inference.crm import _as_probs, _Tree
from hafcls.inference.node_cost import sparse_cost
from hafcls.metrics.hierarchical import node_ancestors
from hafcls.metrics.inputs import derived_tables

_BLOCK_ELEMENTS = 1 << 19  # nodes x B float64 blocks of ~4 MB: the passes over them stay in cache
_PRUNE_SLACK = 1e-9  # relative to the cost scale: prune only on a clear margin over rounding
TIE_TOLERANCE = 1e-12  # expected costs this close (relative to the cost scale) are a tie


def _probs(probs, hierarchy) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated float64 CPU probabilities and their N x 1 row sums.

    Callers normalise one row block at a time (``p[a:b] / total[a:b]``): a block-sized
    temporary instead of a second N x K copy, which cost as much as a decoder's own work.
    """
    if not isinstance(hierarchy, Hierarchy):
        raise HafclsError("Decoding needs a Hierarchy (it returns tree nodes).",
                          "pass the hafcls Hierarchy of the classes.")
    p, total = _as_probs(probs, hierarchy.num_classes, return_totals=True)
    p, total = p.cpu().double(), total.cpu()[:, None]
    if p.shape[0] and float(total.min()) <= 0:
        raise HafclsError("A row of probs sums to 0.", "pass probabilities, e.g. softmax(logits).")
    return p, total


def _under(hierarchy: Hierarchy) -> np.ndarray:
    """nodes x classes booleans: class l is at or below node n (cached: decoders call it per
    batch)."""
    tables = derived_tables(hierarchy)
    if "class_under_node" not in tables:
        cls = node_ancestors(hierarchy)[hierarchy.class_nodes]  # K x (H+1)
        under = cls[:, hierarchy.node_depths].T == np.arange(hierarchy.num_nodes)[:, None]
        under.setflags(write=False)
        tables["class_under_node"] = under
    return tables["class_under_node"]


def _check_cost(cost, hierarchy: Hierarchy) -> np.ndarray:
    c = np.asarray(cost.detach().cpu() if isinstance(cost, torch.Tensor) else cost,
                   dtype=np.float64)
    if c.shape != (hierarchy.num_nodes, hierarchy.num_classes) or not np.isfinite(c).all():
        raise HafclsError(
            f"cost must be a finite nodes x classes = {hierarchy.num_nodes} x "
            f"{hierarchy.num_classes} matrix, got shape {c.shape}.",
            "index rows by hierarchy.nodes and columns by hierarchy.classes.")
    return c


def _prune_tables(c: np.ndarray, hierarchy: Hierarchy) -> tuple[torch.Tensor, ...]:
    """Per non-root node: min cost change (vs its parent) inside, beside and outside it."""
    under = _under(hierarchy)
    parents = hierarchy.parents
    kids = np.arange(1, hierarchy.num_nodes)
    diff = c[kids] - c[parents[kids]]
    inside, in_parent = under[kids], under[parents[kids]]
    groups = (inside, in_parent & ~inside, ~in_parent)
    mins = [np.where(g, diff, np.inf).min(axis=1) for g in groups]
    mins = [np.where(np.isfinite(m), m, 0.0) for m in mins]  # empty group: its mass is 0
    return tuple(torch.from_numpy(m) for m in mins) + (torch.from_numpy(parents[kids]),)


def expected_cost(probs, hierarchy: Hierarchy, cost) -> torch.Tensor:
    """N x nodes expected cost ``Σ_l p(l) C[n, l]`` (float64; rows of probs normalised)."""
    p, total = _probs(probs, hierarchy)
    return (p @ torch.from_numpy(_check_cost(cost, hierarchy)).T).div_(total)


def optimal_node(probs, hierarchy: Hierarchy, cost) -> torch.Tensor:
    """Index into ``hierarchy.nodes`` of the min-expected-cost node per sample (int64).

    ``probs``: N x K class probabilities (rows normalised, float64); ``cost``: nodes x classes.
    Ties (expected costs within ``1e-12 x max|C|`` of the minimum, so that rounding in the
    sums cannot split a true tie) go to the lower node index. See the module docstring for the
    exact pruning.
    """
    p, total = _probs(probs, hierarchy)
    c = _check_cost(cost, hierarchy)
    g_in, g_sib, g_out, parent = _prune_tables(c, hierarchy)
    slack = _PRUNE_SLACK * max(1.0, float(np.abs(c).max()))
    tie = TIE_TOLERANCE * max(1.0, float(np.abs(c).max()))
    cost_t = torch.from_numpy(c)
    tree = _Tree.of(hierarchy, "cpu")
    out = torch.empty(p.shape[0], dtype=torch.long)
    rows = max(1, _BLOCK_ELEMENTS // max(hierarchy.num_nodes, hierarchy.num_classes))
    increments = sparse_cost(c, hierarchy)
    for start in range(0, p.shape[0], rows):
        block, block_total = p[start:start + rows], total[start:start + rows, 0]
        if increments is not None:  # tree-shaped cost: E = δ · node probabilities, sparse
            # E is linear in p: unnormalised masses give total x E, so the tie scales instead
            mass = tree.node_mass_t(block)  # nodes x B: reductions over nodes run along rows
            out[start:start + rows] = _first_near_min(increments @ mass, tie * block_total)
            continue
        block = block / block_total[:, None]
        mass = tree.node_mass_t(block)
        pn, pa = mass[1:], mass.index_select(0, parent)
        bound = pn * g_in[:, None] + (pa - pn) * g_sib[:, None] + (1 - pa) * g_out[:, None]
        keep = torch.ones_like(mass, dtype=torch.bool)
        keep[1:] = bound <= slack  # the root always stays
        kept = keep.any(dim=1).nonzero()[:, 0]  # ascending: the first hit is the lower index
        risk = cost_t.index_select(0, kept) @ block.T  # kept nodes x B
        risk.masked_fill_(~keep.index_select(0, kept), float("inf"))
        out[start:start + rows] = kept[_first_near_min(risk, tie)]
    return out


def _first_near_min(risk: torch.Tensor, tie) -> torch.Tensor:
    """Per column of ``risk`` (nodes x B), the first row within ``tie`` (a number, or one per
    column) of the column's minimum: ties within rounding go to the lower node index.

    As the smallest row index among the near-minimal entries: two ``amin`` reductions over
    dim 0 run ~4x faster on the CPU than ``min``/``argmax`` with indices along that dim.
    """
    rows = torch.arange(risk.shape[0], dtype=torch.int32, device=risk.device)[:, None]
    near = risk <= risk.amin(dim=0) + tie
    return torch.where(near, rows, risk.shape[0]).amin(dim=0).long()


def _set_sizes(hierarchy: Hierarchy, count_root: bool) -> tuple[np.ndarray, np.ndarray]:
    """|β_l| per class, and per node the |β| of its deepest class (the pruning bound)."""
    size = hierarchy.node_depths[hierarchy.class_nodes] + int(count_root)
    under = _under(hierarchy)
    deepest = np.where(under, size[None, :], 0).max(axis=1)
    return size, deepest


def hfbeta_decode(probs, hierarchy: Hierarchy, beta: float = 1.0, count_root: bool = True,
                  return_score: bool = False):
    """N x nodes boolean mask of the node set maximising the expected hF_β per sample.

    With ``return_score=True`` also the expected hF_β of each chosen set (float64, length N).
    Ties: the smaller set, then the lower node indices. See the module docstring.
    """
    if not np.isfinite(beta) or beta <= 0:
        raise HafclsError(f"beta must be a finite number > 0, got {beta!r}.", "pass beta=1.0.")
    p, total = _probs(probs, hierarchy)
    b2 = float(beta) ** 2
    size, deepest = _set_sizes(hierarchy, count_root)
    if count_root:
        threshold = torch.from_numpy(1.0 / (1.0 + b2 * deepest)) - 1e-12
    else:
        # without the root in every set the paper's bound does not hold (a lone low-probability
        # node can be optimal), so only massless nodes are dropped: O(nodes²) per sample
        threshold = torch.full((hierarchy.num_nodes,), 1e-300, dtype=torch.float64)
        threshold[0] = 2.0  # the root is never in a set
    depths = np.unique(size)
    tree = _Tree.of(hierarchy, "cpu")
    n, nodes = p.shape[0], hierarchy.num_nodes
    chosen = torch.zeros(n, nodes, dtype=torch.bool)
    score = torch.zeros(n, dtype=torch.float64)
    rows = max(1, _BLOCK_ELEMENTS // (nodes * len(depths)))
    size_t = torch.from_numpy(size)
    for start in range(0, n, rows):
        block = p[start:start + rows] / total[start:start + rows]
        mass = tree.node_mass(block)
        ok = mass >= threshold
        m = int(ok.sum(dim=1).max())
        if m == 0:
            continue
        # candidates per row, in ascending node order (invalid ones at the end, masked)
        order = torch.sort((~ok).to(torch.int8), dim=1, stable=True).indices[:, :m]
        valid = ok.gather(1, order)
        per_depth = torch.stack([tree.node_mass(block * (size_t == s)).gather(1, order)
                                 for s in depths], dim=2)  # B x m x S
        k = torch.arange(1, m + 1, dtype=torch.float64)
        weight = (1 + b2) / (k[:, None] + b2 * torch.from_numpy(depths).double()[None, :])
        delta = torch.einsum("bms,ks->bkm", per_depth, weight)  # Δ_k of every candidate
        delta.masked_fill_(~valid[:, None, :], float("-inf"))
        top = torch.sort(delta, dim=2, descending=True, stable=True)
        best = top.values.cumsum(dim=2).diagonal(dim1=1, dim2=2)  # B x m: the top-k sums
        best = torch.nan_to_num(best, nan=float("-inf"))
        value, kbest = best.max(dim=1)  # first max: the smaller set
        take = value > 0
        rank = torch.arange(m)[None, :] <= kbest[:, None]
        picks = top.indices[torch.arange(len(block)), kbest]  # B x m positions into `order`
        sel = torch.zeros_like(valid)
        sel.scatter_(1, picks, rank & take[:, None])
        chosen[start:start + rows].scatter_(1, order, sel)
        score[start:start + rows] = torch.where(take, value, 0.0)
    return (chosen, score) if return_score else chosen
