"""HUG, hyperspherical uniformity gap (Liu et al., ICLR 2023), proxy form, in three variants of
the inter-class energy: ``hug-mhe``, ``hug-mhs`` and ``hug-mgd`` (α = β = 1, no temperature).

See ``docs/hug.md``.
"""

from __future__ import annotations

from hafcls.losses import HUGLoss
from hafcls.losses.hug import VARIANTS
from hafcls.methods.base import COSINE_TEMPERATURE, Method, register_presets
from hafcls.validation import Option

OPTIONS = (
    Option("variant", str, choices=VARIANTS, help="Inter-class energy."),
    Option("alpha", float, 0.0, None, default=1.0, help="Weight of the inter-class energy."),
    Option("beta", float, 0.0, None, default=1.0, help="Weight of the intra-class distance."),
)


def build_hug_loss(method: Method, head, hierarchy) -> HUGLoss:
    return HUGLoss(head, **method.loss_kwargs)


def _hug(name: str, variant: str) -> Method:
    return Method(
        name=name, head="hug", loss="hug",
        loss_kwargs={"variant": variant, "alpha": 1.0, "beta": 1.0}, build=build_hug_loss,
        loss_options=OPTIONS, score_temperature=COSINE_TEMPERATURE, needs_head=True,
        description=f"HUG proxies, {variant.upper()} inter-class energy (Liu et al. 2023).",
    )


register_presets(_hug, {"hug-mhe": "mhe", "hug-mhs": "mhs", "hug-mgd": "mgd"})
