"""Accuracy and mistake severity of ranked predictions: top-k, mistake severity, HierDist@k.

Definitions (METHODS.md section 5), for samples n with label y_n and classes ranked by score:

- ``top1`` / ``top5``: fraction of samples whose label is among the 1 / 5 highest-scored classes.
- ``mistake_severity``: mean ``D[y, top-1]`` over the misclassified samples only. With no mistake
  it is 0/0 and reported as ``nan`` (not 0.0: a perfect classifier has no mistakes to grade,
  which is different from mistakes that cost nothing).
- ``hierdist@k``: mean over all samples of the mean ``D[y, c]`` over the k highest-scored classes
  c (a correct class counts 0). ``hierdist@1 = (1 - top1) * mistake_severity`` exactly.
- ``acc@depth{t}`` (t = 1..H, only when a hierarchy is given): fraction of samples whose top-1
  class and label have the same ancestor at depth t (``hierarchy.level(t)``). A class shallower
  than t stands for itself at depth t, so ``acc@depth{H}`` equals ``top1``.
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
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

DEFAULT_KS = (1, 5, 20)
_BLOCK_ELEMENTS = 1 << 21  # scores per row block (8 MB of float32): bounds the temporaries

_derived: dict[int, tuple[weakref.ref, dict]] = {}


def derived_tables(hierarchy: Hierarchy) -> dict:
    """A dict for tables derived from ``hierarchy``, kept as long as that object lives.

    Keyed by object identity: looking a Hierarchy up by equality would hash its fingerprint on
    every call (tens of ms for ImageNet-12k), too slow for a per-batch call.
    """
    key = id(hierarchy)
    entry = _derived.get(key)
    if entry is None or entry[0]() is not hierarchy:
        entry = (weakref.ref(hierarchy), {})
        _derived[key] = entry
        weakref.finalize(hierarchy, _derived.pop, key, None)
    return entry[1]


# ---------------------------------------------------------------------- inputs
def as_distance_matrix(hierarchy_or_distance) -> np.ndarray:
    """The K x K class distance matrix of a :class:`Hierarchy` (published distance) or a matrix.

    A matrix (numpy array or torch tensor) must be square, finite, non-negative and have a zero
    diagonal. Integer matrices are returned as they are (small ints); hierarchies' matrices are
    cached per hierarchy and returned read-only.
    """
    if isinstance(hierarchy_or_distance, Hierarchy):
        tables = derived_tables(hierarchy_or_distance)
        if "distance" not in tables:
            d = hierarchy_or_distance.distance_matrix()
            d.setflags(write=False)
            tables["distance"] = d
        return tables["distance"]
    if isinstance(hierarchy_or_distance, torch.Tensor):
        d = hierarchy_or_distance.detach().cpu().numpy()
    elif isinstance(hierarchy_or_distance, np.ndarray):
        d = hierarchy_or_distance
    else:
        raise HafclsError(
            f"Expected a Hierarchy or a K x K distance matrix, got "
            f"{type(hierarchy_or_distance).__name__}.",
            "pass a hafcls Hierarchy, or hierarchy.distance_matrix() as a numpy array.",
        )
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise HafclsError(
            f"A distance matrix must be square K x K, got shape {tuple(d.shape)}.",
            "pass the K x K matrix of distances between the K classes.",
        )
    if d.dtype == bool or not (np.issubdtype(d.dtype, np.integer)
                               or np.issubdtype(d.dtype, np.floating)):
        raise HafclsError(
            f"A distance matrix must hold integers or floats, got dtype {d.dtype}.",
            "convert it with .astype(np.int16) or .astype(np.float64).",
        )
    if np.issubdtype(d.dtype, np.floating) and not np.isfinite(d).all():
        raise HafclsError("The distance matrix holds NaN or infinite values.",
                          "give finite distances between all class pairs.")
    if (d < 0).any():
        raise HafclsError("The distance matrix holds negative distances.",
                          "distances between classes must be >= 0.")
    if np.diagonal(d).any():
        raise HafclsError(
            "The distance matrix has a non-zero diagonal: a correct prediction must cost 0.",
            "set D[i, i] = 0 for every class i.",
        )
    return d


def _hierarchy_of(hierarchy_or_distance) -> Hierarchy | None:
    return hierarchy_or_distance if isinstance(hierarchy_or_distance, Hierarchy) else None


def as_scores(scores, num_classes: int | None = None, name: str = "scores") -> torch.Tensor:
    """``scores`` as an N x K torch tensor (numpy arrays are wrapped without a copy)."""
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    elif not isinstance(scores, torch.Tensor):
        raise HafclsError(
            f"{name} must be a torch tensor or numpy array, got {type(scores).__name__}.",
            f"pass {name} as an N x K array (one row per sample, one column per class).",
        )
    scores = scores.detach()
    if scores.ndim != 2:
        raise HafclsError(
            f"{name} must be 2-D (N samples x K classes), got shape {tuple(scores.shape)}.",
            "stack the per-sample score vectors into one N x K array.",
        )
    if num_classes is not None and scores.shape[1] != num_classes:
        raise HafclsError(
            f"{name} have {scores.shape[1]} columns but there are {num_classes} classes.",
            "give one column per class, in the hierarchy's class order.",
        )
    if scores.dtype == torch.bool:
        scores = scores.to(torch.uint8)
    if scores.is_complex():
        raise HafclsError(f"{name} must be real numbers, got {scores.dtype}.",
                          "pass real-valued scores (logits or probabilities).")
    return scores


def as_targets(targets, n: int, num_classes: int, device=None) -> torch.Tensor:
    """Validate class indices: 1-D integers in ``[0, num_classes)`` of length ``n``."""
    if isinstance(targets, np.ndarray):
        targets = torch.from_numpy(targets)
    elif not isinstance(targets, torch.Tensor):
        targets = torch.as_tensor(np.asarray(targets))
    targets = targets.detach()
    if targets.ndim != 1 or targets.shape[0] != n:
        raise HafclsError(
            f"targets must be a 1-D array of {n} class indices, got shape "
            f"{tuple(targets.shape)}.",
            "pass one integer class index per row of the scores.",
        )
    if targets.dtype.is_floating_point or targets.dtype in (torch.bool, torch.complex64,
                                                            torch.complex128):
        raise HafclsError(f"targets must be integer class indices, got {targets.dtype}.",
                          "convert them with .long() / .astype(np.int64).")
    targets = targets.to(device=device, dtype=torch.long)
    if n and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = targets[(targets < 0) | (targets >= num_classes)][0].item()
        raise HafclsError(
            f"Target {bad} is outside the {num_classes} classes (valid indices 0.."
            f"{num_classes - 1}).",
            "check that labels use the hierarchy's class order and the right hierarchy.",
        )
    return targets


def _check_finite(block: torch.Tensor, name: str = "scores") -> None:
    # a NaN anywhere makes the sum NaN: one cheap reduction instead of an N x K mask
    if block.dtype.is_floating_point and torch.isnan(block.sum()) and torch.isnan(block).any():
        raise HafclsError(f"{name} contain NaN, so the classes cannot be ranked.",
                          "fix the model or data that produced them (NaN logits).")


def _block_rows(num_classes: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(num_classes, 1))


# ---------------------------------------------------------------------- ranking
def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores of each row, best first (N x min(k, K), int64).

    Ties go to the lower class index, so the result equals the first k columns of a stable
    argsort of ``-scores``. ``torch.topk`` alone does not promise an order among equal values,
    so rows where equal values could matter (inside the top k or at its boundary) are re-ranked
    exactly; for continuous scores such rows are rare and the cost is one ``topk``.
    """
    scores = as_scores(scores)
    _check_finite(scores)
    n, num_classes = scores.shape
    k = min(int(k), num_classes)
    if k < 1:
        raise HafclsError(f"k must be >= 1, got {k}.", "ask for at least one class.")
    m = min(k + 1, num_classes)
    vals, idx = torch.topk(scores, m, dim=1, largest=True, sorted=True)
    suspect = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if m > k:
        suspect |= vals[:, k - 1] == vals[:, k]
    if k > 1:
        suspect |= (vals[:, 1:k] == vals[:, : k - 1]).any(dim=1)
    idx = idx[:, :k]
    rows = suspect.nonzero().flatten()
    if rows.numel():
        idx = idx.clone()
        idx[rows] = _exact_topk(scores.index_select(0, rows), vals.index_select(0, rows)[:, k - 1],
                                k)
    return idx


def _exact_topk(scores: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k with ties to the lower index, given each row's k-th largest value ``kth``."""
    kth = kth[:, None]
    above = scores > kth
    tie = scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    take = above | (tie & (tie.cumsum(dim=1) <= need))
    cols = take.nonzero()[:, 1].view(-1, k)  # ascending class index within each row
    order = torch.sort(scores.gather(1, cols), dim=1, descending=True, stable=True).indices
    return cols.gather(1, order)


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
        The k of each HierDist@k. k > K is clipped to K (see the module docstring).
    """

    def __init__(self, hierarchy_or_distance, ks: Sequence[int] = DEFAULT_KS):
        self._distance = as_distance_matrix(hierarchy_or_distance)
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
                + [f"depth_hits@{t}" for t in self.depths])

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
        acc = np.zeros_like(self._state)
        for start in range(0, scores.shape[0], rows):
            acc += self._block_counts(scores[start:start + rows], targets[start:start + rows],
                                      dist, levels)
        self._state += acc

    def _block_counts(self, scores, targets, dist, levels) -> np.ndarray:
        ranked = topk_indices(scores, self._rank_depth)
        hits = ranked == targets[:, None]
        # D[true, ranked] read from the flat K x K table: one small gather, no N x K copy
        d = torch.take(dist, targets[:, None] * self.num_classes + ranked)
        cum = d.cumsum(dim=1, dtype=torch.int64 if self._integer else torch.float64)
        out = [float(scores.shape[0]), hits[:, :1].sum().item(),
               hits[:, : self._top5].sum().item()]
        out += cum[:, [k - 1 for k in self._prefixes]].sum(dim=0).tolist()
        if levels is not None and levels.shape[1]:
            same = levels.index_select(0, ranked[:, 0]) == levels.index_select(0, targets)
            out += same.sum(dim=0).tolist()
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


def evaluate(scores, targets, hierarchy_or_distance, ks: Sequence[int] = DEFAULT_KS
             ) -> dict[str, float]:
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
        The k of each ``hierdist@k`` key; k > K is clipped to K.

    Returns
    -------
    dict with ``top1``, ``top5``, ``mistake_severity``, ``hierdist@{k}`` per k,
    ``acc@depth{t}`` for t = 1..H and ``n``; rates are fractions in [0, 1]. See the module
    docstring for the exact definitions (``mistake_severity`` is NaN when there is no mistake).
    """
    meter = SeverityMeter(hierarchy_or_distance, ks)
    meter.update(scores, targets)
    return meter.compute()
