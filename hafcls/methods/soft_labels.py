"""Soft labels from class distances with a KL loss (Bertinetto et al., CVPR 2020).

β = 10 lies inside the range the authors swept (4…30); it is not tuned per dataset.
See ``docs/soft-labels.md``.
"""

from __future__ import annotations

from hafcls.losses import SoftLabelLoss
from hafcls.methods.base import Method, loss_on_hierarchy, register_method
from hafcls.methods.ce import TYPE_I_HEAD
from hafcls.validation import Option

BETA = Option("beta", float, 0.0, None, "neither", default=10.0,
              help="Sharpness of the soft targets exp(−β·d/d_max).")


@register_method("soft-labels")
def soft_labels(dataset: str | None = None) -> Method:
    return Method(
        name="soft-labels", head="linear", head_kwargs=dict(TYPE_I_HEAD), loss="soft_labels",
        loss_kwargs={"beta": 10.0}, build=loss_on_hierarchy(SoftLabelLoss), loss_options=(BETA,),
        needs_hierarchy=True,
        description="Soft labels from class distances, KL loss (Bertinetto et al. 2020).",
    )
