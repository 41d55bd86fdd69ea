"""Exact tree-structured Hierarchy-Aware Frames (docs/haframe-tree.md), with no eigendecomposition.

The target cosine of two classes depends only on their lowest common ancestor (LCA):
``S_ij = g(LCA(i, j))`` with ``g(v) = (1 - s_min) exp(-gamma delta(v) / d_max) + s_min`` and
``delta(v)`` the distance of a pair whose LCA is ``v``. ``g`` strictly decreases going up, so S is
a sum of non-negative rank-one blocks, one per tree node, plus a diagonal:

* one coordinate per internal node ``v`` below the *top* node, weight ``c_v = g(v) - g(parent)``;
* one private coordinate per class, weight ``q_i = 1 - g(attach(i))`` (``attach`` is the class's
  own node when it is internal, else its parent: a leaf's node coordinate is used by that class
  alone, so it is merged into the private one, which keeps every ``q_i > 0``);
* one shared coordinate of weight ``g(top)`` when ``g(top) > 0``.

The *top* is the deepest node that every class path passes through and that can still be an LCA
(the root, unless the root is a non-class node with a single child). Nodes above it never occur as
an LCA, so they get no coordinate and ``d_max = delta(top)``.

``w_i = sum_v sqrt(c_v) e_v + sqrt(q_i) e_priv(i) (+ sqrt(g(top)) e_top)`` gives ``W'^T W' = S'``
exactly, with ``depth + 1`` non-zeros per column. When ``g(top) = -a < 0``, ``S = S' - a 11^T``
with ``S'`` positive definite; solving ``S' alpha = 1`` by Sherman-Morrison up the tree gives
``sigma = 1^T alpha``: S is PSD iff ``a sigma <= 1``, and ``W = W' - kappa y 1^T`` with
``y = W' alpha``, ``kappa = a / (1 + sqrt(1 - a sigma))`` has ``W^T W = S`` exactly.

The same solve with every private weight shifted by ``-mu`` decides whether the smallest eigenvalue
of S exceeds ``mu`` in O(#nodes), which is how the paper's eigenvalue grid rule is reproduced.

Everything here loops over tree *depth* (about 20 levels) with numpy work over nodes or classes
inside. The dense S (:meth:`TreeSimilarity.similarity`) loops once over the internal nodes
(one K-row copy each); the row generators (:meth:`TreeSimilarity.similarity_rows`,
:meth:`TreeSimilarity.lca_depth_rows`) loop over classes, one vectorised row of length K each,
for callers that want a few rows or block-wise processing; none builds a K x K x depth
intermediate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from hafcls.errors import HafclsError
from hafcls.frames.similarity import DISTANCES, similarity_from_distance
from hafcls.frames.tree_factor import TreeFactor, empty
from hafcls.hierarchy import Hierarchy

__all__ = ["DISTANCES", "TreeFactor", "TreeSimilarity", "empty"]


class TreeSimilarity:
    """The tree structure of a hierarchy's target cosines, independent of ``gamma`` and ``s_min``.

    Parameters
    ----------
    hierarchy:
        Any :class:`~hafcls.hierarchy.Hierarchy` with at least two classes.
    distance:
        ``"published"`` (``H - depth(LCA)``, the default everywhere) or ``"lca_height"``.
    """

    def __init__(self, hierarchy: Hierarchy, distance: str = "published"):
        if not isinstance(hierarchy, Hierarchy):
            raise HafclsError(
                f"Expected a hafcls Hierarchy, got {type(hierarchy).__name__}.",
                "build one with hafcls.hierarchy.load(...) or Hierarchy.from_edges(...).",
            )
        if distance not in DISTANCES:
            raise HafclsError(
                f"Unknown distance {distance!r}.", f"use one of {', '.join(DISTANCES)}."
            )
        h = hierarchy
        if h.num_classes < 2:
            raise HafclsError(
                f"A frame needs at least 2 classes; the hierarchy has {h.num_classes}.",
                "add classes to the hierarchy.",
            )
        self.hierarchy = h
        self.distance = distance
        parents, depths = h.parents, h.node_depths
        n = h.num_nodes
        self.num_classes = k = h.num_classes
        self.parents = parents
        self.depths = depths
        n_children = np.bincount(parents[parents >= 0], minlength=n)
        is_class = np.zeros(n, dtype=bool)
        is_class[h.class_nodes] = True

        # walk down the root's unary chain of non-class nodes: those can never be an LCA
        top = 0
        while n_children[top] == 1 and not is_class[top]:
            top = int(np.flatnonzero(parents == top)[0])
        self.top = top

        if distance == "published":
            delta = (h.height - depths).astype(np.float64)
        else:
            from hafcls.hierarchy.distances import node_heights

            delta = node_heights(h).astype(np.float64)
        self.delta = delta
        self.d_max = float(delta[top])

        cn = h.class_nodes
        self.attach = np.where(n_children[cn] > 0, cn, parents[cn])
        internal = (n_children > 0) & (depths > depths[top])
        self.coord_nodes = np.flatnonzero(internal)  # BFS order
        self.coord_index = np.full(n, -1, dtype=np.int64)
        self.coord_index[self.coord_nodes] = np.arange(len(self.coord_nodes))
        top_depth = int(depths[top])
        cdepth = depths[self.coord_nodes]
        max_depth = int(cdepth.max()) if len(cdepth) else top_depth
        # coordinate nodes grouped by depth, deepest first (the Sherman-Morrison sweep order)
        self.levels = [self.coord_nodes[cdepth == t] for t in range(max_depth, top_depth, -1)]
        self.top_depth = top_depth

        # preorder of the classes (a class before its descendants) and the LCA depth of each
        # consecutive pair: depth(LCA(i, j)) is the minimum of those between i and j.
        anc = h.ancestor_matrix
        own_depth = depths[cn]
        t = np.arange(anc.shape[1])
        keys = np.where(t[None, :] <= own_depth[:, None], anc, -1)
        self.order = np.lexsort(keys[:, ::-1].T)
        self.position = np.empty(k, dtype=np.int64)
        self.position[self.order] = np.arange(k)
        sk = keys[self.order]
        first_diff = np.argmin(sk[:-1] == sk[1:], axis=1)
        small = np.uint8 if anc.shape[1] <= 255 else np.int16
        self.lcp = (first_diff - 1).astype(small)
        self.own_depth = own_depth.astype(small)
        self.depth_dtype = small
        self.lcp_nodes = anc[self.order[:-1], self.lcp.astype(np.intp)]

    # ------------------------------------------------------------------ similarity values
    def g(self, gamma: float, s_min: float) -> np.ndarray:
        """``g(v)`` for every node (the target cosine of a pair whose LCA is ``v``)."""
        return similarity_from_distance(self.delta, gamma, s_min, self.d_max)

    def weights(self, gamma: float, s_min: float) -> tuple[np.ndarray, np.ndarray, float]:
        """``(c, q, g_top)``: per-node coordinate weights (0 off coordinates), private weights."""
        g = self.g(gamma, s_min)
        c = np.zeros_like(g)
        nodes = self.coord_nodes
        c[nodes] = g[nodes] - g[self.parents[nodes]]
        q = 1.0 - g[self.attach]
        return c, q, float(g[self.top])

    def solve_ones(self, c: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray]:
        """``(sigma, alpha)`` with ``S' alpha = 1`` and ``sigma = 1^T alpha``, in O(#nodes).

        ``S' = diag(q) + sum_v c_v 1_v 1_v^T`` (v over coordinate nodes). Sherman-Morrison per node
        from the deepest level up: ``Sigma_v`` sums the children's ``sigma_u`` and ``1/q_i`` of the
        classes attached at v; ``sigma_v = Sigma_v / (1 + c_v Sigma_v)``; then
        ``alpha_i = (1/q_i) prod_v 1/(1 + c_v Sigma_v)`` over i's path.
        """
        n = len(self.parents)
        acc = np.bincount(self.attach, weights=1.0 / q, minlength=n)
        factor = np.ones(n)
        for nodes in self.levels:
            s_v = acc[nodes]
            denom = 1.0 + c[nodes] * s_v
            factor[nodes] = 1.0 / denom
            acc += np.bincount(self.parents[nodes], weights=s_v / denom, minlength=n)
        sigma = float(acc[self.top])
        prod = np.ones(n)
        for nodes in reversed(self.levels):
            prod[nodes] = prod[self.parents[nodes]] * factor[nodes]
        alpha = prod[self.attach] / q
        return sigma, alpha

    def min_eig_exceeds(self, gamma: float, s_min: float, mu: float) -> bool:
        """Exactly whether the smallest eigenvalue of S is strictly greater than ``mu``.

        ``S - mu I = (S' - mu I) - a 11^T``; ``S' - mu I`` keeps the tree form with private weights
        ``q - mu``. Valid for ``mu < min(q)`` (always true for ``mu <= 0``); a larger ``mu`` raises.
        """
        c, q, g_top = self.weights(gamma, s_min)
        qs = q - mu
        if qs.min() <= 0:
            raise ValueError(f"mu={mu} is not below the smallest private weight {q.min()}")
        if g_top >= 0:
            return True  # diag(q - mu) > 0 plus PSD rank-one terms: S - mu I is positive definite
        sigma, _ = self.solve_ones(c, qs)
        # S - mu I = S'_mu + g_top 11^T with S'_mu positive definite
        return bool(g_top * sigma > -1.0)

    # ------------------------------------------------------------------ the frame
    def factor(self, gamma: float, s_min: float) -> tuple[TreeFactor, dict]:
        """The exact sparse factor of S and a small info dict (``a_sigma``, ``clipped``)."""
        c, q, g_top = self.weights(gamma, s_min)
        h = self.hierarchy
        k = self.num_classes
        anc = h.ancestor_matrix
        has_top = g_top > 0
        n_int = len(self.coord_nodes)
        offset = 1 if has_top else 0
        attach_depth = self.depths[self.attach]
        rows, cols, vals = [], [], []
        if has_top:
            rows.append(np.zeros(k, dtype=np.int64))
            cols.append(np.arange(k))
            vals.append(np.full(k, np.sqrt(g_top)))
        for t in range(self.top_depth + 1, int(attach_depth.max()) + 1):
            cls = np.flatnonzero(attach_depth >= t)
            nodes = anc[cls, t]
            rows.append(offset + self.coord_index[nodes])
            cols.append(cls)
            vals.append(np.sqrt(c[nodes]))
        rows.append(offset + n_int + np.arange(k))
        cols.append(np.arange(k))
        vals.append(np.sqrt(q))
        d = offset + n_int + k
        matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(d, k)
        )
        info = {"num_coordinates": d, "g_top": g_top, "a_sigma": None, "clipped": False}
        shift, kappa = None, 0.0
        if g_top < 0:
            a = -g_top
            sigma, alpha = self.solve_ones(c, q)
            disc = 1.0 - a * sigma
            info["a_sigma"] = a * sigma
            if disc < 0:  # within the eigenvalue tolerance the grid rule accepts
                info["clipped"] = True
                disc = 0.0
            kappa = a / (1.0 + np.sqrt(disc))  # = (1 - sqrt(1 - a sigma)) / sigma, no cancellation
            shift = matrix @ alpha
        return TreeFactor(matrix, shift, float(kappa), n_int, has_top), info

    # ------------------------------------------------------------------ dense K x K output
    def lca_depth_rows(self, block: int = 256) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, depths)``: LCA depths of classes ``rows`` (a slice) against all classes.

        ``depths[r, j] = depth(LCA(rows.start + r, j))`` (small ints, class order; the diagonal
        holds the class's own depth). One running minimum over the preorder per class, so no
        K x K x depth intermediate; the buffer is reused, copy what you keep.
        """
        k = self.num_classes
        lcp, own, pos = self.lcp, self.own_depth, self.position
        buf = np.empty((block, k), dtype=self.depth_dtype)
        for start in range(0, k, block):
            stop = min(start + block, k)
            pre = buf[: stop - start]
            for r, i in enumerate(range(start, stop)):
                p, row = pos[i], pre[r]
                if p + 1 < k:
                    np.minimum.accumulate(lcp[p:], out=row[p + 1 :])
                if p > 0:
                    row[:p] = np.minimum.accumulate(lcp[:p][::-1])[::-1]
                row[p] = own[i]
            yield slice(start, stop), pre[:, pos]

    def lca_node_rows(self, block: int = 256) -> Iterator[tuple[slice, np.ndarray]]:
        """Like :meth:`lca_depth_rows` but yielding LCA node indices (into ``hierarchy.nodes``)."""
        anc = self.hierarchy.ancestor_matrix
        for rows, depth in self.lca_depth_rows(block):
            yield rows, np.take_along_axis(anc[rows], depth.astype(np.intp), axis=1)

    def similarity_rows(
        self, gamma: float, s_min: float, dtype=np.float64, block: int = 256,
        rows: slice | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, S[rows])`` blocks of the target (unit diagonal), in class order.

        g strictly decreases going up, and the LCA of two classes is the shallowest of the
        consecutive-pair LCAs between them in preorder, so ``S_ij`` is the *minimum* of g over those
        pairs: one running minimum of floats per row, then one gather into class order. No depth
        table, no distance matrix. ``rows`` restricts the classes (default all). The yielded
        buffer is reused; copy what you keep.
        """
        k = self.num_classes
        g_pairs = self.g(gamma, s_min)[self.lcp_nodes].astype(dtype)
        pos = self.position
        rows = rows or slice(0, k)
        pre = np.empty(k, dtype=dtype)
        out = np.empty((min(block, rows.stop - rows.start), k), dtype=dtype)
        for start in range(rows.start, rows.stop, block):
            stop = min(start + block, rows.stop)
            for r, i in enumerate(range(start, stop)):
                p = pos[i]
                if p + 1 < k:
                    np.minimum.accumulate(g_pairs[p:], out=pre[p + 1 :])
                if p > 0:
                    np.minimum.accumulate(g_pairs[:p][::-1], out=pre[:p][::-1])
                pre[p] = 1.0
                np.take(pre, pos, out=out[r])
            yield slice(start, stop), out[: stop - start]

    def similarity(self, gamma: float, s_min: float, dtype=np.float64) -> np.ndarray:
        """The dense K x K target S (unit diagonal), without a distance matrix.

        Off the diagonal, a class's row depends only on the node it attaches to: for a leaf i
        under v and any other class j, ``LCA(i, j) = LCA(v, j)``, and an internal class is its own
        attach node. So one row ``R_v[j] = g(LCA(v, j))`` per attach node is copied into the rows
        of its classes, then the diagonal is set to 1. ``R_v`` is ``R_parent(v)`` with the classes
        under v set to ``g(v)``: a preorder walk over the internal nodes keeps one row per depth
        (a stack of ``depth`` rows, not one per node), so the work is one K-row copy per internal
        node plus the K x K output, written once.
        """
        return self._fill_by_lca(self.g(gamma, s_min).astype(dtype), 1.0)

    def distances(self) -> np.ndarray:
        """The K x K class distances ``delta(LCA(i, j))`` (zero diagonal), uint8 (int16 above
        255, as in the losses): equal to ``hierarchy.distance_matrix(distance)``, but filled like
        :meth:`similarity` (one K-row copy per internal node, no K x K temporary)."""
        top = int(self.delta.max())
        dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.int16
        return self._fill_by_lca(self.delta.astype(dtype), 0)

    def _fill_by_lca(self, gv: np.ndarray, diagonal) -> np.ndarray:
        """K x K ``gv[LCA(i, j)]`` off the diagonal, ``diagonal`` on it, in ``gv``'s dtype."""
        k = self.num_classes
        dtype = gv.dtype
        out = empty((k, k), dtype)
        nodes, levels, lo, hi = self._internal_preorder()
        att_sorted, att_start = self._classes_by_attach()
        stack = np.empty((int(levels.max()) + 1, k), dtype=dtype)
        order = self.order
        for v, lev, a, b in zip(nodes.tolist(), levels.tolist(), lo.tolist(), hi.tolist()):
            row = stack[lev]
            if lev == 0:
                row.fill(gv[v])
            else:
                row[...] = stack[lev - 1]
                row[order[a:b]] = gv[v]
            cls = att_sorted[att_start[v] : att_start[v + 1]]
            if len(cls):
                out[cls] = row
        out[np.arange(k), np.arange(k)] = diagonal
        return out

    def _internal_preorder(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The top and the coordinate nodes in preorder: ``(nodes, level below top, lo, hi)``.

        ``self.order[lo:hi]`` are the classes under each node (contiguous in the class preorder).
        """
        anc = self.hierarchy.ancestor_matrix
        sk = anc[self.order]
        own = self.own_depth[self.order].astype(np.intp)
        n = len(self.parents)
        lo, hi = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        k = self.num_classes
        for t in range(self.top_depth, sk.shape[1]):
            col = np.where(own >= t, sk[:, t], -1)
            starts = np.flatnonzero(np.concatenate([[True], col[1:] != col[:-1]]))
            ends = np.append(starts[1:], k)
            vals = col[starts]
            keep = vals >= 0
            lo[vals[keep]], hi[vals[keep]] = starts[keep], ends[keep]
        nodes = np.concatenate([[self.top], self.coord_nodes])
        levels = self.depths[nodes] - self.top_depth
        first = np.lexsort((levels, lo[nodes]))  # by range start, an ancestor before its child
        nodes = nodes[first]
        return nodes, levels[first], lo[nodes], hi[nodes]

    def _classes_by_attach(self) -> tuple[np.ndarray, np.ndarray]:
        """Class indices grouped by attach node: ``sorted[start[v]:start[v + 1]]`` attach at v."""
        n = len(self.parents)
        sorted_classes = np.argsort(self.attach, kind="stable")
        start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.attach, minlength=n), out=start[1:])
        return sorted_classes, start

    def factor_error(self, fac: TreeFactor, gamma: float, s_min: float) -> float:
        """An upper bound on ``max |W^T W - S|`` of the float64 factor, in O(#nodes + nnz).

        ``(W'^T W')_ij`` is the sum of the squared coordinates i and j share, accumulated down the
        path as a dot product would (``cum`` at their LCA). The shift turns it into
        ``cum[LCA] + kappa^2 y^T y - kappa (u_i + u_j)`` with ``u = W'^T y`` (a sparse product,
        ideally all ones). Off the diagonal the error is therefore at most, over every node v that
        can be an LCA, ``|e_v - kappa t|`` at ``t = 2 min u`` or ``t = 2 max u`` with
        ``e_v = cum_v + kappa^2 y^T y - g_v``; the diagonal is checked exactly. Since u is constant
        to rounding, this equals the realised maximum up to float64 rounding (a dense BLAS product
        of the densified factor rounds differently, by a few 1e-16).
        """
        c, q, g_top = self.weights(gamma, s_min)
        g = self.g(gamma, s_min)
        n = len(self.parents)
        cum = np.zeros(n)
        cum[self.top] = np.sqrt(g_top) ** 2 if fac.has_top else 0.0
        for nodes in reversed(self.levels):
            cum[nodes] = cum[self.parents[nodes]] + np.sqrt(c[nodes]) ** 2
        if fac.shift is not None:
            u = fac.kappa * (fac.matrix.T @ fac.shift)
            yy = float(fac.shift @ fac.shift) * fac.kappa**2
        else:
            u, yy = np.zeros(self.num_classes), 0.0
        diag = cum[self.attach] + np.sqrt(q) ** 2 - 2.0 * u + yy
        lcas = np.concatenate([[self.top], self.coord_nodes])
        e = cum[lcas] + yy - g[lcas]
        off = max(np.max(np.abs(e - 2.0 * u.min())), np.max(np.abs(e - 2.0 * u.max())))
        return float(max(off, np.max(np.abs(diag - 1.0))))
