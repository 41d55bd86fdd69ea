"""Expected node costs from node probabilities: a sparse, tree-shaped form of a cost matrix.

Any nodes x classes cost ``C`` can be written along the tree: pick a value ``v[n, u]`` for every
node u with ``v[n, u] = C[n, l]`` at the node of each class l, and set
``δ[n, u] = v[n, u] - v[n, parent(u)]`` (``v[n, parent(root)] = 0``). The sum of ``δ`` over the
path from the root to a class's node telescopes to ``C[n, l]``, so

    E[n] = Σ_l p(l) C[n, l] = Σ_u δ[n, u] · P(u),   P(u) = mass of the classes at or below u.

Choosing ``v[n, u]`` = the cost of row n when it is constant on u's subtree, else the parent's
value, makes ``δ`` zero wherever a subtree adds nothing new. Distance- and coverage-based costs
(hedging costs, the published distance on balanced trees) are constant on the subtrees hanging off
n's path, so each row keeps O(depth x branching) entries instead of K, and ``E`` is one sparse
product with the node probabilities instead of a dense N x K x nodes product. The values are exact
up to rounding (telescoping sums of differences); decisions compare them with a tie tolerance.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

from hafcls.hierarchy import Hierarchy
from hafcls.metrics.inputs import derived_tables

_CHUNK_ELEMENTS = 1 << 22  # nodes x cost-rows entries per chunk of the level passes
SPARSE_SHARE = 1 / 16  # use the sparse form when it keeps at most this share of C's entries


def cost_increments(c: np.ndarray, hierarchy: Hierarchy) -> tuple[np.ndarray, ...]:
    """``(rows, cols, values)``: the non-zero ``δ[n, u]`` of cost matrix ``c`` (nodes x K)."""
    parents, depths = hierarchy.parents, hierarchy.node_depths
    nodes = hierarchy.num_nodes
    class_of = np.full(nodes, -1, dtype=np.int64)
    class_of[hierarchy.class_nodes] = np.arange(hierarchy.num_classes)
    levels = [np.flatnonzero(depths == t) for t in range(int(depths.max()) + 1)]
    levels_up = []  # per depth >= 1: children grouped by parent, their parents, group starts
    for kids in levels[1:]:
        kids = kids[np.argsort(parents[kids], kind="stable")]
        heads, starts = np.unique(parents[kids], return_index=True)
        levels_up.append((kids, heads, starts))
    step = max(1, _CHUNK_ELEMENTS // nodes)
    out = []
    for first in range(0, c.shape[0], step):
        rows = c[first:first + step].T  # K x R: one column per cost row
        lo = np.full((nodes, rows.shape[1]), np.inf)
        hi = np.full((nodes, rows.shape[1]), -np.inf)
        lo[hierarchy.class_nodes] = rows
        hi[hierarchy.class_nodes] = rows
        for kids, heads, starts in reversed(levels_up):  # bottom-up, one level at a time
            lo[heads] = np.minimum(lo[heads], np.minimum.reduceat(lo[kids], starts, axis=0))
            hi[heads] = np.maximum(hi[heads], np.maximum.reduceat(hi[kids], starts, axis=0))
        value = np.zeros_like(lo)
        for t, here in enumerate(levels):  # top-down: own class cost, constant, or inherited
            # the root "inherits" its row's most common cost, so equal-cost subtrees add nothing
            inherited = value[parents[here]] if t else _row_mode(rows.T)[None, :]
            value[here] = np.where(lo[here] == hi[here], lo[here], inherited)
            own = class_of[here] >= 0
            value[here[own]] = rows[class_of[here[own]]]
        delta = value.copy()
        delta[1:] -= value[parents[1:]]
        u, n = np.nonzero(delta)
        out.append((n + first, u, delta[u, n]))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _row_mode(c: np.ndarray) -> np.ndarray:
    """The most common value of each row (the smallest among equally common ones)."""
    s = np.sort(c, axis=1)
    num = s.shape[1]
    start = np.ones_like(s, dtype=bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.flatnonzero(start)  # flat positions where a run of equal values begins
    length = np.diff(np.append(first, s.size))
    length = np.minimum(length, num - first % num)  # runs end at their row's end
    row = first // num
    best = np.lexsort((-length, row))  # per row: longest run first (stable: smallest value)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = row[best][1:] != row[best][:-1]
    return s.ravel()[first[best[keep]]]


def sparse_cost(c: np.ndarray, hierarchy: Hierarchy) -> torch.Tensor | None:
    """``δ`` as a nodes x nodes sparse CSR tensor when it is sparse enough, else None (cached)."""
    cache = derived_tables(hierarchy).setdefault("sparse_cost", {})
    # sha256 runs on the CPU's SHA instructions: half blake2b's time on a 14 MB cost matrix
    key = hashlib.sha256(np.ascontiguousarray(c).view(np.uint8)).digest()
    if key not in cache:
        cache.clear()  # keep one cost matrix per hierarchy
        rows, cols, values = cost_increments(c, hierarchy)
        if len(values) > SPARSE_SHARE * c.size:
            cache[key] = None
        else:
            order = np.lexsort((cols, rows))
            coo = torch.sparse_coo_tensor(
                torch.from_numpy(np.stack([rows[order], cols[order]])),
                torch.from_numpy(values[order]), (hierarchy.num_nodes, hierarchy.num_nodes),
                is_coalesced=True, check_invariants=False)
            with warnings.catch_warnings():  # CSR is "beta" in torch; its product is 2x COO's
                warnings.simplefilter("ignore", UserWarning)
                cache[key] = coo.to_sparse_csr()
    return cache[key]
