"""Per-class counts gathered during evaluation: top-1 calibration (ECE) and shot-group accuracy.

Both are computed from small counters that are summed over DDP ranks before the final numbers,
so every sample counts once whatever the sharding:

- ``ece``: 15 equal-width bins of the top-1 confidence, the definition of
  :func:`hafcls.metrics.calibration.ece` (a confidence of 0 joins the first bin), from the per-bin
  sums of confidence and correctness: ``Σ_b |Σ_{i∈b} conf_i − Σ_{i∈b} correct_i| / N``.
- ``many_shot`` / ``medium_shot`` / ``few_shot`` (only with ``train_counts``): mean per-class
  top-1 accuracy over the classes with > 100, 20–100 and < 20 training images
  (:func:`hafcls.metrics.minority.shot_accuracy_from_counts`; an empty group gives NaN).
"""

from __future__ import annotations

import torch

from hafcls.engine import distributed as D
from hafcls.metrics.calibration import ECE_BINS


class ClassCounts:
    """Per-class hits and samples plus confidence bins of one evaluation pass."""

    def __init__(self, num_classes: int, device: torch.device, n_bins: int = ECE_BINS):
        self.num_classes = int(num_classes)
        self.n_bins = int(n_bins)
        # rows: hits per class, samples per class; then confidence / correct sums per bin
        self.per_class = torch.zeros(2, self.num_classes, dtype=torch.float64, device=device)
        self.bins = torch.zeros(2, self.n_bins, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        conf, top = probs.float().max(dim=1)  # first max: the lower class index, as ece()
        hit = (top == targets).double()
        k = self.num_classes
        self.per_class[0] += torch.bincount(targets, weights=hit, minlength=k)[:k]
        self.per_class[1] += torch.bincount(targets, minlength=k)[:k].double()
        b = (torch.ceil(conf.double() * self.n_bins).long() - 1).clamp_(0, self.n_bins - 1)
        self.bins[0] += torch.bincount(b, weights=conf.double(), minlength=self.n_bins)
        self.bins[1] += torch.bincount(b, weights=hit, minlength=self.n_bins)

    def compute(self, train_counts=None) -> dict[str, float]:
        """``ece`` and, given the training images per class, the three shot-group accuracies."""
        D.all_reduce_sum(self.per_class)
        D.all_reduce_sum(self.bins)
        n = float(self.per_class[1].sum())
        out = {"ece": float((self.bins[0] - self.bins[1]).abs().sum() / n) if n else float("nan")}
        if train_counts is not None:
            from hafcls.metrics.minority import shot_accuracy_from_counts

            hits, seen = self.per_class.cpu().numpy()
            out.update(shot_accuracy_from_counts(hits, seen, train_counts))
        return out
