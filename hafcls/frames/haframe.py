"""Hierarchy-Aware Frames (Liang & Davis, ICCV 2023; docs/haframe.md).

:func:`haframe` builds the fixed classifier whose class vectors have the target cosines S:

* ``method="eigh"`` (the paper): ``S = Q D Q^T``, ``W = U D^{1/2} Q^T`` with U a random orthonormal
  matrix (seeded); ``d = K`` (or ``dim >= K``, U then has ``dim`` rows). Tiny negative
  eigenvalues (within the accepted tolerance) are clipped to 0 and columns renormalised. O(K^3).
* ``method="tree"``: the exact sparse tree construction of :mod:`hafcls.frames.tree`, no
  eigendecomposition, O(K depth) for the factor; ``d`` is the number of tree coordinates
  (internal nodes below the top + K + 1 when ``g(top) > 0``), usually more than K. The weight is
  kept in tree coordinates, not rotated: a random d x d rotation would cost O(d^2 K) and lose the
  sparsity, and the frame's geometry (all that HAFrame uses) is the same. ``frame.factor`` holds
  the sparse form for sparse logits; ``seed`` is unused by the exact tree frame.
* ``dim=r < K`` gives a low-dimensional approximation from the top-r eigenpairs of S, rotated by a
  random r x r orthonormal matrix, columns renormalised; ``max_error`` is then the realised
  ``max |cos - S|`` (``info["mean_error"]`` its mean over all pairs) and ``info["lambda_next"]``
  the first dropped eigenvalue. With
  ``method="tree"`` the eigenpairs come from Lanczos (``scipy.sparse.linalg.eigsh``) on the sparse
  product ``S x = W^T (W x)`` (dense ``eigh`` on S when ``r + 1 >= K // 2``, where Lanczos has no
  advantage); with ``method="eigh"`` from dense ``scipy.linalg.eigh`` on the top-r subset.

Memory for large K: S is filled from the tree (one row per attach node, copied to its classes; no
distance matrix) and stored as float32. ``max_error`` is computed blockwise in
float64, except for the exact tree frame, where it is evaluated through the tree in O(#nodes)
(:meth:`TreeSimilarity.factor_error`; equal to the realised maximum up to float64 rounding)
instead of a d x K x K product. The dense weight is written once in its final dtype from the sparse
factor. The K x K float32 S is kept in ``Frame.similarity`` only when it is small: by default
(``with_similarity="auto"``) up to :data:`SIMILARITY_MAX_BYTES` (256 MiB, K <= 8,192), so at
21,841 classes the default frame holds W alone (d x K float32, 2.3 GiB) instead of W and S
(4.1 GiB; ``scripts/bench_frames.py`` measures both). Nothing in training needs S: the HAFrame loss
takes the same targets from the uint8 class distances (:meth:`HAFrameLoss.from_frame`).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import eigsh

from hafcls.errors import HafclsError
from hafcls.frames.etf import gram_error, random_orthonormal
from hafcls.frames.frame import Frame
from hafcls.frames.similarity import as_source, check_gamma, resolve_s_min
from hafcls.frames.tree import TreeFactor, TreeSimilarity
from hafcls.hierarchy import Hierarchy

METHODS = ("eigh", "tree")
# the largest K x K float32 target kept by default: 256 MiB, i.e. up to K = 8,192 classes
SIMILARITY_MAX_BYTES = 256 * 2**20


def keeps_similarity(with_similarity, num_classes: int) -> bool:
    """Whether a frame of ``num_classes`` classes keeps its K x K S under ``with_similarity``
    (``True``, ``False`` or ``"auto"``: keep it when its float32 copy fits
    :data:`SIMILARITY_MAX_BYTES`)."""
    if isinstance(with_similarity, (bool, np.bool_)):
        return bool(with_similarity)
    if with_similarity == "auto":
        return 4 * int(num_classes) ** 2 <= SIMILARITY_MAX_BYTES
    raise HafclsError(
        f"with_similarity must be True, False or 'auto', got {with_similarity!r}.",
        "leave it out ('auto': S kept up to 8,192 classes), or pass True / False.",
    )


def _check_dim(dim) -> int | None:
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise HafclsError(f"dim must be a positive integer or None, got {dim!r}.",
                          "pass e.g. dim=512, or leave it out for an exact frame.")
    return int(dim)


def haframe(
    hierarchy,
    gamma: float = 1.0,
    s_min="paper",
    method: str = "eigh",
    dim: int | None = None,
    seed: int = 0,
    *,
    distance: str = "published",
    dtype: torch.dtype = torch.float32,
    with_similarity: bool | str = "auto",
) -> Frame:
    """Build a Hierarchy-Aware Frame for ``hierarchy``.

    Parameters
    ----------
    hierarchy:
        A :class:`~hafcls.hierarchy.Hierarchy`, or (``method="eigh"`` only) a K x K distance
        matrix.
    gamma:
        Decay of the target cosine with distance (> 0).
    s_min:
        ``"paper"`` (the published grid rule, reproduced exactly), ``"exact"`` (the PSD boundary)
        or a float (checked; an infeasible value raises :class:`HafclsError` naming the bound).
    method:
        ``"eigh"`` or ``"tree"`` (exact, sparse, no eigendecomposition); see the module docstring.
    dim:
        ``None`` for the exact frame; ``r < K`` for a low-dimensional approximation.
    seed:
        Seed of the random rotation.
    distance:
        ``"published"`` (``H - depth(LCA)``) or ``"lca_height"``.
    dtype:
        dtype of ``weight``: ``torch.float32`` (default, what models use) or ``torch.float64``
        (the float64 construction itself, for checks).
    with_similarity:
        Keep the K x K float32 target in ``Frame.similarity``: ``"auto"`` (default) keeps it when
        it takes at most 256 MiB (K <= 8,192), ``True`` always, ``False`` never. A frame without S
        has the same weight and ``max_error``; the tree method then never materialises S (at
        21,841 classes 2.3 GiB instead of 4.1 GiB), and the loss takes the same targets from the
        class distances (``HAFrameLoss.from_frame(frame, hierarchy)``).

    Returns
    -------
    Frame
        ``weight`` d x K float32 with unit columns, ``similarity`` the K x K target (float32)
        or ``None`` (see ``with_similarity``), ``max_error = max |W^T W - S|`` of the float64
        construction.
    """
    start = time.perf_counter()
    gamma = check_gamma(gamma)
    if method not in METHODS:
        raise HafclsError(f"Unknown frame method {method!r}.", f"use one of {METHODS}.")
    dim = _check_dim(dim)
    if dtype not in (torch.float32, torch.float64):
        raise HafclsError(f"dtype must be torch.float32 or torch.float64, got {dtype}.",
                          "leave dtype out for float32.")
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    keeps_similarity(with_similarity, 0)  # a bad value fails before any work
    is_tree = isinstance(hierarchy, Hierarchy)
    if method == "tree" and not is_tree:
        raise HafclsError(
            "method='tree' needs a Hierarchy, not a distance matrix.",
            "pass the Hierarchy, or use method='eigh' with a distance matrix.",
        )
    src = as_source(hierarchy, distance)
    keep = keeps_similarity(with_similarity, src.num_classes)
    s, rule = resolve_s_min(src, gamma, s_min)
    rng = np.random.default_rng(seed)
    if method == "eigh":
        weight, target, err, info = _build_eigh(src, gamma, s, dim, rng, np_dtype)
        factor = None
    else:
        weight, target, err, info, factor = _build_tree(src, gamma, s, dim, rng, np_dtype, keep)
    if not keep:
        target = None
    info = {"s_min_rule": rule, "distance": distance if is_tree else "matrix", **info}
    info["build_seconds"] = time.perf_counter() - start
    return Frame(
        weight=torch.from_numpy(weight),
        similarity=None if target is None else torch.from_numpy(target),
        kind="haframe",
        gamma=gamma,
        s_min=s,
        method=method,
        dim=int(weight.shape[0]),
        max_error=err,
        seed=seed,
        fingerprint=hierarchy.fingerprint() if is_tree else None,
        info=info,
        factor=factor,
    )


# ---------------------------------------------------------------------- dense (paper) method
def _build_eigh(src, gamma, s, dim, rng, dtype):
    target = src.similarity(gamma, s, dtype=np.float64)
    k = target.shape[0]
    if dim is None or dim >= k:
        lam, q = np.linalg.eigh(target)
        info = {"lambda_min": float(lam[0]), "clipped_eigenvalues": int((lam < 0).sum())}
        u = random_orthonormal(k if dim is None else dim, k, rng)
    else:
        lam, q = scipy.linalg.eigh(target, subset_by_index=[k - dim - 1, k - 1])
        info = {"lambda_next": float(lam[0]), "solver": "dense"}
        lam, q = lam[1:], q[:, 1:]
        u = random_orthonormal(dim, dim, rng)
    weight = u @ (np.sqrt(np.clip(lam, 0.0, None))[:, None] * q.T)
    del q, u
    weight /= np.linalg.norm(weight, axis=0, keepdims=True)
    err = gram_error(weight, target)
    if dim is not None and dim < k:
        info["mean_error"] = float(np.abs(weight.T @ weight - target).mean())
    return weight.astype(dtype, copy=False), target.astype(np.float32), err, info


# ---------------------------------------------------------------------- tree method
def _build_tree(tree: TreeSimilarity, gamma, s, dim, rng, dtype, with_similarity=True):
    k = tree.num_classes
    fac, info = tree.factor(gamma, s)
    d_tree = fac.shape[0]
    if dim is None or dim == d_tree:
        weight = fac.to_dense(dtype)
        target = tree.similarity(gamma, s, dtype=np.float32) if with_similarity else None
        err = tree.factor_error(fac, gamma, s)
        return weight, target, err, info, fac
    if dim >= k:
        raise HafclsError(
            f"method='tree' gives an exact frame in d = {d_tree} dimensions for this hierarchy, "
            f"not dim={dim}.",
            f"leave dim out (d = {d_tree}), pass dim < {k} for a low-dimensional frame, or use "
            "method='eigh' for an exact frame in dim >= K dimensions.",
        )
    weight, low_info = _low_dim(tree, fac, gamma, s, dim, rng)
    target, err, mean_err = _target_and_gram_error(tree, gamma, s, weight, with_similarity)
    info = {"num_coordinates": d_tree, **low_info, "mean_error": mean_err}
    return weight.astype(dtype, copy=False), target, err, info, None


def _target_and_gram_error(tree: TreeSimilarity, gamma, s, weight: np.ndarray, keep=True):
    """The float32 target S (``None`` unless ``keep``), ``max |W^T W - S|`` and its mean, for
    a dense float64 weight; S is produced block-wise either way."""
    k = tree.num_classes
    target = np.empty((k, k), dtype=np.float32) if keep else None
    worst, total = 0.0, 0.0
    for rows, srow in tree.similarity_rows(gamma, s):
        err = np.abs(weight[:, rows].T @ weight - srow)
        worst, total = max(worst, float(err.max())), total + float(err.sum())
        if keep:
            target[rows] = srow
    return target, worst, total / k**2


def _low_dim(tree: TreeSimilarity, fac: TreeFactor, gamma, s, r: int, rng):
    """Top-r eigenpairs of S (Lanczos on the sparse product), rotated, columns renormalised."""
    k = tree.num_classes
    if r + 1 < k // 2:
        lam, q = eigsh(fac.gram_operator(), k=r + 1, which="LA", v0=rng.standard_normal(k))
        order = np.argsort(lam)
        lam, q = lam[order], q[:, order]
        solver = "lanczos"
    else:
        target = tree.similarity(gamma, s)
        lam, q = scipy.linalg.eigh(target, subset_by_index=[k - r - 1, k - 1])
        solver = "dense"
    info = {"lambda_next": float(lam[0]), "solver": solver}
    lam, q = lam[1:], q[:, 1:]
    u = random_orthonormal(r, r, rng)
    weight = u @ (np.sqrt(np.clip(lam, 0.0, None))[:, None] * q.T)
    weight /= np.linalg.norm(weight, axis=0, keepdims=True)
    return weight, info
