"""Vectorised class-to-class distances from a :class:`~hafcls.hierarchy.label_tree.Hierarchy`.

The LCA depth of two classes is the number of depths t >= 1 at which their ancestors coincide
(paths from the root share a prefix), so the K x K matrix is built with one vectorised
comparison per depth, in row blocks to bound memory. No Python loop runs over class pairs.
(A running-minimum over depth-first neighbours was tried too; it was no faster.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hafcls.errors import HafclsError

if TYPE_CHECKING:
    from hafcls.hierarchy.label_tree import Hierarchy

KINDS = ("published", "lca_height")
_BLOCK_ELEMENTS = 1 << 25  # rows per block chosen so one comparison is ~32M elements


def _small_int_dtype(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.int16, np.int32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def lca_depth_matrix(h: Hierarchy) -> np.ndarray:
    """K x K depth of the lowest common ancestor (the diagonal holds each class's own depth)."""
    anc = h.ancestor_matrix
    k, levels = anc.shape
    out = np.zeros((k, k), dtype=_small_int_dtype(levels))
    block = max(1, _BLOCK_ELEMENTS // max(k, 1))
    same = np.empty((min(block, k), k), dtype=bool)
    for start in range(0, k, block):
        rows = anc[start : start + block]
        o, buf = out[start : start + block], same[: len(rows)]
        for t in range(1, levels):
            np.equal(rows[:, t, None], anc[None, :, t], out=buf)
            o += buf.view(np.uint8)  # same bytes; avoids a slow bool->int casting loop
    out[np.arange(k), np.arange(k)] = h.node_depths[h.class_nodes]
    return out


def node_heights(h: Hierarchy) -> np.ndarray:
    """Height of every node's subtree counted down to its deepest class."""
    node_idx, cls_idx = h.membership()
    class_depth = h.node_depths[h.class_nodes]
    deepest = np.zeros(h.num_nodes, dtype=np.int64)
    np.maximum.at(deepest, node_idx, class_depth[cls_idx])
    return deepest - h.node_depths


def distance_matrix(h: Hierarchy, kind: str = "published") -> np.ndarray:
    """K x K integer distances with a zero diagonal; see :meth:`Hierarchy.distance_matrix`."""
    if kind not in KINDS:
        raise HafclsError(
            f"Unknown distance kind {kind!r}.", f"use one of {', '.join(KINDS)}."
        )
    lca = lca_depth_matrix(h)
    k = h.num_classes
    if kind == "published":
        # in place, in the small dtype: every entry (the diagonal's own depths too) is <= H
        d = np.subtract(lca.dtype.type(h.height), lca, out=lca)
    else:
        heights = node_heights(h)
        dtype = _small_int_dtype(int(heights.max()))
        d = np.empty((k, k), dtype=dtype)
        anc = h.ancestor_matrix
        block = max(1, _BLOCK_ELEMENTS // max(k, 1))
        for start in range(0, k, block):
            rows = anc[start : start + block]
            lca_nodes = np.take_along_axis(rows, lca[start : start + block].astype(np.int64), 1)
            d[start : start + block] = heights[lca_nodes]
    d[np.arange(k), np.arange(k)] = 0
    return d
