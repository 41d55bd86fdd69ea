"""The optimizer of a run and its per-epoch learning-rate schedule.

Learning-rate groups follow a model rule: every trainable parameter has a *role*,

- ``backbone``: the timm backbone;
- ``projection``: the head's projection to the classifier's dimension (the type-II head's 1x1
  convolution), which the HAFrame authors' code optimises with the backbone;
- ``neck``: the rest of the head before the classifier (BN, transformation module, the type-I
  head's BN-Linear-BN);
- ``classifier``: a learnable classifier (linear layer, proxies); fixed frames are buffers and
  have no parameters;
- ``loss``: learnable parameters of the loss.

Without ``lr_groups`` in the config there are two groups, ``backbone`` (``backbone_lr``) and
``head`` (``lr``, everything else). With ``lr_groups`` (what the recipes declare, e.g.
``{backbone: 0.01, projection: 0.01, neck: 0.1}``) each role present gets its own group named by
the role; a role not named takes ``backbone_lr`` (backbone, projection) or ``lr`` (the rest).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hafcls.engine.config import LR_ROLES, TrainConfig
from hafcls.errors import HafclsError

__all__ = ["LR_ROLES", "build_optimizer", "lr_factor", "parameter_roles", "role_lrs", "set_lr"]


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


def head_role(head: nn.Module, name: str) -> str:
    """The role of the head parameter ``name`` (its name inside the head).

    A head may answer itself through ``param_role(name)``; otherwise the names decide:
    ``projection.*`` is the projection, ``classifier.*`` / ``proxies`` the classifier.
    """
    own = getattr(head, "param_role", None)
    role = own(name) if callable(own) else None
    if role is not None:
        return role
    if name.startswith("projection."):
        return "projection"
    if name.startswith("classifier.") or name == "proxies":
        return "classifier"
    return "neck"


def parameter_roles(model: nn.Module, criterion: nn.Module | None = None
                    ) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``{role: [(qualified name, parameter)]}`` of the trainable parameters of the model (a
    :class:`~hafcls.models.HierarchyClassifier` or any module with ``backbone`` / ``head``) and
    of the loss, each parameter once, roles in :data:`LR_ROLES` order."""
    out: dict[str, list] = {role: [] for role in LR_ROLES}
    seen: set[int] = set()

    def add(role: str, name: str, p: nn.Parameter) -> None:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out[role].append((name, p))

    backbone = getattr(model, "backbone", None)
    head = getattr(model, "head", None)
    if backbone is not None:
        for name, p in backbone.named_parameters():
            add("backbone", f"backbone.{name}", p)
    if head is not None:
        for name, p in head.named_parameters():
            add(head_role(head, name), f"head.{name}", p)
    for name, p in model.named_parameters():  # anything else on the model: with the head
        add("neck", name, p)
    if criterion is not None:
        for name, p in criterion.named_parameters():
            add("loss", f"loss.{name}", p)
    return {role: params for role, params in out.items() if params}


def role_lrs(config: TrainConfig) -> dict[str, float]:
    """Peak LR of each role under ``config.lr_groups`` (see the module docstring)."""
    base = {"backbone": config.backbone_lr, "projection": config.backbone_lr}
    return {role: float(config.lr_groups.get(role, base.get(role, config.lr)))
            for role in LR_ROLES}


def param_groups(model: nn.Module, criterion: nn.Module | None,
                 config: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups (``params``, ``lr``, ``initial_lr``, ``name``)."""
    roles = parameter_roles(model, criterion)
    if config.lr_groups:
        lrs = role_lrs(config)
        named = [(role, [p for _, p in params], lrs[role]) for role, params in roles.items()]
    else:  # two groups: the backbone, and everything else at the head's LR
        rest = [p for role, params in roles.items() if role != "backbone" for _, p in params]
        named = [("backbone", [p for _, p in roles.get("backbone", [])], config.backbone_lr),
                 ("head", rest, config.lr)]
    return [{"params": params, "lr": lr, "initial_lr": lr, "name": name}
            for name, params, lr in named if params]


def build_optimizer(model: nn.Module, criterion: nn.Module, config: TrainConfig):
    """SGD (momentum, optional Nesterov) or AdamW over :func:`param_groups`; weight decay on
    every parameter (as the papers do). ``initial_lr`` is each group's peak."""
    groups = param_groups(model, criterion, config)
    if not groups:
        raise HafclsError("The model has no trainable parameters.",
                          "check --model and --method.")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
