"""The model: a timm backbone followed by one hierarchy-aware head."""

from __future__ import annotations

import copy

from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.models.head_base import Head


class HierarchyClassifier(nn.Module):
    """``backbone`` (timm, ``num_classes=0``) -> ``head``.

    ``model(x)`` returns logits (N x K, higher = better); ``model(x, return_features=True)``
    returns ``(logits, features)``, the features being what the classifier acts on (see
    :mod:`hafcls.models.heads`). ``config`` is a JSON-able dict such that
    ``hafcls.models.create(**config, hierarchy=h)`` re-creates the architecture (weights come
    from the state dict).

    The hierarchy fingerprint is saved in the state dict (extra state); loading a state dict
    saved for another hierarchy, another class count or another head raises ``HafclsError``
    before any weight is copied.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Head,
        config: dict | None = None,
        fingerprint: str | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = copy.deepcopy(config or {})
        self.fingerprint = fingerprint

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def class_vectors(self) -> Tensor:
        """The head's ``d x K`` class vectors."""
        return self.head.class_vectors()

    def head_input(self, x: Tensor) -> Tensor:
        """Backbone output in the form the head reads (pooled features or the feature map)."""
        z = self.backbone.forward_features(x)
        if self.head.input_kind == "pooled":
            z = self.backbone.forward_head(z, pre_logits=True)
        return z

    def forward(self, x: Tensor, return_features: bool = False):
        logits, features = self.head(self.head_input(x))
        return (logits, features) if return_features else logits

    # ------------------------------------------------------------------ optimisation
    def param_groups(
        self,
        lr_backbone: float,
        lr_head: float,
        weight_decay: float = 0.0,
        no_decay_norm_bias: bool = False,
    ) -> list[dict]:
        """Optimizer parameter groups: the backbone at ``lr_backbone``, the head at ``lr_head``.

        Each group dict has ``params``, ``lr``, ``weight_decay`` and ``name`` (``"backbone"``,
        ``"head"``). With ``no_decay_norm_bias=True`` the 1-D parameters (norm scales and shifts,
        biases, PReLU slopes) go into extra groups ``"backbone_no_decay"`` / ``"head_no_decay"``
        with ``weight_decay=0``. The default decays everything, as the HAFrame recipe does.
        Frozen parameters and the fixed frames (buffers) are never included; empty groups are
        left out.
        """
        groups = []
        for name, module, lr in (
            ("backbone", self.backbone, lr_backbone),
            ("head", self.head, lr_head),
        ):
            params = [p for p in module.parameters() if p.requires_grad]
            if no_decay_norm_bias:
                decay = [p for p in params if p.ndim > 1]
                rest = [p for p in params if p.ndim <= 1]
                pairs = [(name, decay, weight_decay), (f"{name}_no_decay", rest, 0.0)]
            else:
                pairs = [(name, params, weight_decay)]
            groups += [
                {"name": n, "params": ps, "lr": lr, "weight_decay": wd}
                for n, ps, wd in pairs
                if ps
            ]
        return groups

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "num_classes": self.num_classes,
            "head": self.head.kind,
        }

    def set_extra_state(self, state: dict) -> None:
        state = dict(state or {})
        theirs = state.get("fingerprint")
        if state.get("head") not in (None, self.head.kind):
            raise HafclsError(
                f"The state dict is from a {state['head']!r} head, this model has a "
                f"{self.head.kind!r} head.",
                "create the model with the same head (see the checkpoint's config).",
            )
        if self.fingerprint and theirs and theirs != self.fingerprint:
            raise HafclsError(
                f"The state dict was saved for hierarchy {theirs}, this model was created for "
                f"{self.fingerprint}.",
                "create the model with the hierarchy it was trained on (compare "
                "Hierarchy.fingerprint()).",
            )
        if state.get("num_classes") not in (None, self.num_classes):
            raise HafclsError(
                f"The state dict has {state['num_classes']} classes, this model "
                f"{self.num_classes}.",
                "create the model with the hierarchy or num_classes it was trained with.",
            )
        if theirs and not self.fingerprint:
            self.fingerprint = theirs
            self.config["fingerprint"] = theirs
