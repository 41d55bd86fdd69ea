"""The estimator's only contact with hafcls's model layer: a head and its loss for a method.

Everything the estimator needs from ``hafcls.losses`` / ``hafcls.models`` / ``hafcls.frames`` is
in :func:`_build_head_and_loss`, written against the registry API of today
(``get_method(name) -> Method`` with ``head``, ``head_kwargs``, ``with_options``,
``build_loss`` and ``score_temperature``) and the head classes of :mod:`hafcls.models.heads`.
The heads are built directly on pooled features (``input_kind="pooled"``): there is no timm
backbone here, the inputs are already embeddings.
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
    from hafcls import frames
    from hafcls.methods import get_method
    from hafcls.models.heads import EBVHead, ETFHead, HAFrameHead, HUGHead, LinearHead

    m = get_method(method)
    if method_options:
        m = m.with_options(**dict(method_options))
    kw = dict(m.head_kwargs)
    if kw.pop("feature_input", "pooled") not in ("pooled", "auto"):
        raise HafclsError("The estimator's heads read embeddings (pooled features).",
                          "drop feature_input from method_options.")
    k = hierarchy.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        frame_seed = int(kw.get("seed", seed))
        if m.head == "linear":
            head = LinearHead(n_features, k, kw.get("shape", "plain"), kw.get("hidden_dim"),
                              "pooled", transform)
        elif m.head == "haframe":
            frame = frames.haframe(
                hierarchy, gamma=kw.get("gamma", 1.0), s_min=kw.get("s_min", "paper"),
                method=kw.get("frame_method", "eigh"), dim=kw.get("dim"), seed=frame_seed,
                distance=kw.get("distance", "published"))
            head = HAFrameHead(n_features, frame.weight, frame.to_metadata(), "pooled",
                               transform)
        elif m.head == "etf":
            # a frame in K dims (K-1 when the inputs have K): the head then has a learnable
            # projection onto it (ETFHead skips it when dims agree; with a frozen input that
            # would leave nothing to train but batch normalisation)
            dim = int(kw.get("dim") or (k if n_features != k else k - 1))
            frame = frames.simplex_etf(k, dim=dim, seed=frame_seed)
            head = ETFHead(n_features, frame.weight, frame.to_metadata())
        elif m.head == "hug":
            # frozen inputs: without a learnable projection only the proxies' spread would train
            head = HUGHead(n_features, k, int(kw.get("dim") or max(n_features, k)),
                           projection=True)
        elif m.head == "ebv":
            dim = int(kw.get("dim") or max(n_features, k))
            frame = frames.equiangular_basis(k, dim, seed=frame_seed)
            head = EBVHead(n_features, frame.weight, frame.to_metadata(),
                           kw.get("temperature", 0.07))
        elif m.head == "subspace":
            from hafcls.models.hiercos_head import SubspaceHead

            head = SubspaceHead.from_hierarchy(n_features, hierarchy, seed=frame_seed,
                                               input_kind="pooled", transform=transform)
        else:  # a head added to the registry after this module was written
            raise HafclsError(f"The estimator cannot build the {m.head!r} head of {method!r}.",
                              "use another method, or extend hafcls.sklearn._build.")
    loss = m.build_loss(head, hierarchy)
    return head, loss, float(m.score_temperature)
