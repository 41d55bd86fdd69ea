"""The optimizer of a run and its per-epoch learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from hafcls.engine.config import TrainConfig
from hafcls.errors import HafclsError


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """Multiplier of the peak LR during ``epoch`` (0-based): linear warmup, then cosine from 1 to
    ``min_lr`` over the remaining epochs (one value per epoch, as in the paper)."""
    warm = config.warmup_epochs
    if epoch < warm:
        return (epoch + 1) / (warm + 1)
    if config.schedule == "constant":
        return 1.0
    span = max(config.epochs - warm, 1)
    progress = (epoch - warm) / span
    return config.min_lr + (1 - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, criterion: nn.Module, config: TrainConfig):
    """SGD (momentum, optional Nesterov) or AdamW with two groups: backbone and the rest (head,
    transformation module, learnable loss parameters). ``initial_lr`` is each group's peak."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups = {"backbone": [], "head": []}
    for module in (model, criterion):
        for p in module.parameters():
            if p.requires_grad:
                groups["backbone" if id(p) in backbone_ids else "head"].append(p)
    param_groups = []
    for name, lr in (("backbone", config.backbone_lr), ("head", config.lr)):
        if groups[name]:
            param_groups.append({"params": groups[name], "lr": lr, "initial_lr": lr,
                                 "name": name})
    if not param_groups:
        raise HafclsError("The model has no trainable parameters.",
                          "check --model and --method.")
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
