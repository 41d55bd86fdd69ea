"""Equiangular Basis Vectors (EBV; docs/ebv.md): fixed, nearly orthogonal unit class vectors.

K unit vectors in d dimensions. For ``d >= K`` they are exactly orthonormal (a seeded Haar-random
orthonormal set: the limit of the optimisation at the official τ = 0.002, every |cos| = 0). For
``d < K`` they are found by minimising ``sum_{i != j} relu(|cos(w_i, w_j)| - tau)`` with Adam,
on CPU, from a seeded Gaussian start, with a τ above the Welch bound (:func:`default_tau`).
No hierarchy is involved; the frame has no target cosines (``similarity=None``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.frames.etf import _check_num_classes, random_orthonormal
from hafcls.frames.frame import Frame


def welch_bound(num_classes: int, dim: int) -> float:
    """The smallest possible ``max |cos|`` of K unit vectors in d dimensions (0 when K <= d)."""
    if num_classes <= dim:
        return 0.0
    return math.sqrt((num_classes - dim) / (dim * (num_classes - 1)))


#: the official EBV code's bound on |cos| (Shen et al. 2023; docs/ebv.md)
EBV_TAU = 0.002


def default_tau(num_classes: int, dim: int) -> float:
    """``tau`` used when none is given: the official 0.002 when ``d >= K`` (met exactly by an
    orthonormal set); for ``d < K`` 1.5 x the Welch bound, and at least 0.02.

    Below the Welch bound every pair stays in the penalty, which then is Σ|cos|: an L1 energy
    that is lowest when the vectors clump onto a few orthogonal axes (measured: K = 20, d = 8,
    τ = 0.002 ends with max |cos| = 0.99999, two classes on one line). Random unit vectors have
    ``max |cos|`` around ``sqrt(4 ln K / d)``; a few hundred Adam steps reach about 1.5 x the
    Welch bound for the sizes used in classification.
    """
    if num_classes <= dim:
        return EBV_TAU
    return max(1.5 * welch_bound(num_classes, dim), 0.02)


def max_abs_cosine(weight: torch.Tensor, block: int = 2048) -> float:
    """Largest ``|cos|`` between two different columns, in column blocks."""
    w = torch.nn.functional.normalize(weight.double(), dim=0)
    k = w.shape[1]
    worst = 0.0
    for start in range(0, k, block):
        c = (w[:, start : start + block].T @ w).abs()
        idx = torch.arange(c.shape[0])
        c[idx, idx + start] = 0.0
        worst = max(worst, float(c.max()))
    return worst


def equiangular_basis(
    num_classes: int,
    dim: int,
    seed: int = 0,
    tau: float | None = None,
    steps: int = 300,
    lr: float = 0.01,
    batch: int | None = 4096,
) -> Frame:
    """EBV class vectors: ``dim x num_classes`` unit columns, pairwise ``|cos|`` pushed below tau.

    Parameters
    ----------
    tau:
        Target bound on ``|cos|``; default :func:`default_tau` (0.002, the official code's,
        when ``d >= K``).
    steps, lr:
        Adam steps and learning rate (on unnormalised vectors; columns are normalised each step).
    batch:
        When K exceeds it, each step penalises a random block of ``batch`` vectors against all
        others (K x K per step would be too slow for 21k classes). ``None`` always uses all pairs.

    Deterministic given ``seed`` (a private ``torch.Generator``; the global RNG is untouched).
    ``max_error`` is ``None`` (no target); ``info["max_abs_cos"]`` is the realised coherence.
    """
    k = _check_num_classes(num_classes)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise HafclsError(f"dim must be a positive integer, got {dim!r}.", "pass e.g. dim=512.")
    tau = default_tau(k, dim) if tau is None else float(tau)
    if not 0 <= tau < 1:
        raise HafclsError(f"tau must be in [0, 1), got {tau!r}.", "pass e.g. tau=0.002.")
    if steps < 0:
        raise HafclsError(f"steps must be >= 0, got {steps}.", "pass e.g. steps=300.")
    if dim >= k:  # the exact optimum: K orthonormal columns, every |cos| = 0
        q = random_orthonormal(int(dim), k, np.random.default_rng(int(seed)))
        weight = torch.from_numpy(q).to(torch.float32).contiguous()
        return Frame(weight=weight, similarity=None, kind="ebv", method="orthonormal",
                     dim=int(dim), max_error=None, seed=seed,
                     info={"tau": tau, "steps": 0, "lr": lr,
                           "max_abs_cos": max_abs_cosine(weight)})
    gen = torch.Generator().manual_seed(int(seed))
    w = torch.randn(int(dim), k, generator=gen, dtype=torch.float32)
    use_batch = batch is not None and k > batch
    # plain Adam written out (beta 0.9 / 0.999): torch.optim's first step imports torch._dynamo,
    # which costs seconds on a cold start for a few hundred tiny steps
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    with torch.enable_grad():
        for step in range(1, steps + 1):
            w.requires_grad_(True)
            wn = torch.nn.functional.normalize(w, dim=0)
            if use_batch:
                rows = torch.randperm(k, generator=gen)[:batch]
                cos = (wn[:, rows].T @ wn).clone()
                cos[torch.arange(len(rows)), rows] = 0.0
            else:
                cos = (wn.T @ wn).clone()
                cos.fill_diagonal_(0.0)
            loss = torch.relu(cos.abs() - tau).sum()
            if loss.item() == 0.0:
                break
            (grad,) = torch.autograd.grad(loss, w)
            w = w.detach()
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            w -= lr * m_hat / (v_hat.sqrt() + eps)
    weight = torch.nn.functional.normalize(w.detach(), dim=0).contiguous()
    return Frame(
        weight=weight,
        similarity=None,
        kind="ebv",
        method="adam",
        dim=int(dim),
        max_error=None,
        seed=seed,
        info={"tau": tau, "steps": steps, "lr": lr, "max_abs_cos": max_abs_cosine(weight)},
    )
