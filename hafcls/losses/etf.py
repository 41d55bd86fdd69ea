"""Dot-regression loss for a fixed simplex ETF classifier (Yang et al., NeurIPS 2022).

``L = ½·mean_b (h_bᵀw_y − ‖w_y‖·‖h_b‖)² / ‖h_b‖`` with both norms treated as constants (no
gradient through them): only the true class's vector enters, and the loss is zero exactly when
``h`` points along ``w_y``. With the ETF head the features are unit length, so this is
``½·mean_b (cos(h_b, w_y) − 1)²`` with the gradient flowing through the normalisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DotRegressionLoss(nn.Module):
    """Dot regression onto the fixed class vectors.

    ``frame_weight`` (d x K) gives the class vectors; without it ``hᵀw_y`` is read from the
    logits and ``‖w_y‖ = 1``, which is exact for the ETF head (unit columns, dot-product logits).
    """

    def __init__(self, frame_weight: Tensor | None = None, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)
        if frame_weight is not None:
            frame_weight = torch.as_tensor(frame_weight).detach().float().clone()
        self.register_buffer("frame", frame_weight, persistent=False)

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        h = features.float()
        h_norm = h.detach().norm(dim=1).clamp_min(self.eps)
        if self.frame is not None:
            w_y = self.frame[:, targets].t()
            dot = (h * w_y).sum(dim=1)
            w_norm = w_y.norm(dim=1)
        else:
            dot = logits.float().gather(1, targets[:, None]).squeeze(1)
            w_norm = torch.ones_like(dot)
        return 0.5 * ((dot - w_norm * h_norm).pow(2) / h_norm).mean()
