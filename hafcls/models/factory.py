"""``create``: a timm backbone plus a head, with its frame, as a :class:`HierarchyClassifier`."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.models import heads as _heads  # noqa: F401  (registers the heads)
from hafcls.models.backbone import create_backbone, feature_width, resolve_feature_input
from hafcls.models.classifier import HierarchyClassifier
from hafcls.models.head_base import FROM_STATE_DICT, HeadContext
from hafcls.models.transformation_module import TRANSFORMS
from hafcls.registry import HEADS
from hafcls.validation import check_options


def head_options() -> dict[str, tuple[str, ...]]:
    """Keyword options each registered head accepts (everything else goes to timm)."""
    return {name: tuple(o.name for o in cls.options) for name, cls in HEADS.items()}


def create(
    backbone: str,
    hierarchy=None,
    head: str = "haframe",
    frame=None,
    transform: str = "prelu",
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    num_classes: int | None = None,
    *,
    head_kwargs: dict | None = None,
    timm_kwargs: dict | None = None,
    fingerprint: str | None = None,
    **kwargs: Any,
) -> HierarchyClassifier:
    """Create a timm ``backbone`` with a ``head`` over the hierarchy's classes.

    Parameters
    ----------
    backbone:
        A timm model name (created with ``num_classes=0``).
    hierarchy:
        The :class:`~hafcls.hierarchy.Hierarchy`; gives K, the frame of the ``haframe`` head and
        the fingerprint saved in the state dict.
    head:
        ``"haframe"``, ``"linear"``, ``"etf"``, ``"hug"`` or ``"ebv"`` (see
        :mod:`hafcls.models.heads`).
    frame:
        For fixed-frame heads: a :class:`hafcls.frames.Frame`, a ``d x K`` tensor/array, or
        ``"state_dict"`` for an empty frame that ``load_state_dict`` fills (skips building it).
        By default it is built: ``haframe`` from the hierarchy, ``etf``/``ebv`` from K.
    transform:
        ``"prelu"`` (the transformation module) or ``"none"``; used by ``haframe`` and
        ``linear(shape="type2")``.
    pretrained, pretrained_file:
        Backbone weights from a local file; ``pretrained=True`` alone asks timm to download.
    num_classes:
        K when no hierarchy is given (must agree with it otherwise).
    head_kwargs, **kwargs:
        Head options: ``haframe``: gamma, s_min, frame_method ("eigh"|"tree"), distance
        ("published"|"lca_height"), dim (None: exact frame), seed, feature_input
        ("auto"|"map"|"pooled"); ``linear``: shape ("plain"|"type1"|"type2"), hidden_dim,
        feature_input; ``etf``: dim (default max(C, K)), seed; ``hug``: dim (default C);
        ``ebv``: dim (default C), seed, temperature (0.07). Keyword
        arguments that are not head options go to ``timm.create_model`` (as do ``timm_kwargs``);
        they must be JSON values so that ``model.config`` can re-create the model.
    fingerprint:
        Expected hierarchy fingerprint (``model.config`` carries it): a different hierarchy is
        refused.
    """
    head_cls = HEADS.get(head)
    if transform not in TRANSFORMS:
        raise HafclsError(f"Unknown transform {transform!r}.", f"use one of {TRANSFORMS}.")
    options, tk = _split_options(head, head_kwargs, timm_kwargs, kwargs)
    fingerprint = _check_hierarchy(hierarchy, fingerprint)
    given = _frame_parts(frame, head_cls, hierarchy)
    k = _num_classes(hierarchy, num_classes, given)

    model_backbone = create_backbone(backbone, pretrained, pretrained_file, **tk)
    width = feature_width(model_backbone)
    in_chans = int(tk.get("in_chans", 3))
    if head_cls.reads_feature_map(options):
        options["feature_input"] = resolve_feature_input(
            model_backbone, options.get("feature_input", "auto"), in_chans
        )
    elif options.get("feature_input") == "auto":  # the other heads read pooled features
        options.pop("feature_input")

    ctx = HeadContext(model_backbone, width, k, hierarchy, given, frame, transform, options,
                      head_cls.options)
    built_head, resolved = head_cls.build(ctx)
    frame_mode = ctx.frame_mode if head_cls.fixed_classifier else None
    fingerprint = fingerprint or getattr(built_head, "frame_meta", {}).get("fingerprint")
    config = {
        "backbone": backbone,
        "head": head,
        "transform": transform,
        "num_classes": k,
        "frame": frame_mode,
        "head_kwargs": resolved,
        "timm_kwargs": tk,
        "fingerprint": fingerprint,
    }
    return HierarchyClassifier(model_backbone, built_head, config, fingerprint)


# ---------------------------------------------------------------------- argument handling
def _split_options(head, head_kwargs, timm_kwargs, kwargs) -> tuple[dict, dict]:
    options = dict(head_kwargs or {})
    tk = dict(timm_kwargs or {})
    table = head_options()
    every = {o for opts in table.values() for o in opts}
    for key, value in kwargs.items():
        (options if key in every else tk)[key] = value
    wrong = sorted(set(options) - set(table[head]))
    if wrong:
        raise HafclsError(
            f"Option(s) {', '.join(wrong)} do not apply to the {head!r} head.",
            f"the {head!r} head takes {', '.join(table[head])}.",
        )
    options = check_options(HEADS.get(head).options, options, f"the {head!r} head")
    try:
        json.dumps(tk)
    except TypeError:
        raise HafclsError(
            "timm keyword arguments must be JSON values (numbers, strings, lists, dicts).",
            "pass layers by their timm names (e.g. act_layer='gelu'), not as Python objects.",
        ) from None
    return options, tk


def _check_hierarchy(hierarchy, fingerprint: str | None) -> str | None:
    if hierarchy is None:
        return fingerprint
    if not hasattr(hierarchy, "fingerprint") or not hasattr(hierarchy, "num_classes"):
        raise HafclsError(
            f"hierarchy must be a hafcls Hierarchy, got {type(hierarchy).__name__}.",
            "load one with hafcls.hierarchy.load(...) or Hierarchy.from_json(...).",
        )
    ours = hierarchy.fingerprint()
    if fingerprint and fingerprint != ours:
        raise HafclsError(
            f"The model config expects hierarchy {fingerprint}, but hierarchy {ours} was given.",
            "pass the hierarchy the model was trained with.",
        )
    return ours


def _frame_parts(frame, head_cls, hierarchy) -> tuple[torch.Tensor, dict] | None:
    """``(weight d x K, metadata)`` of an explicitly given frame, else None."""
    head = head_cls.kind
    if frame is None or (isinstance(frame, str) and frame == FROM_STATE_DICT):
        if frame is not None and not head_cls.fixed_classifier:
            raise HafclsError(
                f"The {head!r} head has no fixed frame.", "drop the frame argument."
            )
        return None
    if not head_cls.fixed_classifier:
        fixed = [name for name, cls in HEADS.items() if cls.fixed_classifier]
        raise HafclsError(
            f"The {head!r} head learns its classifier; it takes no frame.",
            f"use one of the fixed-frame heads ({', '.join(fixed)}) or drop frame.",
        )
    if hasattr(frame, "weight") and hasattr(frame, "to_metadata"):
        weight, meta = frame.weight, dict(frame.to_metadata())
        meta.setdefault("fingerprint", getattr(frame, "fingerprint", None))
    elif isinstance(frame, (torch.Tensor, np.ndarray)):
        weight, meta = torch.as_tensor(frame), {"kind": "given"}
    else:
        raise HafclsError(
            f"frame must be a hafcls.frames.Frame, a d x K tensor or 'state_dict', got "
            f"{type(frame).__name__}.",
            "build one with hafcls.frames.haframe(hierarchy).",
        )
    if hierarchy is not None and meta.get("fingerprint") not in (None, hierarchy.fingerprint()):
        raise HafclsError(
            f"The frame was built for hierarchy {meta['fingerprint']}, not for the given "
            f"hierarchy {hierarchy.fingerprint()}.",
            "rebuild the frame with hafcls.frames.haframe(hierarchy).",
        )
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise HafclsError(
            f"A frame must be a d x K matrix, got shape {tuple(getattr(weight, 'shape', ()))}.",
            "pass one column per class.",
        )
    return weight.detach().to(torch.float32), meta


def _num_classes(hierarchy, num_classes, given) -> int:
    sources = {}
    if hierarchy is not None:
        sources["hierarchy"] = hierarchy.num_classes
    if num_classes is not None:
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise HafclsError(
                f"num_classes must be an integer >= 2, got {num_classes!r}.",
                "pass the number of classes, or a hierarchy.",
            )
        sources["num_classes"] = int(num_classes)
    if given is not None:
        sources["frame"] = int(given[0].shape[1])
    if not sources:
        raise HafclsError(
            "The number of classes is unknown.", "pass hierarchy=, num_classes= or a frame."
        )
    if len(set(sources.values())) > 1:
        found = ", ".join(f"{k} {v}" for k, v in sources.items())
        raise HafclsError(
            f"The class counts disagree ({found}).",
            "pass a hierarchy, num_classes and frame over the same classes.",
        )
    return next(iter(sources.values()))
