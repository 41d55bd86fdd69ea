"""The estimator's only contact with hafcls's model layer: a head and its loss for a method.

Everything the estimator needs from ``hafcls.losses`` / ``hafcls.models`` / ``hafcls.frames`` is
in :func:`_build_head_and_loss`, using the method registry
(``get_method(name) -> Method``) and the head registry: every registered head builds itself
from a :class:`~hafcls.models.head_base.HeadContext` without a backbone, on pooled features
(the inputs are already embeddings), with its own ``embedding_options`` defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from hafcls.errors import HafclsError


def _build_head_and_loss(method: str, method_options, hierarchy, n_features: int,
                         transform: str, seed: int) -> tuple[nn.Module, nn.Module, float]:
    """``(head, loss, score_temperature)`` of registry method ``method`` for ``n_features`` inputs.

    ``head(x) -> (logits, features)``, ``loss(logits, features, targets)``, and probabilities
    are ``softmax(logits / score_temperature)``. The head's random initialisation (and the
    frames' rotations) come from ``seed``; the global torch RNG is left as it was.
    """
    from hafcls.methods import get_method
    from hafcls.models.head_base import HeadContext
    from hafcls.registry import HEADS
    from hafcls.validation import check_options

    m = get_method(method)
    if method_options:
        m = m.with_options(**dict(method_options))
    head_cls = HEADS.get(m.head)
    names = {o.name for o in head_cls.options}
    kw = dict(m.head_kwargs)
    if kw.pop("feature_input", "pooled") not in ("pooled", "auto"):
        raise HafclsError("The estimator's heads read embeddings (pooled features).",
                          "drop feature_input from method_options.")
    k = hierarchy.num_classes
    # the head's own defaults for frozen embeddings, then the method's options
    options = {**head_cls.embedding_options(n_features, k), **kw}
    if "seed" in names:
        options.setdefault("seed", seed)  # the frame's rotation follows random_state
    if "feature_input" in names:
        options["feature_input"] = "pooled"
    options = check_options(head_cls.options, options, f"the {m.head!r} head")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # no backbone: the inputs are already pooled features of width n_features
        ctx = HeadContext(None, n_features, k, hierarchy, None, None, transform, options,
                          head_cls.options)
        head, _ = head_cls.build(ctx)
    loss = m.build_loss(head, hierarchy)
    return head, loss, float(m.score_temperature)
