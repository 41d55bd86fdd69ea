"""Losses, each called as ``loss(logits, features, targets)``, and the registry of methods.

>>> method = get_method("haframe", dataset="cifar100")          # doctest: +SKIP
>>> model = method.create_model("resnet18", hierarchy)          # doctest: +SKIP
>>> loss_fn = method.build_loss(model, hierarchy)               # doctest: +SKIP
>>> logits, features = model(images, return_features=True)      # doctest: +SKIP
>>> loss = loss_fn(logits, features, targets)                   # doctest: +SKIP
"""

from hafcls.losses.etf import DotRegressionLoss
from hafcls.losses.haframe import HAFrameLoss
from hafcls.losses.hierarchical import (
    CrossEntropyLoss,
    HierarchicalCrossEntropy,
    SoftLabelLoss,
    class_distances,
)
from hafcls.losses.hug import HUGLoss, inter_class_energy, intra_class_distance
from hafcls.losses.registry import Method, available_methods, get_method

__all__ = [
    "CrossEntropyLoss",
    "DotRegressionLoss",
    "HAFrameLoss",
    "HUGLoss",
    "HierarchicalCrossEntropy",
    "Method",
    "SoftLabelLoss",
    "available_methods",
    "class_distances",
    "get_method",
    "inter_class_energy",
    "intra_class_distance",
]
