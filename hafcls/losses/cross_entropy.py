"""Plain cross-entropy with optional label smoothing, called as ``loss(logits, features, y)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError


class CrossEntropyLoss(nn.Module):
    """``CE(logits, y)`` with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise HafclsError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}.",
                "use e.g. 0.0 or 0.1.",
            )
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
