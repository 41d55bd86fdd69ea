"""The classification heads, each registered by its ``kind`` in :data:`hafcls.registry.HEADS`.

A head declares its options (types and bounds as data) and builds itself from a
:class:`~hafcls.models.head_base.HeadContext` in :meth:`build`, so :func:`hafcls.models.create`
needs no table of head names. Adding a head: a class here (or in a new module imported by
:mod:`hafcls.models`) decorated with ``@register_head``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.models.head_base import (
    INPUT_KINDS,
    LINEAR_SHAPES,
    PLACEHOLDER,
    FixedFrameHead,
    Head,
    HeadContext,
    MapProjection,
    _unit_columns,
    build_projection,
    frames_module,
    register_head,
)
from hafcls.models.transformation_module import build_transform
from hafcls.validation import Option

__all__ = ["EBVHead", "ETFHead", "FixedFrameHead", "HAFrameHead", "Head", "HUGHead",
           "INPUT_KINDS", "LINEAR_SHAPES", "LinearHead", "MapProjection", "PLACEHOLDER"]

DIM = Option("dim", int, 1, None, nullable=True, help="Classifier dimension d.")
SEED = Option("seed", int, 0, None, help="Seed of the frame's random rotation.")
POOLINGS = ("avg", "max")
FEATURE_INPUT = Option("feature_input", str, choices=("auto", "map", "pooled"),
                       help="Read the feature map (1x1 conv + pooling) or pooled features.")

@register_head
class HAFrameHead(FixedFrameHead):
    """HAFrame type-II head: projection -> BN1d(d) -> PReLU transformation -> fixed frame.

    Logits are plain dot products ``Wᵀh`` (no normalisation, no temperature, zero bias).
    """

    kind = "haframe"
    #: the frame's Gram matrix is the cosine target the model is trained towards
    frame_is_target = True
    options = (
        Option("gamma", float, 0.0, None, "neither", help="Decay of the target cosines."),
        Option("s_min", (float, str), help="'paper', 'exact' or a number."),
        Option("frame_method", str, choices=("eigh", "tree")),
        Option("distance", str, choices=("published", "lca_height")),
        DIM, SEED, FEATURE_INPUT,
    )

    @classmethod
    def reads_feature_map(cls, options: Mapping) -> bool:
        return True

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        input_kind = ctx.options["feature_input"]
        k = ctx.num_classes
        weight, meta, resolved = ctx.frame(k, lambda: _haframe(ctx), _describe_haframe)
        if resolved.get("dim") == k:  # the exact frame: dim=None rebuilds it
            resolved.pop("dim")
        resolved["feature_input"] = input_kind
        head = cls(ctx.in_features(input_kind), weight, meta, input_kind, ctx.transform)
        return head, resolved

    def __init__(
        self,
        in_features: int,
        frame: Tensor,
        frame_meta: Mapping | None = None,
        input_kind: str = "pooled",
        transform: str = "prelu",
    ):
        super().__init__(frame, frame_meta, input_kind)
        d = self.feature_dim
        self.projection = build_projection(input_kind, in_features, d)
        self.bn = nn.BatchNorm1d(d)
        self.transform = build_transform(transform, d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.transform(self.bn(self.projection(x)))
        return h @ self._checked_frame().to(h.dtype), h


@register_head
class LinearHead(Head):
    """A learnable linear classifier (with bias) in one of three shapes.

    - ``"plain"``: ``Linear(C, K)`` on the pooled features (timm's usual head).
    - ``"type1"``: ``BN -> Linear(C, hidden) -> BN -> ELU -> Linear(hidden, K)`` (HAFrame's
      type-I baseline; ``hidden_dim`` defaults to K). The paper's exact head is
      ``shape="type1", pooling="max", hidden_dim=600``: global *max* pooling of the backbone's
      feature map instead of the backbone's own (average) pooling.
    - ``"type2"``: HAFrame's type-II trunk (projection -> BN -> transformation) with a
      learnable ``Linear(hidden, K)`` instead of the frame (the paper's ablation).
    """

    kind = "linear"
    options = (Option("shape", str, choices=LINEAR_SHAPES),
               Option("hidden_dim", int, 1, None, nullable=True), FEATURE_INPUT,
               Option("pooling", str, choices=POOLINGS,
                      help="'avg': the backbone's pooled features; 'max': global max pooling "
                           "of its feature map (the paper's type-I head)."))

    @classmethod
    def reads_feature_map(cls, options: Mapping) -> bool:
        return options.get("shape") == "type2" or options.get("pooling") == "max"

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        shape = ctx.options.get("shape", "plain")
        pooling = ctx.options.get("pooling", "avg")
        input_kind = ctx.options.get("feature_input", "pooled")
        if pooling == "max" and input_kind != "map":
            raise HafclsError(
                "Global max pooling needs the backbone's N x C x H x W feature map, but this "
                "backbone gives pooled features.",
                "use a CNN backbone, or pooling='avg'.")
        head = cls(ctx.in_features(input_kind), ctx.num_classes, shape,
                   ctx.options.get("hidden_dim"), input_kind, ctx.transform, pooling)
        resolved = {"shape": shape, "hidden_dim": head.feature_dim}
        if shape == "type2" or pooling == "max":
            resolved["feature_input"] = input_kind
        if pooling != "avg":
            resolved["pooling"] = pooling
        return head, resolved

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        shape: str = "plain",
        hidden_dim: int | None = None,
        input_kind: str = "pooled",
        transform: str = "prelu",
        pooling: str = "avg",
    ):
        if shape not in LINEAR_SHAPES:
            raise HafclsError(
                f"Unknown linear head shape {shape!r}.", f"use one of {', '.join(LINEAR_SHAPES)}."
            )
        if pooling not in POOLINGS or (pooling == "max" and shape == "type2"):
            raise HafclsError(f"Pooling {pooling!r} does not apply to the {shape!r} linear head.",
                              "use pooling='max' with shape 'plain' or 'type1', else 'avg'.")
        if shape != "type2" and pooling != "max" and input_kind != "pooled":
            raise HafclsError(
                f"The {shape!r} linear head reads pooled features, not a feature map.",
                "use feature_input='pooled', pooling='max', or shape='type2' for the "
                "1x1-convolution trunk.",
            )
        hidden = in_features if shape == "plain" else int(hidden_dim or num_classes)
        super().__init__(num_classes, hidden, input_kind)
        self.shape = shape
        self.pooling = pooling
        # global max pooling of the map (the paper's type-I head); otherwise the input is used
        self.pool = GlobalMaxPool() if pooling == "max" else nn.Identity()
        if shape == "plain":
            self.neck = nn.Identity()
        elif shape == "type1":
            self.neck = nn.Sequential(
                nn.BatchNorm1d(in_features),
                nn.Linear(in_features, hidden),
                nn.BatchNorm1d(hidden),
                nn.ELU(),
            )
        else:
            self.neck = nn.Sequential(
                build_projection(input_kind, in_features, hidden),
                nn.BatchNorm1d(hidden),
                build_transform(transform, hidden),
            )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.neck(self.pool(x))
        return self.classifier(h), h

    def class_vectors(self) -> Tensor:
        return self.classifier.weight.t()

    def param_role(self, name: str) -> str | None:
        """Learning-rate role (hafcls.engine.optimization): the type-II trunk's first layer is
        its projection (the 1x1 convolution)."""
        if self.shape == "type2" and name.startswith("neck.0."):
            return "projection"
        return None


class GlobalMaxPool(nn.Module):
    """``N x C x H x W -> N x C``: the maximum over the spatial positions."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise HafclsError(
                f"Global max pooling expects an N x C x H x W feature map, got shape "
                f"{tuple(x.shape)}.", "use pooling='avg' for this backbone.")
        return x.amax(dim=(2, 3))


@register_head
class ETFHead(FixedFrameHead):
    """Fixed simplex ETF (Yang et al., 2022): BN1d, L2 normalisation, cosine logits.

    ``features`` are the unit-length BN outputs; the frame's columns are normalised, so logits
    are cosines and the prediction is the nearest ETF vector by cosine. A linear projection
    (no bias) maps C to d only when they differ.
    """

    kind = "etf"
    options = (DIM, SEED)

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        k = ctx.num_classes
        dim = int(ctx.options.get("dim") or max(ctx.width, k))
        seed = ctx.options.get("seed", 0)
        weight, meta, resolved = ctx.frame(
            dim, lambda: frames_module().simplex_etf(k, dim=dim, seed=seed))
        return cls(ctx.width, weight, meta), resolved

    @classmethod
    def embedding_options(cls, n_features: int, num_classes: int) -> dict:
        # a frame in K dims (K-1 when the inputs have K): the projection onto it stays learnable
        # (it is skipped when the dimensions agree, leaving only batch norm to train)
        return {"dim": num_classes if n_features != num_classes else num_classes - 1}

    def __init__(self, in_features: int, frame: Tensor, frame_meta: Mapping | None = None):
        super().__init__(frame, frame_meta, "pooled")
        d = self.feature_dim
        self.frame.copy_(_unit_columns(self.frame))
        self.projection = nn.Identity() if in_features == d else nn.Linear(in_features, d, False)
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.bn(self.projection(x)), dim=1)
        return h @ self._checked_frame().to(h.dtype), h


@register_head
class HUGHead(Head):
    """HUG proxy head (Liu et al., 2023): learnable proxies normalised on every call.

    As in the official code: the backbone's pooled features are normalised directly (no
    projection) and the proxies start from U(±1/√d). A projection ``Linear(C, d)`` (no bias) is
    added only when a ``dim`` other than the feature width C is asked for. ``features`` are the
    unit-length features, logits the cosines to the normalised proxies (the prediction is the
    nearest proxy by cosine).
    """

    kind = "hug"
    options = (DIM, Option("projection", bool, nullable=True,
                           help="Learnable Linear(C, d) before normalising (default: only when "
                                "d differs from the feature width C)."))

    @classmethod
    def embedding_options(cls, n_features: int, num_classes: int) -> dict:
        # on frozen inputs, without a learnable projection only the proxies' spread would train
        return {"dim": max(n_features, num_classes), "projection": True}

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        head = cls(ctx.width, ctx.num_classes, ctx.options.get("dim"),
                   ctx.options.get("projection"))
        resolved = {"dim": head.feature_dim}
        if ctx.options.get("projection") is not None:
            resolved["projection"] = bool(ctx.options["projection"])
        return head, resolved

    def __init__(self, in_features: int, num_classes: int, dim: int | None = None,
                 projection: bool | None = None):
        d = int(dim or in_features)
        super().__init__(num_classes, d, "pooled")
        if projection is None:
            projection = d != in_features
        if not projection and d != in_features:
            raise HafclsError(f"A HUG head of dimension {d} on {in_features} features needs "
                              "a projection.", "drop projection=False or the dim option.")
        self.projection = nn.Linear(in_features, d, False) if projection else nn.Identity()
        bound = 1.0 / math.sqrt(d)  # the official initialisation
        self.proxies = nn.Parameter(torch.empty(num_classes, d).uniform_(-bound, bound))

    def class_vectors(self) -> Tensor:
        return F.normalize(self.proxies, dim=1).t()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.projection(x), dim=1)
        return h @ self.class_vectors().to(h.dtype), h


@register_head
class EBVHead(FixedFrameHead):
    """Equiangular Basis Vectors: fixed near-orthogonal unit vectors, logits = cos / temperature.

    An embedding layer ``Linear(C, d)`` maps the features to the basis dimension d (which may
    be smaller than K); ``features`` are its unit-length outputs.
    """

    kind = "ebv"
    options = (DIM, SEED, Option("temperature", float, 0.0, None, "neither", default=0.07))

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        k = ctx.num_classes
        dim = int(ctx.options.get("dim") or ctx.width)
        seed = ctx.options.get("seed", 0)
        weight, meta, resolved = ctx.frame(
            dim, lambda: frames_module().equiangular_basis(k, dim, seed=seed))
        temperature = float(ctx.options.get("temperature", 0.07))
        resolved["temperature"] = temperature
        return cls(ctx.width, weight, meta, temperature), resolved

    @classmethod
    def embedding_options(cls, n_features: int, num_classes: int) -> dict:
        return {"dim": max(n_features, num_classes)}

    def __init__(
        self,
        in_features: int,
        frame: Tensor,
        frame_meta: Mapping | None = None,
        temperature: float = 0.07,
    ):
        super().__init__(frame, frame_meta, "pooled")
        if not temperature > 0:
            raise HafclsError(
                f"temperature must be positive, got {temperature}.", "use e.g. 0.07."
            )
        self.temperature = float(temperature)
        self.frame.copy_(_unit_columns(self.frame))
        self.projection = nn.Linear(in_features, self.feature_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.projection(x), dim=1)
        return h @ self._checked_frame().to(h.dtype) / self.temperature, h


# ---------------------------------------------------------------------- HAFrame's frame
def _haframe(ctx: HeadContext):
    if ctx.hierarchy is None:
        raise HafclsError(
            "The haframe head needs a hierarchy to build its frame.",
            "pass hierarchy=, or a prebuilt frame= (a Frame or a d x K tensor).",
        )
    keys = {"gamma": "gamma", "s_min": "s_min", "frame_method": "method",
            "distance": "distance", "dim": "dim", "seed": "seed"}
    kwargs = {arg: ctx.options[opt] for opt, arg in keys.items() if opt in ctx.options}
    return frames_module().haframe(ctx.hierarchy, **kwargs)


def _describe_haframe(frame) -> dict:
    """The options that rebuild ``frame`` exactly."""
    return {"gamma": float(frame.gamma), "s_min": float(frame.s_min),
            "frame_method": frame.method, "distance": (frame.info or {}).get("distance")}
