"""Equiangular basis vectors (Shen et al., CVPR 2023): fixed near-orthogonal class vectors
(τ = 0.002; exactly orthonormal when d >= K), cross-entropy with label smoothing 0.1 on cos/0.07,
as in the official code. See ``docs/ebv.md``.
"""

from __future__ import annotations

from hafcls.methods.base import COSINE_TEMPERATURE, Method, register_method
from hafcls.methods.ce import LABEL_SMOOTHING, build_cross_entropy

LABEL_SMOOTHING_EBV = 0.1  # the official EBV training code's


@register_method("ebv")
def ebv(dataset: str | None = None) -> Method:
    return Method(
        name="ebv", head="ebv", head_kwargs={"temperature": COSINE_TEMPERATURE}, loss="ce",
        loss_kwargs={"label_smoothing": LABEL_SMOOTHING_EBV}, build=build_cross_entropy,
        loss_options=(LABEL_SMOOTHING,),
        description="Fixed equiangular basis vectors, CE with label smoothing 0.1 on cos/0.07 "
                    "(Shen et al. 2023).",
    )
