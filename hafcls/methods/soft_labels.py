"""Soft labels from class distances with a KL loss (Bertinetto et al., CVPR 2020).

``soft-labels`` uses β = 10, inside the range the authors swept (4…30); ``soft-labels-b4`` and
``soft-labels-b30`` are the published comparison points. See ``docs/soft-labels.md``.
"""

from __future__ import annotations

from hafcls.losses import SoftLabelLoss
from hafcls.methods.base import Method, loss_on_hierarchy, register_presets
from hafcls.methods.ce import TYPE_I_HEAD
from hafcls.validation import Option

BETA = Option("beta", float, 0.0, None, "neither", default=10.0,
              help="Sharpness of the soft targets exp(−β·d/d_max).")
#: the published comparison points
PUBLISHED_BETAS = (4.0, 30.0)


def _soft_labels(name: str, beta: float) -> Method:
    return Method(
        name=name, head="linear", head_kwargs=dict(TYPE_I_HEAD), loss="soft_labels",
        loss_kwargs={"beta": beta}, build=loss_on_hierarchy(SoftLabelLoss), loss_options=(BETA,),
        needs_hierarchy=True,
        description=f"Soft labels from class distances, β = {beta:g}, KL loss "
                    "(Bertinetto et al. 2020).",
    )


register_presets(_soft_labels, {"soft-labels": 10.0, "soft-labels-b4": 4.0,
                                "soft-labels-b30": 30.0})
