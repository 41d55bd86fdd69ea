"""Cross-entropy with a learnable type-I linear classifier (the baselines' head).

See ``docs/ce.md``.
"""

from __future__ import annotations

from hafcls.losses import CrossEntropyLoss
from hafcls.methods.base import Method, register_method
from hafcls.validation import Option

LABEL_SMOOTHING = Option("label_smoothing", float, 0.0, 1.0, "left", default=0.0,
                         help="Label smoothing of the cross-entropy.")
#: the head of the paper's CE baseline, shared by every learnable-classifier method
TYPE_I_HEAD = {"shape": "type1"}


def build_cross_entropy(method: Method, head, hierarchy) -> CrossEntropyLoss:
    return CrossEntropyLoss(**method.loss_kwargs)


@register_method("ce")
def ce(dataset: str | None = None) -> Method:
    return Method(
        name="ce", head="linear", head_kwargs=dict(TYPE_I_HEAD), loss="ce",
        loss_kwargs={"label_smoothing": 0.0}, build=build_cross_entropy,
        loss_options=(LABEL_SMOOTHING,),
        description="Cross-entropy with a learnable (type-I) linear classifier.",
    )
