"""The path-distribution loss of Hier-COS (docs/hiercos.md) on node coordinates z.

``L = KL(q_y ‖ softmax(|z|)) + α · Σ_t ‖onehot(y_t) − |z_t| / ‖z_t‖₁‖₁``, averaged over the batch.

- ``softmax(|z|)`` runs over all d node coordinates; the target ``q_y`` puts mass only on the
  coordinates of the true class's path (root excluded), growing towards the leaf. For a path of
  length L (depths 1..L) the coordinate at depth t gets ``r = L − t + 1`` (L at the top, 1 at the
  leaf) and ``w_t = exp(1/r) / Σ_{t'} exp(1/r_{t'})``; the target is ``q_t = w_t²``.

  Our reading of "normalise exp(1/r) over the path and square it" (docs/hiercos.md, taken from the
  authors' description; we could not open the paper's loss section from here): the squaring comes
  *after* the normalisation, so ``Σ q_t = Σ w_t² < 1`` and the KL is taken against this
  unnormalised target, ``Σ_t q_t (log q_t − log p_t)`` (what ``F.kl_div`` computes). Squaring
  before normalising would give ``softmax(2/r)``. The two readings have the same minimiser
  (``p`` on the path ∝ ``w²`` = ``softmax(2/r)``) and gradients that differ by the factor
  ``Σ w_t²`` per sample; ``renormalise=True`` selects the proper distribution.
- The level-wise term: at each depth t of the path, ``|z_t|`` are the absolute coordinates of the
  depth-t nodes, normalised to sum 1, compared in L1 with the one-hot of the true depth-t node.
  Since the normalised vector is non-negative and sums to 1, that distance is exactly
  ``2·(1 − |z_{y_t}| / Σ_{n at depth t} |z_n|)``, which is how it is computed (no loop over
  levels). Depths below the end of a short path (unbalanced trees) are skipped; the terms of a
  path are summed, then averaged over the batch.
- α per dataset (the paper's): ``hafcls.methods.hiercos.ALPHA_PRESETS``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hafcls.errors import HafclsError

ALPHA_DEFAULT = 0.05  # the CIFAR-100 setting; per-dataset α in hafcls.methods.hiercos


def path_weights(paths: Tensor, renormalise: bool = False) -> Tensor:
    """K x height targets ``q`` on each class's path (0 past its end).

    ``paths`` is the K x height coordinate table of :class:`~hafcls.frames.hiercos.NodeSubspaces`
    (-1 past a path's end). ``q_t = (exp(1/r_t) / Σ exp(1/r))²`` with ``r = L − t + 1``;
    ``renormalise=True`` divides by ``Σ q`` (then ``q = softmax(2/r)``).
    """
    mask = torch.as_tensor(paths) >= 0
    lengths = mask.sum(dim=1, keepdim=True)
    if bool((lengths == 0).any()):
        raise HafclsError("A class has an empty path.", "rebuild the node subspaces.")
    t = torch.arange(1, mask.shape[1] + 1).unsqueeze(0)
    r = (lengths - t + 1).clamp_min(1).double()
    e = torch.where(mask, torch.exp(1.0 / r), torch.zeros((), dtype=torch.float64))
    w = e / e.sum(dim=1, keepdim=True)
    q = w.pow(2)
    if renormalise:
        q = q / q.sum(dim=1, keepdim=True)
    return q


class SubspacePathLoss(nn.Module):
    """KL to the path distribution plus α × the level-wise L1 term, called as
    ``loss(scores, z, targets)`` with ``z`` the head's node coordinates.

    Parameters
    ----------
    paths:
        K x height path coordinates (``NodeSubspaces.paths`` or the head's ``paths`` buffer).
    coord_depth:
        (d,) depth 1..height of every coordinate (``NodeSubspaces.depths``).
    alpha:
        Weight of the level-wise term (>= 0); the paper's per dataset are in
        ``hafcls.methods.hiercos.ALPHA_PRESETS``.
    renormalise:
        Use the normalised target ``softmax(2/r)`` instead of the squared weights (see above).
    """

    def __init__(self, paths, coord_depth, alpha: float = ALPHA_DEFAULT,
                 renormalise: bool = False, eps: float = 1e-12):
        super().__init__()
        if not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise HafclsError(f"alpha must be a number >= 0, got {alpha!r}.",
                              "use e.g. alpha=0.05 (CIFAR-100).")
        paths = torch.as_tensor(paths).long()
        depth = torch.as_tensor(coord_depth).long()
        if paths.ndim != 2 or depth.ndim != 1 or int(paths.max()) >= depth.numel():
            raise HafclsError(
                "paths must be K x height coordinate indices below the number of coordinates.",
                "build the loss from the head: SubspacePathLoss.from_head(head, alpha).",
            )
        self.alpha = float(alpha)
        self.renormalise = bool(renormalise)
        self.eps = float(eps)
        q = path_weights(paths, self.renormalise)
        log_q = torch.where(q > 0, q.clamp_min(1e-300).log(), torch.zeros((), dtype=q.dtype))
        self.register_buffer("paths", paths, persistent=False)
        self.register_buffer("coord_depth", depth, persistent=False)
        self.register_buffer("target", q.float(), persistent=False)
        # Σ q log q per class: the constant part of the KL, kept in float64 then cast
        self.register_buffer("neg_entropy", (q * log_q).sum(dim=1).float(), persistent=False)

    @classmethod
    def from_head(cls, head: nn.Module, alpha: float = ALPHA_DEFAULT,
                  renormalise: bool = False) -> SubspacePathLoss:
        """The loss for a subspace head (``hafcls.models.hiercos_head``) or a model holding one."""
        head = getattr(head, "head", head)
        if not hasattr(head, "paths") or not hasattr(head, "coord_depth"):
            raise HafclsError(
                f"The subspace loss needs a subspace head, got {type(head).__name__}.",
                "create the model with the subspace head.",
            )
        return cls(head.paths.cpu(), head.coord_depth.cpu(), alpha, renormalise)

    @classmethod
    def from_subspaces(cls, subspaces, alpha: float = ALPHA_DEFAULT,
                       renormalise: bool = False) -> SubspacePathLoss:
        return cls(torch.from_numpy(subspaces.paths), torch.from_numpy(subspaces.depths),
                   alpha, renormalise)

    @property
    def num_classes(self) -> int:
        return int(self.paths.shape[0])

    def target_distribution(self, targets: Tensor) -> Tensor:
        """B x d dense targets (for inspection and tests; the loss itself stays B x height)."""
        b = targets.numel()
        out = torch.zeros(b, self.coord_depth.numel(), device=targets.device)
        idx, q = self.paths[targets], self.target[targets]
        return out.scatter_add(1, idx.clamp_min(0), q * (idx >= 0))

    def kl_term(self, z: Tensor, targets: Tensor) -> Tensor:
        """Per-sample ``Σ_path q (log q − log softmax(|z|))`` (B,)."""
        idx = self.paths[targets]
        log_p = torch.log_softmax(z.float().abs(), dim=1).gather(1, idx.clamp_min(0))
        q = self.target[targets]  # zero past the path's end, so those entries drop out
        return self.neg_entropy[targets] - (q * log_p).sum(dim=1)

    def level_term(self, z: Tensor, targets: Tensor) -> Tensor:
        """Per-sample ``Σ_t ‖onehot − |z_t|/‖z_t‖₁‖₁ = Σ_t 2(1 − |z_{y_t}| / ‖z_t‖₁)`` (B,)."""
        a = z.float().abs()
        idx = self.paths[targets]
        level_sums = a.new_zeros(a.shape[0], idx.shape[1]).index_add(1, self.coord_depth - 1, a)
        on_path = a.gather(1, idx.clamp_min(0))
        per_level = 2.0 * (1.0 - on_path / level_sums.clamp_min(self.eps))
        return (per_level * (idx >= 0)).sum(dim=1)

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        if logits.shape[1] != self.num_classes or features.shape[1] != self.coord_depth.numel():
            raise HafclsError(
                f"The model gives {logits.shape[1]} scores and {features.shape[1]} coordinates, "
                f"the loss expects {self.num_classes} and {self.coord_depth.numel()}.",
                "build the loss from the model's own head (SubspacePathLoss.from_head).",
            )
        loss = self.kl_term(features, targets).mean()
        if self.alpha:
            loss = loss + self.alpha * self.level_term(features, targets).mean()
        return loss

