"""Hier-COS (Sani & Anand, CVPR 2026): orthogonal node subspaces on HAFrame's type-II trunk,
trained with the path-distribution KL plus α × the level-wise term.

The head (``subspace``) returns the class scores ``‖P_c z‖₂`` as logits and the node
coordinates z as features, so the engine's ``loss(logits, features, targets)`` call feeds the
loss what it needs. The rotation is drawn from the run's seed (the engine passes it as the
head's ``seed``). Scores are used at temperature 1. See ``docs/hiercos.md``.
"""

from __future__ import annotations

from hafcls.losses.hiercos import ALPHA_DEFAULT, SubspacePathLoss
from hafcls.methods.base import Method, register_method
from hafcls.validation import Option

#: the paper's α of the level-wise term per dataset (docs/hiercos.md)
ALPHA_PRESETS: dict[str, float] = {
    "cifar100": 0.05,
    "fgvc-aircraft": 0.1,
    "inat2019": 0.001,
    "tiered-imagenet": 1e-5,
}
OPTIONS = (
    Option("alpha", float, 0.0, None, default=ALPHA_DEFAULT,
           help="Weight of the level-wise L1 term."),
    Option("renormalise", bool, default=False,
           help="Target softmax(2/r) on the path instead of the squared weights."),
)


def build_hiercos_loss(method: Method, head, hierarchy) -> SubspacePathLoss:
    return SubspacePathLoss.from_head(head, **method.loss_kwargs)


def preset(dataset: str | None) -> float:
    """The paper's α for ``dataset`` (canonical name), else the CIFAR-100 setting."""
    return ALPHA_PRESETS.get(dataset, ALPHA_DEFAULT)


@register_method("hier-cos")
def hier_cos(dataset: str | None = None) -> Method:
    return Method(
        name="hier-cos", head="subspace", loss="hier-cos",
        loss_kwargs={"alpha": preset(dataset), "renormalise": False},
        build=build_hiercos_loss, loss_options=OPTIONS, needs_head=True,
        description="Orthogonal node subspaces, path KL + level-wise term (Sani & Anand 2026).",
    )
