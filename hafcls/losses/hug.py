"""HUG, hyperspherical uniformity gap (Liu, Yu, Weller & Schölkopf, ICLR 2023), proxy form.

``L = β·L_intra + α·L_inter`` on unit features x̂ and unit proxies ŵ (no temperature):

- ``L_intra``: mean over the classes present in the batch of the mean distance
  ``‖x̂_i − sg(ŵ_c)‖₂`` of their samples to the (detached) class proxy;
- ``L_inter``, a hyperspherical energy of the proxies, with ``‖ŵ_i − ŵ_j‖² = 2 − 2cos`` (no
  cdist, whose gradient is unstable at zero):
  ``"mhe"``: ``mean_{i<j} 1/(2 − 2cos_ij + ε)`` (at a simplex ETF: ``(C−1)/(2C)``);
  ``"mhs"``: ``−min_{i<j} (2 − 2cos_ij)``;
  ``"mgd"``: ``−log det G``, ``G_ij = exp(−(2 − 2cos_ij)) + 1e-6·I``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError

VARIANTS = ("mhe", "mhs", "mgd")
_MGD_JITTER = 1e-6


def intra_class_distance(features: Tensor, targets: Tensor, proxies: Tensor) -> Tensor:
    """Mean over present classes of the mean ``‖x̂_i − sg(ŵ_c)‖₂`` (proxies d x K)."""
    x = F.normalize(features.float(), dim=1)
    w = F.normalize(proxies.detach().float(), dim=0)
    dist = (x - w[:, targets].t()).norm(dim=1)
    k = w.shape[1]
    sums = torch.zeros(k, device=x.device).index_add_(0, targets, dist)
    counts = torch.bincount(targets, minlength=k)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def inter_class_energy(proxies: Tensor, variant: str = "mhe", eps: float = 1e-6) -> Tensor:
    """The proxies' (d x K) hyperspherical energy; lower means more uniform."""
    if variant not in VARIANTS:
        raise HafclsError(f"Unknown HUG variant {variant!r}.", f"use one of {VARIANTS}.")
    w = F.normalize(proxies.float(), dim=0)
    sq_dist = 2.0 - 2.0 * (w.t() @ w)  # K x K squared chord lengths
    if variant == "mgd":
        eye = torch.eye(w.shape[1], dtype=torch.float64, device=w.device)
        # the diagonal is exactly exp(0) = 1: rounding in ‖ŵ‖² would shift log det by ~1e-7·K
        gram = torch.exp(-sq_dist.double() * (1.0 - eye)) + _MGD_JITTER * eye
        return -torch.logdet(gram).float()
    i, j = torch.triu_indices(w.shape[1], w.shape[1], offset=1, device=w.device)
    pairs = sq_dist[i, j]
    if variant == "mhe":
        return (1.0 / (pairs + eps)).mean()
    return -pairs.min()


class HUGLoss(nn.Module):
    """``β·L_intra + α·L_inter`` for the HUG head.

    ``proxies`` is the head (anything with ``class_vectors()``), a callable returning the d x K
    proxies, or a fixed d x K tensor. The head is not registered as a submodule, so the loss
    holds no parameters of its own.
    """

    def __init__(self, proxies, variant: str = "mhe", alpha: float = 1.0, beta: float = 1.0,
                 eps: float = 1e-6):
        super().__init__()
        if variant not in VARIANTS:
            raise HafclsError(f"Unknown HUG variant {variant!r}.", f"use one of {VARIANTS}.")
        if alpha < 0 or beta < 0:
            raise HafclsError("alpha and beta must be >= 0.", "use alpha=beta=1 (the paper's).")
        self.variant, self.alpha, self.beta, self.eps = variant, float(alpha), float(beta), eps
        self._proxies = _proxy_getter(proxies)

    def components(self, features: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The two terms, for logging: ``{"intra": ..., "inter": ...}``."""
        w = self._proxies()
        return {
            "intra": intra_class_distance(features, targets, w),
            "inter": inter_class_energy(w, self.variant, self.eps),
        }

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        parts = self.components(features, targets)
        return self.beta * parts["intra"] + self.alpha * parts["inter"]


def _proxy_getter(proxies) -> Callable[[], Tensor]:
    if hasattr(proxies, "class_vectors"):
        return proxies.class_vectors
    if callable(proxies) and not isinstance(proxies, Tensor):
        return proxies
    if isinstance(proxies, Tensor) and proxies.ndim == 2:
        return lambda: proxies
    raise HafclsError(
        f"proxies must be a head with class_vectors(), a callable or a d x K tensor, got "
        f"{type(proxies).__name__}.",
        "pass model.head.",
    )
