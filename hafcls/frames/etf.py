"""The fixed simplex equiangular tight frame (Yang et al., NeurIPS 2022; docs/etf-dr.md).

``M = sqrt(K/(K-1)) U (I - 11^T/K)`` with ``U`` (d x K) having orthonormal columns: unit-norm
columns with every pairwise cosine ``-1/(K-1)``. Since ``U (I - 11^T/K) = (U C) C^T`` for any
orthonormal basis ``C`` (K x (K-1)) of the centred subspace, and ``U C`` is a uniformly random
d x (K-1) matrix with orthonormal columns, we draw that ``V = U C`` directly. This needs only
``d >= K-1``, so ``d = K-1`` (the smallest space holding a simplex) works too.
"""

from __future__ import annotations

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.frames.frame import Frame


def random_orthonormal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random ``rows x cols`` matrix with orthonormal columns (``rows >= cols``).

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q, which makes the result
    Haar-distributed rather than biased by the QR convention.
    """
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    signs = np.sign(np.diagonal(r))
    signs[signs == 0] = 1.0
    q *= signs
    return q


def centred_basis(num_classes: int) -> np.ndarray:
    """A ``K x (K-1)`` orthonormal basis of ``{x : 1^T x = 0}`` (a Householder reflection).

    The reflection ``H = I - 2 v v^T / v^T v`` with ``v = 1/sqrt(K) - e_K`` maps ``e_K`` to
    ``1/sqrt(K)``; its other K-1 columns are orthonormal and orthogonal to the all-ones vector.
    Built in O(K^2), no QR.
    """
    k = num_classes
    v = np.full(k, 1.0 / np.sqrt(k))
    v[-1] -= 1.0
    basis = -2.0 / (v @ v) * np.outer(v, v[:-1])
    basis[np.arange(k - 1), np.arange(k - 1)] += 1.0
    return basis


def _check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise HafclsError(
            f"num_classes must be an integer, got {num_classes!r}.", "pass e.g. 100."
        )
    if num_classes < 2:
        raise HafclsError(
            f"A frame needs at least 2 classes, got num_classes={num_classes}.",
            "pass num_classes >= 2.",
        )
    return int(num_classes)


def gram_error(weight: np.ndarray, target: np.ndarray, block: int = 1024) -> float:
    """``max |W^T W - S|`` computed in column blocks (float64), without a second K x K array."""
    worst = 0.0
    for start in range(0, weight.shape[1], block):
        cols = slice(start, start + block)
        worst = max(worst, float(np.max(np.abs(weight.T @ weight[:, cols] - target[:, cols]))))
    return worst


def simplex_etf(num_classes: int, dim: int | None = None, seed: int = 0) -> Frame:
    """A fixed simplex ETF with ``num_classes`` unit columns in ``dim`` dimensions.

    ``dim`` defaults to K; any ``dim >= K-1`` works. Pairwise cosines are exactly ``-1/(K-1)``
    (up to float64 rounding before the float32 cast); ``similarity`` holds that target.
    """
    k = _check_num_classes(num_classes)
    d = k if dim is None else dim
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < k - 1:
        raise HafclsError(
            f"A simplex ETF of {k} classes needs dim >= K-1 = {k - 1}, got dim={dim!r}.",
            "pass a larger dim, or use equiangular_basis() for fewer dimensions than classes.",
        )
    rng = np.random.default_rng(seed)
    v = random_orthonormal(int(d), k - 1, rng)
    weight = np.sqrt(k / (k - 1)) * (v @ centred_basis(k).T)
    target = np.full((k, k), -1.0 / (k - 1))
    np.fill_diagonal(target, 1.0)
    return Frame(
        weight=torch.from_numpy(weight.astype(np.float32)),
        similarity=torch.from_numpy(target.astype(np.float32)),
        kind="etf",
        method="closed_form",
        dim=int(d),
        max_error=gram_error(weight, target),
        seed=seed,
    )
