"""Hierarchical cross-entropy (Bertinetto et al., CVPR 2020).

``hxe`` (α = 0.1) and the published comparison points ``hxe-a0.1`` and ``hxe-a0.6``. The weights
are rescaled to CE's gradient scale (``normalisation="gradient"``), so HXE trains under the
shared SGD recipe and α → 0 gives exactly CE; ``normalisation="nodes"`` is the authors'
(100-1,000x smaller). See ``docs/hxe.md``.
"""

from __future__ import annotations

from hafcls.losses import HierarchicalCrossEntropy
from hafcls.methods.base import Method, loss_on_hierarchy, register_presets
from hafcls.methods.ce import TYPE_I_HEAD
from hafcls.validation import Option

ALPHA = Option("alpha", float, 0.0, None, default=0.1, help="Decay of the weights with depth.")
NORMALISATION = Option(
    "normalisation", str, choices=HierarchicalCrossEntropy.NORMALISATIONS, default="gradient",
    help="Constant scale of the weights: CE's gradient at the start (gradient), a mean path "
         "weight of 1 (height), or the authors' sum over all nodes (nodes).")
#: the published comparison points (Bertinetto et al. 2020; HAFrame's tables)
PUBLISHED_ALPHAS = (0.1, 0.6)


def _hxe(name: str, alpha: float) -> Method:
    return Method(
        name=name, head="linear", head_kwargs=dict(TYPE_I_HEAD), loss="hxe",
        loss_kwargs={"alpha": alpha, "normalisation": "gradient"},
        description=f"Hierarchical cross-entropy, α = {alpha:g}, on CE's gradient scale "
                    "(Bertinetto et al. 2020).",
        build=loss_on_hierarchy(HierarchicalCrossEntropy), loss_options=(ALPHA, NORMALISATION),
        needs_hierarchy=True)


register_presets(_hxe, {"hxe": 0.1, "hxe-a0.1": 0.1, "hxe-a0.6": 0.6})
