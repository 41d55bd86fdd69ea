"""``create``: a timm backbone plus a head, with its frame, as a :class:`HierarchyClassifier`."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.models.backbone import (
    create_backbone,
    feature_map_channels,
    feature_width,
    resolve_feature_input,
)
from hafcls.models.classifier import HierarchyClassifier
from hafcls.models.heads import (
    HEADS,
    PLACEHOLDER,
    EBVHead,
    ETFHead,
    HAFrameHead,
    HUGHead,
    LinearHead,
)
from hafcls.models.transform import TRANSFORMS

# keyword options each head accepts (everything else goes to timm.create_model)
HEAD_OPTIONS: dict[str, tuple[str, ...]] = {
    "haframe": ("gamma", "s_min", "frame_method", "distance", "dim", "seed", "feature_input"),
    "linear": ("shape", "hidden_dim", "feature_input"),
    "etf": ("dim", "seed"),
    "hug": ("dim",),
    "ebv": ("dim", "seed", "temperature"),
}
_ALL_OPTIONS = frozenset(o for opts in HEAD_OPTIONS.values() for o in opts)
_FRAME_HEADS = ("haframe", "etf", "ebv")
FROM_STATE_DICT = "state_dict"


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
    if head not in HEADS:
        raise HafclsError(f"Unknown head {head!r}.", f"use one of {', '.join(HEADS)}.")
    if transform not in TRANSFORMS:
        raise HafclsError(f"Unknown transform {transform!r}.", f"use one of {TRANSFORMS}.")
    options, tk = _split_options(head, head_kwargs, timm_kwargs, kwargs)
    fingerprint = _check_hierarchy(hierarchy, fingerprint)
    given = _frame_parts(frame, head, hierarchy)
    k = _num_classes(hierarchy, num_classes, given)

    model_backbone = create_backbone(backbone, pretrained, pretrained_file, **tk)
    width = feature_width(model_backbone)
    in_chans = int(tk.get("in_chans", 3))
    if head == "haframe" or (head == "linear" and options.get("shape") == "type2"):
        options["feature_input"] = resolve_feature_input(
            model_backbone, options.get("feature_input", "auto"), in_chans
        )
    elif options.get("feature_input") == "auto":  # the other heads read pooled features
        options.pop("feature_input")

    built_head, resolved, frame_mode = _build_head(
        head, model_backbone, width, k, hierarchy, given, frame, transform, options
    )
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
    for key, value in kwargs.items():
        (options if key in _ALL_OPTIONS else tk)[key] = value
    wrong = sorted(set(options) - set(HEAD_OPTIONS[head]))
    if wrong:
        raise HafclsError(
            f"Option(s) {', '.join(wrong)} do not apply to the {head!r} head.",
            f"the {head!r} head takes {', '.join(HEAD_OPTIONS[head])}.",
        )
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


def _frame_parts(frame, head: str, hierarchy) -> tuple[torch.Tensor, dict] | None:
    """``(weight d x K, metadata)`` of an explicitly given frame, else None."""
    if frame is None or (isinstance(frame, str) and frame == FROM_STATE_DICT):
        if frame is not None and head not in _FRAME_HEADS:
            raise HafclsError(
                f"The {head!r} head has no fixed frame.", "drop the frame argument."
            )
        return None
    if head not in _FRAME_HEADS:
        raise HafclsError(
            f"The {head!r} head learns its classifier; it takes no frame.",
            f"use one of the fixed-frame heads ({', '.join(_FRAME_HEADS)}) or drop frame.",
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


# ---------------------------------------------------------------------- heads
def _build_head(head, backbone, width, k, hierarchy, given, frame_arg, transform, options):
    """The head module, the resolved options for ``config`` and the config's frame mode."""
    if head == "linear":
        shape = options.get("shape", "plain")
        input_kind = options.get("feature_input", "pooled")
        in_features = feature_map_channels(backbone) if input_kind == "map" else width
        built = LinearHead(in_features, k, shape, options.get("hidden_dim"), input_kind, transform)
        resolved = {"shape": shape, "hidden_dim": built.feature_dim, "feature_input": input_kind}
        if shape != "type2":
            resolved.pop("feature_input")
        return built, resolved, None
    if head == "hug":
        built = HUGHead(width, k, options.get("dim"))
        return built, {"dim": built.feature_dim}, None

    frame_mode = FROM_STATE_DICT if (given is not None or frame_arg == FROM_STATE_DICT) else None
    if head == "haframe":
        input_kind = options["feature_input"]
        in_features = feature_map_channels(backbone) if input_kind == "map" else width
        weight, meta, resolved = _frame(
            given, frame_arg, options, k, default_dim=k, build=lambda: _haframe(hierarchy, options)
        )
        if resolved.get("dim") == k:  # the exact frame: dim=None rebuilds it
            resolved.pop("dim")
        resolved["feature_input"] = input_kind
        return HAFrameHead(in_features, weight, meta, input_kind, transform), resolved, frame_mode
    if head == "etf":
        dim = int(options.get("dim") or max(width, k))
        weight, meta, resolved = _frame(
            given, frame_arg, options, k, default_dim=dim,
            build=lambda: _frames().simplex_etf(k, dim=dim, seed=options.get("seed", 0)),
        )
        return ETFHead(width, weight, meta), resolved, frame_mode
    dim = int(options.get("dim") or width)
    weight, meta, resolved = _frame(
        given, frame_arg, options, k, default_dim=dim,
        build=lambda: _frames().equiangular_basis(k, dim, seed=options.get("seed", 0)),
    )
    temperature = float(options.get("temperature", 0.07))
    resolved["temperature"] = temperature
    return EBVHead(width, weight, meta, temperature), resolved, frame_mode


def _frame(given, frame_arg, options, k, default_dim, build):
    """Weight, metadata and config options of the head's frame (given, placeholder or built)."""
    if given is not None:
        weight, meta = given
        return weight, meta, {"dim": int(weight.shape[0])}
    if frame_arg == FROM_STATE_DICT:
        dim = int(options.get("dim") or default_dim)
        keep = ("gamma", "s_min", "frame_method", "distance", "seed", "temperature")
        resolved = {key: options[key] for key in keep if key in options}
        return torch.zeros(dim, k), {"kind": PLACEHOLDER}, {**resolved, "dim": dim}
    built = build()
    meta = dict(built.to_metadata())
    meta.setdefault("fingerprint", getattr(built, "fingerprint", None))
    resolved = {"dim": int(built.weight.shape[0]), "seed": getattr(built, "seed", None)}
    if built.kind == "haframe":
        resolved.update(
            gamma=float(built.gamma),
            s_min=float(built.s_min),
            frame_method=built.method,
            distance=(built.info or {}).get("distance"),
        )
    return built.weight, meta, {key: v for key, v in resolved.items() if v is not None}


def _haframe(hierarchy, options):
    if hierarchy is None:
        raise HafclsError(
            "The haframe head needs a hierarchy to build its frame.",
            "pass hierarchy=, or a prebuilt frame= (a Frame or a d x K tensor).",
        )
    keys = {"gamma": "gamma", "s_min": "s_min", "frame_method": "method",
            "distance": "distance", "dim": "dim", "seed": "seed"}
    kwargs = {arg: options[opt] for opt, arg in keys.items() if opt in options}
    return _frames().haframe(hierarchy, **kwargs)


def _frames():
    import hafcls.frames as frames  # imported on use: only the fixed-frame heads need it

    return frames
