"""The HAFrame target cosine matrix S and the choice of ``s_min`` (docs/haframe.md).

``S_ij = (1 - s_min) exp(-gamma d_ij / d_max) + s_min`` with ``S_ii = 1``: the formula is
written once, in :func:`similarity_from_distance`, which numpy code (this package) and torch code
(the HAFrame loss) both call.

``s_min`` rules:

* ``"paper"``: the published search. A 100-point grid from ``-1/(K-1)`` down to ``-1``
  (``numpy.linspace``); keep the most negative grid value for which every eigenvalue of S is
  ``>= 0``, an eigenvalue with ``|lambda| < 1e-6`` counting as zero, i.e. ``lambda_min > -1e-6``.
  The feasible set ``{s : lambda_min(S(s)) > -1e-6}`` is an interval (``lambda_min`` of the affine
  family ``S(s) = (1 - s) E + s 11^T`` is concave in s) that contains the first grid point, so a
  binary search over the grid gives the same answer as scanning it. For a hierarchy each test is
  the exact O(#nodes) test of :mod:`hafcls.frames.tree` on ``S + 1e-6 I``; for a distance matrix
  it is ``numpy.linalg.eigvalsh``. Edges: the eigenvalue rule sees rounded eigenvalues (errors
  around ``1e-15 K``), so a grid point whose true ``lambda_min`` lies within that of ``-1e-6``
  could be classified differently by the two; and ``lambda_min = -1e-6`` exactly is rejected
  (``|lambda| < 1e-6`` is strict).
* ``"exact"``: the most negative s with ``lambda_min(S) > 1e-9`` (:data:`EXACT_MARGIN`), found by
  bisection to a relative ``1e-13`` and returned from the feasible side. The margin keeps
  ``1 - a sigma`` of the tree construction clear of rounding, so the frame stays exact.
* a float: used as given after checking ``lambda_min > -1e-6`` (the paper's tolerance); otherwise
  a :class:`HafclsError` states the feasible bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

PAPER_GRID_POINTS = 100
PAPER_TOLERANCE = 1e-6
EXACT_MARGIN = 1e-9
RULES = ("paper", "exact")


DISTANCES = ("published", "lca_height")


# ---------------------------------------------------------------------- the formula
def similarity_from_distance(distance, gamma: float, s_min: float, d_max: float | None = None):
    """``S = (1 - s_min) exp(-gamma d / d_max) + s_min`` elementwise, exactly 1 where ``d == 0``.

    ``distance`` is a numpy array (or anything ``numpy.asarray`` takes) or a torch tensor; the
    result is computed in the same library: a numpy float64 array, or a tensor on the input's
    device, in the input's dtype when that is floating point and float64 otherwise. ``d_max``
    defaults to ``distance.max()``; it must be > 0. ``gamma`` and ``s_min`` are plain numbers
    (resolve ``s_min="paper"`` first with :func:`find_s_min`).
    """
    if isinstance(distance, torch.Tensor):
        d = distance if distance.is_floating_point() else distance.to(torch.float64)
        d_max = float(d.max()) if d_max is None else float(d_max)
        _check_d_max(d_max)
        s = (1.0 - s_min) * torch.exp(-gamma * d / d_max) + s_min
        return torch.where(d == 0, torch.ones((), dtype=s.dtype, device=s.device), s)
    d = np.asarray(distance, dtype=np.float64)
    d_max = float(d.max()) if d_max is None else float(d_max)
    _check_d_max(d_max)
    s = (1.0 - s_min) * np.exp(-gamma * d / d_max) + s_min
    return np.where(d == 0, 1.0, s)


def _check_d_max(d_max: float) -> None:
    if not math.isfinite(d_max) or d_max <= 0:
        raise HafclsError(
            f"d_max must be a finite number > 0, got {d_max!r}.",
            "pass distances with at least one non-zero entry, or d_max > 0.",
        )


# ---------------------------------------------------------------------- validation
def check_gamma(gamma) -> float:
    """``gamma`` as a float, or :class:`HafclsError` unless it is finite and > 0."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise HafclsError(
            f"gamma must be a number, got {gamma!r}.", "pass a positive float such as 1.0."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise HafclsError(
            f"gamma must be a finite number > 0, got {gamma!r}.",
            "pass a positive value; the paper uses 1 (FGVC), 2 (CIFAR-100), 3 (tiered), 5 (iNat).",
        )
    return value


def check_distance(distance: np.ndarray) -> np.ndarray:
    """A validated square, symmetric, non-negative distance matrix with a zero diagonal."""
    d = np.asarray(distance)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise HafclsError(
            f"A distance matrix must be square, got shape {d.shape}.", "pass a K x K matrix."
        )
    if d.shape[0] < 2:
        raise HafclsError(
            f"A frame needs at least 2 classes; the distance matrix has {d.shape[0]}.",
            "pass a K x K matrix with K >= 2.",
        )
    if not np.issubdtype(d.dtype, np.number) or np.issubdtype(d.dtype, np.complexfloating):
        raise HafclsError(f"Distances must be real numbers, got {d.dtype}.", "pass numbers.")
    if not np.all(np.isfinite(d)) or d.min() < 0:
        raise HafclsError(
            "Distances must be finite and non-negative.", "check the distance matrix."
        )
    if np.any(np.diagonal(d) != 0):
        raise HafclsError(
            "A distance matrix needs a zero diagonal (d(a, a) = 0).", "set the diagonal to 0."
        )
    if not np.array_equal(d, d.T):
        raise HafclsError("The distance matrix is not symmetric.", "use d(a, b) = d(b, a).")
    if d.max() == 0:
        raise HafclsError(
            "All distances are 0, so S would be all ones.", "pass distinct classes."
        )
    return d


def paper_grid(num_classes: int) -> np.ndarray:
    """The published 100-point grid from ``-1/(K-1)`` down to ``-1``."""
    return np.linspace(-1.0 / (num_classes - 1), -1.0, PAPER_GRID_POINTS)


# ---------------------------------------------------------------------- the two sources
class _DenseSimilarity:
    """S from an explicit distance matrix; eigenvalue tests by ``eigvalsh`` (O(K^3) each)."""

    def __init__(self, distance: np.ndarray):
        self.distance = check_distance(distance)
        self.num_classes = self.distance.shape[0]
        self.d_max = float(self.distance.max())

    def similarity(self, gamma: float, s_min: float, dtype=np.float64) -> np.ndarray:
        d = self.distance
        if np.issubdtype(d.dtype, np.integer) and self.d_max <= 1 << 16:
            lut = similarity_from_distance(np.arange(int(self.d_max) + 1), gamma, s_min, self.d_max)
            s = lut.astype(dtype)[d]  # lookup: d is a small int
        else:
            s = similarity_from_distance(d, gamma, s_min, self.d_max).astype(dtype)
        np.fill_diagonal(s, 1.0)
        return s

    def min_eig_exceeds(self, gamma: float, s_min: float, mu: float) -> bool:
        return bool(np.linalg.eigvalsh(self.similarity(gamma, s_min))[0] > mu)


def as_source(source, distance: str = "published"):
    """A :class:`TreeSimilarity` for a hierarchy, a dense helper for a distance matrix."""
    from hafcls.frames.tree import TreeSimilarity  # tree.py uses the formula above

    if isinstance(source, (TreeSimilarity, _DenseSimilarity)):
        return source
    if isinstance(source, Hierarchy):
        return TreeSimilarity(source, distance)
    if distance not in DISTANCES:
        raise HafclsError(f"Unknown distance {distance!r}.", f"use one of {DISTANCES}.")
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return _DenseSimilarity(np.asarray(source))
    raise HafclsError(
        f"Expected a Hierarchy or a K x K distance matrix, got {type(source).__name__}.",
        "pass hafcls.hierarchy.load(...) or hierarchy.distance_matrix().",
    )


# ---------------------------------------------------------------------- s_min searches
def _grid_search(feasible: Callable[[float], bool], grid: np.ndarray) -> float:
    """The most negative feasible grid value, for a feasible set that is an interval ending at
    ``grid[0]`` (binary search, about 7 tests for 100 points)."""
    if not feasible(grid[0]):
        raise HafclsError(
            f"Even s_min = -1/(K-1) = {grid[0]:.6g} leaves S with a negative eigenvalue, so the "
            "paper's grid has no feasible value.",
            "pass s_min='exact' or a float closer to 0 (S is always PSD for s_min = 0 when "
            "exp(-gamma d / d_max) is).",
        )
    lo, hi = 0, len(grid) - 1
    if feasible(grid[hi]):
        return float(grid[hi])
    while hi - lo > 1:  # invariant: grid[lo] feasible, grid[hi] not
        mid = (lo + hi) // 2
        if feasible(grid[mid]):
            lo = mid
        else:
            hi = mid
    return float(grid[lo])


def _bisect_bound(feasible: Callable[[float], bool], start: float, rtol: float = 1e-13) -> float:
    """The most negative s with ``feasible(s)`` (an interval containing ``start``)."""
    if not feasible(start):
        raise HafclsError(
            f"S is not positive semi-definite even at s_min = {start:.6g}.",
            "check the distances: exp(-gamma d / d_max) must be positive semi-definite.",
        )
    hi, lo = start, -1.0 if start > -1.0 else start - 1.0
    while feasible(lo):  # grow the bracket; entries below -1 are never PSD, so this ends
        hi, lo = lo, lo - 2.0 * (hi - lo)
    while hi - lo > rtol * max(1.0, abs(lo)):
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi


def find_s_min(
    hierarchy_or_distance, gamma: float = 1.0, rule: str = "paper", *,
    distance: str = "published",
) -> float:
    """The most negative ``s_min`` keeping S positive semi-definite, by the ``rule`` given.

    ``rule="paper"`` reproduces the published 100-point grid search exactly (see the module
    docstring for the tolerance semantics); ``rule="exact"`` bisects to the boundary with the small
    margin :data:`EXACT_MARGIN`. For a hierarchy no eigenvalue is computed (O(#nodes) per test).
    """
    gamma = check_gamma(gamma)
    src = as_source(hierarchy_or_distance, distance)
    k = src.num_classes
    if rule == "paper":
        return _grid_search(
            lambda s: src.min_eig_exceeds(gamma, s, -PAPER_TOLERANCE), paper_grid(k)
        )
    if rule == "exact":
        return _bisect_bound(
            lambda s: src.min_eig_exceeds(gamma, s, EXACT_MARGIN), -1.0 / (k - 1)
        )
    raise HafclsError(f"Unknown s_min rule {rule!r}.", "use 'paper', 'exact' or a float.")


def psd_bound(hierarchy_or_distance, gamma: float, *, distance: str = "published") -> float:
    """The most negative ``s_min`` with S positive semi-definite (no margin, no tolerance)."""
    src = as_source(hierarchy_or_distance, distance)
    return _bisect_bound(lambda s: src.min_eig_exceeds(gamma, s, 0.0), -1.0 / (src.num_classes - 1))


def resolve_s_min(source, gamma: float, s_min, distance: str = "published") -> tuple[float, str]:
    """``(value, rule)`` for ``s_min`` given as ``"paper"``, ``"exact"`` or a float (validated)."""
    gamma = check_gamma(gamma)
    src = as_source(source, distance)
    if isinstance(s_min, str):
        if s_min not in RULES:
            try:
                s_min = float(s_min)
            except ValueError:
                raise HafclsError(
                    f"Unknown s_min {s_min!r}.", "use 'paper', 'exact' or a number."
                ) from None
        else:
            return find_s_min(src, gamma, s_min), s_min
    try:
        value = float(s_min)
    except (TypeError, ValueError):
        raise HafclsError(
            f"s_min must be 'paper', 'exact' or a number, got {s_min!r}.",
            "pass e.g. s_min='paper' or s_min=-0.3.",
        ) from None
    if not math.isfinite(value) or value >= 1:
        raise HafclsError(
            f"s_min must be a finite number below 1, got {s_min!r}.",
            "pass a value in [-1, 1), or 'paper' / 'exact'.",
        )
    if not src.min_eig_exceeds(gamma, value, -PAPER_TOLERANCE):
        bound = psd_bound(src, gamma)
        shown = math.ceil(bound * 1e6) / 1e6  # rounded towards the feasible side
        raise HafclsError(
            f"s_min={value:g} makes the target cosine matrix S indefinite for gamma={gamma:g} "
            f"(S is positive semi-definite only for s_min >= {bound:.9f}).",
            f"pass s_min >= {shown:.6f}, or s_min='paper' / 'exact' to pick it automatically.",
        )
    return value, "given"


def target_similarity(
    hierarchy_or_distance, gamma: float = 1.0, s_min="paper", *,
    distance: str = "published", dtype=np.float64,
) -> np.ndarray:
    """The K x K target cosines S for a hierarchy or a precomputed distance matrix.

    ``s_min`` is ``"paper"``, ``"exact"`` or a float (validated: S must be PSD). For a hierarchy,
    S is filled from LCA depths directly (no K x K distance matrix); ``distance`` picks the
    published ``H - depth(LCA)`` or the ``"lca_height"`` variant and is ignored for a matrix.
    """
    gamma = check_gamma(gamma)
    src = as_source(hierarchy_or_distance, distance)
    value, _ = resolve_s_min(src, gamma, s_min)
    return src.similarity(gamma, value, dtype=dtype)
