"""Hierarchical cross-entropy (Bertinetto et al., CVPR 2020).

α = 0.1 is one of the published comparison points (0.1 and 0.6); see ``docs/hxe.md``.
"""

from __future__ import annotations

from hafcls.losses import HierarchicalCrossEntropy
from hafcls.methods.base import Method, loss_on_hierarchy, register_method
from hafcls.methods.ce import TYPE_I_HEAD
from hafcls.validation import Option

ALPHA = Option("alpha", float, 0.0, None, default=0.1, help="Decay of the weights with depth.")


@register_method("hxe")
def hxe(dataset: str | None = None) -> Method:
    return Method("hxe", "linear", "hxe", dict(TYPE_I_HEAD), {"alpha": 0.1},
                  description="Hierarchical cross-entropy (Bertinetto et al. 2020).",
                  build=loss_on_hierarchy(HierarchicalCrossEntropy), loss_options=(ALPHA,),
                  needs_hierarchy=True)
