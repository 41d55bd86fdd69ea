"""Vectorised class-to-class distances from a :class:`~hafcls.hierarchy.tree.Hierarchy`.

LCA depths use the range-minimum property of a depth-first (preorder) ordering: listing the
classes in preorder, the LCA depth of classes i < j equals the smallest LCA depth of two
neighbours between them. So one O(K x H) pass gives the neighbours' LCA depths, and each row of
the K x K matrix is a running minimum (``np.minimum.accumulate``): O(K^2) small-int work, no
Python loop over class pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from hafcls.errors import HafclsError

if TYPE_CHECKING:
    from hafcls.hierarchy.tree import Hierarchy

KINDS = ("published", "lca_height")
_BLOCK_ELEMENTS = 1 << 25  # rows per block chosen so one comparison is ~32M elements


def _small_int_dtype(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.int16, np.int32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def preorder_classes(h: Hierarchy) -> np.ndarray:
    """Class indices sorted in depth-first preorder of their nodes (ancestors first)."""
    rank = np.empty(h.num_nodes, dtype=np.int64)
    index = {n: i for i, n in enumerate(h.nodes)}
    order = [index[n] for n in nx.dfs_preorder_nodes(h.graph, h.root)]
    rank[order] = np.arange(len(order))
    return np.argsort(rank[h.class_nodes], kind="stable")


def lca_depth_matrix(h: Hierarchy) -> np.ndarray:
    """K x K depth of the lowest common ancestor (the diagonal holds each class's own depth)."""
    k, levels = h.ancestor_matrix.shape
    dtype = _small_int_dtype(levels)
    perm = preorder_classes(h)
    anc = h.ancestor_matrix[perm]
    # LCA depth of preorder neighbours: the number of depths t >= 1 where their ancestors agree
    neighbours = (anc[:-1, 1:] == anc[1:, 1:]).sum(axis=1).astype(dtype)
    sorted_lca = np.empty((k, k), dtype=dtype)
    for i in range(k):  # one running minimum each way along row i; contiguous writes only
        np.minimum.accumulate(neighbours[i:], out=sorted_lca[i, i + 1 :])
        if i:
            np.minimum.accumulate(neighbours[i - 1 :: -1], out=sorted_lca[i, i - 1 :: -1])
    sorted_lca[np.arange(k), np.arange(k)] = h.node_depths[h.class_nodes[perm]]
    inverse = np.empty(k, dtype=np.int64)
    inverse[perm] = np.arange(k)
    return np.take(np.take(sorted_lca, inverse, axis=0), inverse, axis=1)


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
        dtype = _small_int_dtype(h.height)
        d = (h.height - lca.astype(np.int64)).astype(dtype)
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
