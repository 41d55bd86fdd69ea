"""Losses as plain modules, each called as ``loss(logits, features, targets)``.

They know nothing of method names: :mod:`hafcls.methods` pairs each loss with a head and its
published options.
"""

from hafcls.losses.cross_entropy import CrossEntropyLoss
from hafcls.losses.etf import DotRegressionLoss
from hafcls.losses.haframe import HAFrameLoss
from hafcls.losses.hierarchical import (
    HierarchicalCrossEntropy,
    SoftLabelLoss,
    class_distances,
)
from hafcls.losses.hug import HUGLoss, inter_class_energy, intra_class_distance

__all__ = [
    "CrossEntropyLoss",
    "DotRegressionLoss",
    "HAFrameLoss",
    "HUGLoss",
    "HierarchicalCrossEntropy",
    "SoftLabelLoss",
    "class_distances",
    "inter_class_energy",
    "intra_class_distance",
]
