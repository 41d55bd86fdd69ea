"""Accuracy and mistake severity of ranked predictions: top-k, mistake severity, HierDist@k.

Definitions (docs/metrics.md), for samples n with label y_n and classes ranked by score:

- ``top1`` / ``top5``: fraction of samples whose label is among the 1 / 5 highest-scored classes.
- ``mistake_severity``: mean ``D[y, top-1]`` over the misclassified samples only. With no mistake
  it is 0/0 and reported as ``nan`` (not 0.0: a perfect classifier has no mistakes to grade,
  which is different from mistakes that cost nothing).
- ``hierdist@k``: mean over all samples of the mean ``D[y, c]`` over the k highest-scored classes
  c (a correct class counts 0). ``hierdist@1 = (1 - top1) * mistake_severity`` exactly.
- ``acc@depth{t}`` (t = 1..H, only when a hierarchy is given): fraction of samples whose top-1
  class and label have the same ancestor at depth t (``hierarchy.level(t)``). A class shallower
  than t stands for itself at depth t, so ``acc@depth{H}`` equals ``top1``.
- ``hops@{k}`` for each k and ``hops`` (full HOPS, over all K positions; ``full_hops=False``
  skips it and the full sort it needs): HOPS of :mod:`hafcls.metrics.hops`
  (docs/ranking-and-decoding.md).
- ``n``: number of samples.

Conventions:

- Rates are fractions in [0, 1], not percentages; printouts multiply by 100 (see
  :func:`hafcls.metrics.summary.format_summary`).
- Ranking is deterministic: higher score first, and among equal scores the lower class index
  first, exactly as a stable argsort of ``-scores`` (see :func:`topk_indices`).
- ``k`` larger than the number of classes K is clipped to K: ``hierdist@20`` on 10 classes is
  the mean distance over all 10 classes and ``top5`` on 3 classes is 1.0. The key keeps the
  requested k so that result tables line up across datasets.
- ``D`` is indexed ``D[true, predicted]``; it must be non-negative with a zero diagonal.
- Every sample counts (no partial batch is dropped); scores are processed in row blocks so
  memory stays bounded, and there is no Python loop over samples or classes.
- Rank on logits or log-probabilities, not float32 probabilities (softmax underflows to ties
  once logit gaps pass ~90); bf16/fp16 scores are upcast to float32 before ranking.
- HierDist@k is computed here only: :func:`ranked_distances` and :func:`hierdist_curve` give
  the per-sample distances of the top k and the HierDist@k curve to other modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.metrics.hops import HopsTables
from hafcls.metrics.inputs import (  # noqa: F401  (re-exported: older imports use this module)
    _block_rows,
    _check_finite,
    _derived,
    _hierarchy_of,
    as_distance_matrix,
    as_scores,
    as_targets,
    derived_tables,
)
from hafcls.metrics.ranking import full_ranking, topk_indices  # noqa: F401

DEFAULT_KS = (1, 5, 20)

# ---------------------------------------------------------------------- streaming meter
def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    try:
        ks = tuple(dict.fromkeys(int(k) for k in ks))
    except (TypeError, ValueError):
        raise HafclsError(f"ks must be positive integers, got {ks!r}.",
                          "pass e.g. ks=(1, 5, 20).") from None
    if not ks or min(ks) < 1:
        raise HafclsError(f"ks must be positive integers, got {ks!r}.",
                          "pass e.g. ks=(1, 5, 20).")
    return ks


class SeverityMeter:
    """Streaming top-k accuracy, mistake severity, HierDist@k and per-depth accuracy.

    ``update(scores, targets)`` once per batch, ``compute()`` at the end: the result equals
    :func:`evaluate` on all batches at once, exactly for integer distances (the meter keeps
    integer-valued float64 sums and counts, which add exactly below 2**53).

    For distributed evaluation the counters form one float64 vector, :meth:`state_tensor`, that
    can be summed across processes (``torch.distributed.all_reduce``) and loaded back with
    :meth:`load_state_tensor`; :meth:`all_reduce` does both, and :meth:`merge` adds another
    meter in the same process.

    Parameters
    ----------
    hierarchy_or_distance:
        A :class:`Hierarchy` (published distance, with per-depth accuracy) or a K x K distance
        matrix ``D[true, predicted]`` (no per-depth accuracy).
    ks:
        The k of each HierDist@k and HOPS@k. k > K is clipped to K (see the module docstring).
    full_hops:
        Also report full HOPS (``hops``); it needs one full sort of each batch's scores.
        HOPS sums are float sums, so merged or all-reduced meters agree with :func:`evaluate`
        up to rounding (the other counters exactly).
    """

    def __init__(self, hierarchy_or_distance, ks: Sequence[int] = DEFAULT_KS, *,
                 full_hops: bool = True):
        self._distance = as_distance_matrix(hierarchy_or_distance)
        self._hops = HopsTables.of(hierarchy_or_distance)
        self.full_hops = bool(full_hops)
        hierarchy = _hierarchy_of(hierarchy_or_distance)
        self.num_classes = int(self._distance.shape[0])
        self.ks = _check_ks(ks)
        k_max = self.num_classes
        # every distinct (clipped) prefix length whose distance sum is needed; 1 for severity
        self._prefixes = sorted({1, *(min(k, k_max) for k in self.ks)})
        self._top5 = min(5, k_max)
        self._rank_depth = max(max(self._prefixes), self._top5)
        if hierarchy is not None:
            self.depths = tuple(range(1, hierarchy.height + 1))
            levels = [hierarchy.level(t) for t in self.depths]
            self._levels = np.stack(levels, axis=1) if levels else np.zeros((k_max, 0), np.int64)
        else:
            self.depths = ()
            self._levels = None
        self._integer = bool(np.issubdtype(self._distance.dtype, np.integer))
        self._on_device: dict = {}
        self.reset()

    # -- layout of the counter vector: n, hits@1, hits@5, distance sums, depth hits
    @property
    def state_names(self) -> list[str]:
        """What each entry of :meth:`state_tensor` counts."""
        return (["n", "hits@1", "hits@5"] + [f"distance_sum@{k}" for k in self._prefixes]
                + [f"depth_hits@{t}" for t in self.depths]
                + [f"hops_sum@{k}" for k in self.ks] + ["hops_sum"] * self.full_hops)

    def reset(self) -> None:
        """Forget every sample seen so far."""
        self._state = np.zeros(len(self.state_names), dtype=np.float64)

    def _tables(self, device: torch.device):
        if device not in self._on_device:
            d = torch.from_numpy(np.array(self._distance))  # copy: the cached matrix is read-only
            if self._integer:
                d = d.to(torch.int16 if self._distance.max() <= 32767 else torch.int64)
            else:
                d = d.to(torch.float64)
            levels = None if self._levels is None else torch.from_numpy(self._levels)
            self._on_device[device] = (d.to(device),
                                       None if levels is None else levels.to(device))
        return self._on_device[device]

    def update(self, scores, targets) -> None:
        """Add a batch: ``scores`` N x K (higher = better), ``targets`` N class indices."""
        scores = as_scores(scores, self.num_classes)
        targets = as_targets(targets, scores.shape[0], self.num_classes, scores.device)
        dist, levels = self._tables(scores.device)
        rows = _block_rows(self.num_classes)
        # rank in row blocks (bounded N x K temporaries); count on the N x k prefix at once, so
        # the many small operations run once per batch, not once per block
        tops, full_sum = [], 0.0
        for start in range(0, scores.shape[0], rows):
            block = scores[start:start + rows]
            if self.full_hops:  # one exact full sort serves the top-k and full HOPS
                full = full_ranking(block.cpu())
                y = targets[start:start + rows].cpu()
                full_sum += self._hops.scores(y, full, [self.num_classes])[0].sum().item()
                tops.append(full[:, : self._rank_depth].to(scores.device))
            else:
                tops.append(topk_indices(block, self._rank_depth))
        if not tops:
            return
        counts = self._counts(torch.cat(tops), targets, dist, levels)
        if self.full_hops:
            counts[-1] = full_sum
        self._state += counts

    def _counts(self, ranked, targets, dist, levels) -> np.ndarray:
        hits = ranked == targets[:, None]
        # D[true, ranked] read from the flat K x K table: one small gather, no N x K copy
        d = torch.take(dist, targets[:, None] * self.num_classes + ranked)
        cum = d.cumsum(dim=1, dtype=torch.int64 if self._integer else torch.float64)
        out = [float(ranked.shape[0]), hits[:, :1].sum().item(),
               hits[:, : self._top5].sum().item()]
        out += cum[:, [k - 1 for k in self._prefixes]].sum(dim=0).tolist()
        if levels is not None and levels.shape[1]:
            same = levels.index_select(0, ranked[:, 0]) == levels.index_select(0, targets)
            out += same.sum(dim=0).tolist()
        y, top = targets.cpu(), ranked.cpu()
        ks = [min(k, self.num_classes) for k in self.ks]
        out += [v.sum().item() for v in self._hops.scores(y, top[:, : max(ks)], ks)]
        out += [0.0] * self.full_hops  # the full-HOPS sum, filled in by update
        return np.asarray(out, dtype=np.float64)

    def compute(self) -> dict[str, float]:
        """The metrics of every sample added since the last :meth:`reset`."""
        state = dict(zip(self.state_names, self._state.tolist()))
        n = state["n"]
        if n == 0:
            raise HafclsError("No samples were added to the meter.",
                              "call update(scores, targets) with at least one sample first.")
        mistakes = n - state["hits@1"]
        first = state["distance_sum@1"]
        out = {
            "top1": state["hits@1"] / n,
            "top5": state["hits@5"] / n,
            "mistake_severity": first / mistakes if mistakes else float("nan"),
        }
        for k in self.ks:
            kk = min(k, self.num_classes)
            out[f"hierdist@{k}"] = state[f"distance_sum@{kk}"] / (kk * n)
        for t in self.depths:
            out[f"acc@depth{t}"] = state[f"depth_hits@{t}"] / n
        for k in self.ks:
            out[f"hops@{k}"] = state[f"hops_sum@{k}"] / n
        if self.full_hops:
            out["hops"] = state["hops_sum"] / n
        out["n"] = int(n)
        return out

    # -- distributed / merging
    def state_tensor(self) -> torch.Tensor:
        """The counters as a float64 1-D tensor; sums of such tensors are valid states."""
        return torch.from_numpy(self._state.copy())

    def load_state_tensor(self, state) -> None:
        """Replace the counters by ``state`` (e.g. the all-reduced :meth:`state_tensor`)."""
        state = np.asarray(torch.as_tensor(state).detach().cpu(), dtype=np.float64).ravel()
        if state.shape != self._state.shape:
            raise HafclsError(
                f"The state has {state.size} entries but this meter keeps "
                f"{self._state.size} ({', '.join(self.state_names)}).",
                "load a state from a meter built with the same hierarchy and ks.",
            )
        if not np.isfinite(state).all() or (state < 0).any():
            raise HafclsError("The state holds negative or non-finite counts.",
                              "load a state produced by SeverityMeter.state_tensor().")
        self._state = state.copy()

    def merge(self, other: SeverityMeter) -> SeverityMeter:
        """Add another meter's counts (same distances and ks) into this one; returns self."""
        if (not isinstance(other, SeverityMeter) or other.state_names != self.state_names
                or other.ks != self.ks or not np.array_equal(other._distance, self._distance)):
            raise HafclsError("Only meters with the same distances and ks can be merged.",
                              "build every meter from the same hierarchy and ks.")
        self._state = self._state + other._state
        return self

    def all_reduce(self, group=None) -> None:
        """Sum the counters over all processes of ``torch.distributed`` (no-op without it)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        backend = dist.get_backend(group)
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
        state = self.state_tensor().to(device)
        dist.all_reduce(state, op=dist.ReduceOp.SUM, group=group)
        self.load_state_tensor(state)

    def __repr__(self) -> str:
        return (f"SeverityMeter(classes={self.num_classes}, ks={self.ks}, "
                f"n={int(self._state[0])})")


def evaluate(scores, targets, hierarchy_or_distance, ks: Sequence[int] = DEFAULT_KS, *,
             full_hops: bool = True) -> dict[str, float]:
    """Top-1/top-5 accuracy, mistake severity, HierDist@k, per-depth accuracy and n.

    Parameters
    ----------
    scores:
        N x K torch tensor or numpy array, higher = better (logits, probabilities or
        :func:`hafcls.inference.crm` scores). Ties rank the lower class index first.
    targets:
        N class indices in ``[0, K)``.
    hierarchy_or_distance:
        A :class:`Hierarchy` or a K x K distance matrix ``D[true, predicted]`` (then the
        ``acc@depth{t}`` keys are omitted).
    ks:
        The k of each ``hierdist@k`` and ``hops@k`` key; k > K is clipped to K.
    full_hops:
        Report full HOPS as ``hops`` (one full sort of the scores; False skips it).

    Returns
    -------
    dict with ``top1``, ``top5``, ``mistake_severity``, ``hierdist@{k}`` per k,
    ``acc@depth{t}`` for t = 1..H, ``hops@{k}`` per k, ``hops`` and ``n``; rates are fractions
    in [0, 1]. See the module docstring for the exact definitions (``mistake_severity`` is NaN
    when there is no mistake).
    """
    meter = SeverityMeter(hierarchy_or_distance, ks, full_hops=full_hops)
    meter.update(scores, targets)
    return meter.compute()


def ranked_distances(scores, targets, hierarchy_or_distance, k: int) -> torch.Tensor:
    """``D[y, c]`` for the k highest-scored classes c of each sample, best first (N x k, int64
    for integer distances, else float64); k > K is clipped to K. Ties to the lower index."""
    dist = as_distance_matrix(hierarchy_or_distance)
    num_classes = dist.shape[0]
    scores = as_scores(scores, num_classes)
    y = as_targets(targets, scores.shape[0], num_classes, scores.device)
    flat = torch.from_numpy(np.array(dist).ravel()).to(scores.device)
    flat = flat.long() if np.issubdtype(dist.dtype, np.integer) else flat.double()
    rows = _block_rows(num_classes)
    parts = [torch.take(flat, y[i:i + rows, None] * num_classes
                        + topk_indices(scores[i:i + rows], k))
             for i in range(0, scores.shape[0], rows)]
    return torch.cat(parts) if parts else flat.new_zeros((0, min(int(k), num_classes)))


def hierdist_curve(scores, targets, hierarchy_or_distance, max_k: int) -> np.ndarray:
    """HierDist@k for k = 1..min(max_k, K) (float64 array; entry k-1 is HierDist@k)."""
    d = ranked_distances(scores, targets, hierarchy_or_distance, max_k)
    if d.shape[0] == 0:
        raise HafclsError("There are no samples to score.", "pass at least one sample.")
    ks = np.arange(1, d.shape[1] + 1, dtype=np.float64)
    return d.double().cumsum(dim=1).mean(dim=0).numpy() / ks
