"""HOPS@k (Hier-COS, CVPR 2026) and top-k order accuracy: the order inside the top k.

docs/ranking-and-decoding.md. For a sample with true class y and classes ranked by score
(ties to the lower class index):

1. ``r_y(j)``: dense rank of ``d(y, j)`` ascending (``r_y(y) = 0``; equal distances share a rank).
2. Ideal sequence ``e`` = the ranks sorted ascending; obtained ``o_p = r_y(π(p))``.
3. Position weights from ``e``: a run of equal rank r and length n starts at ``2^-r`` and decays
   linearly inside the run (q = 0..n-1): ``w = 2^-r - (q/n)(2^-r - 2^-(r+1))``; the last run
   decays to 0 instead: ``w = 2^-r (1 - q/n)``. Position 0 (the true class) has w = 1.
4. ``D = Σ_{p<k} w_p |o_p - e_p|``, ``W = Σ_p w_p |e_p - e'_p|`` with ``e'`` the ideal sequence
   with its first k entries reversed (all K for full HOPS); ``HOPS@k = clip(1 - D/W, 0, 1)``,
   ``HOPS@1`` = top-1 correctness (W = 0 there); mean over samples. A W of 0 for k > 1 (only
   possible with zero off-diagonal distances) scores 1 when D = 0, else 0.

``e`` and ``w`` depend on the true class only through the run lengths, so they are computed from
a K x R table of run starts (R = number of distinct distances) by :meth:`HopsTables.ideal`.
Because they depend on the true class only, the first P positions of every class are cached as
K x P tables (small-int ranks, float64 weights) when K·P is at most ``_CACHE_ELEMENTS`` (full
HOPS for K <= 2048), and the dense rank of every class for every true class as one K x K small-int
table when K <= 4096; a batch then gathers rows instead of recomputing them. The normaliser W is
cached per class and k. Nothing loops over samples or classes.
"""

from __future__ import annotations

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.metrics.inputs import (
    _block_rows,
    as_distance_matrix,
    as_scores,
    as_targets,
    derived_tables,
)
from hafcls.metrics.ranking import full_ranking, topk_indices

_CACHE_ELEMENTS = 1 << 22  # entries of one cached K x P ideal table (32 MB of float64 weights)
_GROUP_CLASSES = 4096  # largest K whose K x K dense-rank table is cached (16 MB of int8)


class HopsTables:
    """Per-class dense-rank tables of one distance matrix (build with :meth:`of`)."""

    def __init__(self, distance: np.ndarray):
        d = np.asarray(distance)
        k = d.shape[0]
        if not np.issubdtype(d.dtype, np.integer):
            # float distances: dense ranks of the distinct values of each row (rare, exact)
            _, d = np.unique(d, return_inverse=True)
            d = d.reshape(k, k)
        d = d.astype(np.int64 if d.max() > 32767 else np.int16)
        values = int(d.max()) + 1
        present = np.zeros((k, values), dtype=bool)
        present[np.arange(k)[:, None], d] = True
        rank_of = np.cumsum(present, axis=1) - 1  # dense rank of each present value
        counts_v = np.stack([(d == v).sum(axis=1) for v in range(values)], axis=1)
        self.num_ranks = int(present.sum(axis=1).max())
        counts = np.zeros((k, self.num_ranks), dtype=np.int64)
        rows, vals = np.nonzero(present)
        counts[rows, rank_of[rows, vals]] = counts_v[rows, vals]
        starts = np.cumsum(counts, axis=1) - counts
        starts[counts == 0] = k  # absent ranks start past the end, so searches skip them
        self.num_classes = k
        self.num_values = values
        self.distance = torch.from_numpy(d.ravel())
        self.rank_of = torch.from_numpy(rank_of.ravel())
        self.starts = torch.from_numpy(np.ascontiguousarray(starts))
        self.counts = torch.from_numpy(np.maximum(counts, 1))
        self.last = torch.from_numpy(present.sum(axis=1) - 1)
        self._norm: dict[int, torch.Tensor] = {}
        self._prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.group = None  # K x K dense ranks r_y(j), flat, when K is small enough
        if k <= _GROUP_CLASSES:
            small = np.int8 if self.num_ranks <= 127 else np.int16
            group = np.take_along_axis(rank_of, d.astype(np.int64), axis=1).astype(small)
            self.group = torch.from_numpy(group.ravel())

    @staticmethod
    def of(hierarchy_or_distance) -> HopsTables:
        """Tables for a Hierarchy (cached with it) or a K x K distance matrix."""
        if isinstance(hierarchy_or_distance, Hierarchy):
            tables = derived_tables(hierarchy_or_distance)
            if "hops" not in tables:
                tables["hops"] = HopsTables(as_distance_matrix(hierarchy_or_distance))
            return tables["hops"]
        return HopsTables(as_distance_matrix(hierarchy_or_distance))

    # -- ideal sequence and weights
    def ideal(self, y: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, w)``: ideal ranks (B x P int64) and weights (B x P float64) at ``positions``."""
        starts = self.starts.index_select(0, y)
        where = positions.expand(len(y), -1).contiguous()
        e = torch.searchsorted(starts, where, right=True).sub_(1)
        q = (where - starts.gather(1, e)).double()
        n = self.counts.index_select(0, y).gather(1, e).double()
        last = e == self.last.index_select(0, y)[:, None]
        base = torch.pow(2.0, -e.double())
        # inside a run w falls from 2^-r towards 2^-(r+1); in the last run towards 0
        decay = torch.where(last, q / n, q / (2 * n))
        return e, base.mul_(1 - decay)

    def ideal_prefix(self, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`ideal` at positions ``0..size-1``, gathered from a per-class cache when small.

        The ranks come back in a small integer dtype (int8/int16) from the cache, int64 else.
        """
        if self.num_classes * size > _CACHE_ELEMENTS:
            return self.ideal(y, torch.arange(size)[None, :])
        if size not in self._prefix:
            e = torch.empty(self.num_classes, size, dtype=self.rank_dtype)
            w = torch.empty(self.num_classes, size, dtype=torch.float64)
            rows = _block_rows(size)
            positions = torch.arange(size)[None, :]
            for start in range(0, self.num_classes, rows):
                cls = torch.arange(start, min(start + rows, self.num_classes))
                e[start:start + rows], w[start:start + rows] = self.ideal(cls, positions)
            self._prefix[size] = (e, w)
        e, w = self._prefix[size]
        return e.index_select(0, y), w.index_select(0, y)

    @property
    def rank_dtype(self) -> torch.dtype:
        return torch.int8 if self.num_ranks <= 127 else torch.int16

    def obtained(self, y: torch.Tensor, ranked: torch.Tensor) -> torch.Tensor:
        """``o``: the true class's dense rank of each ranked class (B x P, int64 or small int)."""
        flat = y[:, None] * self.num_classes + ranked
        if self.group is not None:
            return torch.take(self.group, flat)
        d = torch.take(self.distance, flat).long()
        return torch.take(self.rank_of, y[:, None] * self.num_values + d)

    def normaliser(self, k: int) -> torch.Tensor:
        """W for every class and prefix length k (float64, length K), cached per k."""
        if k not in self._norm:
            out = torch.empty(self.num_classes, dtype=torch.float64)
            rows = _block_rows(k)
            for start in range(0, self.num_classes, rows):
                y = torch.arange(start, min(start + rows, self.num_classes))
                e, w = self.ideal_prefix(y, k)
                e = e.long()
                out[start:start + rows] = (w * (e - e.flip(1)).abs()).sum(dim=1)
            self._norm[k] = out
        return self._norm[k]

    # -- per-sample scores
    def terms(self, y: torch.Tensor, ranked: torch.Tensor) -> torch.Tensor:
        """B x P ``w |o - e|`` along the ranked prefix (float64)."""
        e, w = self.ideal_prefix(y, ranked.shape[1])
        o = self.obtained(y, ranked)
        # small ints subtract exactly (|o - e| < number of ranks); the product promotes
        return w.mul_(torch.sub(o, e).abs_())

    def discrepancy(self, y: torch.Tensor, ranked: torch.Tensor) -> torch.Tensor:
        """B x P cumulative ``Σ_{p'≤p} w |o - e|`` along the ranked prefix (float64)."""
        return self.terms(y, ranked).cumsum(dim=1)

    def scores(self, y: torch.Tensor, ranked: torch.Tensor, ks) -> list[torch.Tensor]:
        """Per-sample HOPS@k (float64) for each k in ``ks`` (each <= ranked columns)."""
        longer = [k for k in ks if k > 1]
        if len(longer) == 1:  # one prefix sum: no B x P cumulative sum needed
            sums = {longer[0]: self.terms(y, ranked[:, :longer[0]]).sum(dim=1)}
        elif longer:
            cum = self.discrepancy(y, ranked[:, :max(longer)])
            sums = {k: cum[:, k - 1] for k in longer}
        out = []
        for k in ks:
            if k == 1:
                out.append((ranked[:, 0] == y).double())
                continue
            dk = sums[k]
            wk = self.normaliser(k).index_select(0, y)
            ratio = torch.where(wk > 0, 1 - dk / wk.clamp_min(1e-300), (dk == 0).double())
            out.append(ratio.clamp_(0.0, 1.0))
        return out

    def order_correct(self, y: torch.Tensor, ranked: torch.Tensor) -> torch.Tensor:
        """B x P booleans: the ranked prefix up to p matches the ideal ranks."""
        e, _ = self.ideal_prefix(y, ranked.shape[1])
        return (self.obtained(y, ranked) == e).cummin(dim=1).values


def _prepare(scores, targets, hierarchy):
    tables = HopsTables.of(hierarchy)
    s = as_scores(scores, tables.num_classes).cpu()
    y = as_targets(targets, s.shape[0], tables.num_classes, "cpu")
    if s.shape[0] == 0:
        raise HafclsError("There are no samples to score.", "pass at least one sample.")
    return tables, s, y


def _check_k(k, num_classes: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise HafclsError(f"k must be a positive integer or None, got {k!r}.",
                          "pass e.g. k=20, or k=None for full HOPS.")
    return min(int(k), num_classes)


def hops(scores, targets, hierarchy, k: int | None = None, per_sample: bool = False):
    """HOPS@k of scores (N x K, higher = better; logits or log-probabilities), mean over samples.

    ``hierarchy`` is a :class:`Hierarchy` (published distance) or a K x K distance matrix;
    ``k=None`` gives full HOPS (all K positions; k > K is clipped to K). With
    ``per_sample=True`` the N per-sample values (float64 tensor) are returned instead.
    """
    tables, s, y = _prepare(scores, targets, hierarchy)
    k = tables.num_classes if k is None else _check_k(k, tables.num_classes)
    rows = _block_rows(tables.num_classes)
    if k == tables.num_classes:  # full rankings are N x K: score them block by block
        values = torch.cat([tables.scores(y[i:i + rows], full_ranking(s[i:i + rows]), (k,))[0]
                            for i in range(0, s.shape[0], rows)])
    else:  # N x k prefixes are small: score them at once (few, larger operations)
        values = tables.scores(y, _topk(s, k), (k,))[0]
    return values if per_sample else float(values.mean())


def _topk(s: torch.Tensor, k: int) -> torch.Tensor:
    rows = _block_rows(s.shape[1])
    return torch.cat([topk_indices(s[i:i + rows], k) for i in range(0, s.shape[0], rows)])


def topk_order_accuracy(scores, targets, hierarchy, k: int) -> float:
    """Share of samples whose top-k dense distance ranks equal the ideal ones (o_p = e_p, p≤k)."""
    tables, s, y = _prepare(scores, targets, hierarchy)
    k = _check_k(k, tables.num_classes)
    hits = int(tables.order_correct(y, _topk(s, k))[:, -1].sum())
    return hits / s.shape[0]
