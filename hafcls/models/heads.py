"""Classification heads: one small module per method.

Every head is called on the backbone's output (pooled ``N x C`` features, or the ``N x C x H x W``
map when its ``input_kind`` is ``"map"``) and returns ``(logits, features)``:

- ``logits`` (N x K): higher is better; the ranking used for prediction and metrics.
- ``features`` (N x d): what the classifier acts on, i.e. the vectors the losses pull towards
  ``class_vectors()`` (d x K).

=============  ========================================  ================================
head           features                                  logits
=============  ========================================  ================================
``haframe``    h = T(BN(P(x))), not normalised           Wᵀh, W the fixed frame
``linear``     input of the learnable classifier         Linear(features)
``etf``        BN(P(x)) / ‖·‖ (unit length)              cos to the fixed simplex ETF
``hug``        P(x) / ‖·‖ (unit length)                  cos to the learnable proxies
``ebv``        P(x) / ‖·‖ (unit length)                  cos to the fixed basis / T
=============  ========================================  ================================

P is a projection to the classifier's dimension d (a linear map; a 1x1 convolution + pooling on
CNN maps for ``haframe`` and ``linear(shape="type2")``), T the PReLU transformation module.

Fixed classifiers (``haframe``, ``etf``, ``ebv``) keep their class vectors in the ``frame``
buffer (saved in the state dict, never a parameter, so it gets no gradient and no weight decay)
and the frame's metadata (kind, γ, s_min, hierarchy fingerprint, ...) in the module's extra
state, so both travel with ``model.state_dict()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.models.transform import build_transform

INPUT_KINDS = ("pooled", "map")
LINEAR_SHAPES = ("plain", "type1", "type2")
PLACEHOLDER = "placeholder"  # frame kind of a head whose frame will come from a state dict


# ---------------------------------------------------------------------- projections
class MapProjection(nn.Module):
    """A 1x1 convolution to ``dim`` channels (no bias) followed by global average pooling.

    Both are linear, so they commute: pooling first and applying the convolution's weight as a
    matrix gives the same numbers at a fraction of the cost (no ``dim x H x W`` map). The weight
    keeps the convolution's shape so checkpoints read as the paper's architecture.
    """

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise HafclsError(
                f"The 1x1-convolution head expects an N x C x H x W feature map, got shape "
                f"{tuple(x.shape)}.",
                "create the model with feature_input='pooled' for this backbone.",
            )
        return F.linear(x.mean(dim=(2, 3)), self.conv.weight.flatten(1))


def build_projection(input_kind: str, in_features: int, dim: int) -> nn.Module:
    """The map or pooled-feature projection to ``dim`` (no bias)."""
    if input_kind == "map":
        return MapProjection(in_features, dim)
    if input_kind == "pooled":
        return nn.Linear(in_features, dim, bias=False)
    raise HafclsError(f"Unknown input kind {input_kind!r}.", f"use one of {INPUT_KINDS}.")


# ---------------------------------------------------------------------- base classes
class Head(nn.Module):
    """Base of every head: ``forward(x) -> (logits, features)`` and ``class_vectors()``."""

    kind: str = ""
    fixed_classifier: bool = False

    def __init__(self, num_classes: int, feature_dim: int, input_kind: str = "pooled"):
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise HafclsError(f"Unknown input kind {input_kind!r}.", f"use one of {INPUT_KINDS}.")
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.input_kind = input_kind

    def class_vectors(self) -> Tensor:
        """The ``d x K`` class vectors the logits compare features with."""
        raise NotImplementedError


class FixedFrameHead(Head):
    """A head whose class vectors are a fixed frame: a buffer plus metadata in the extra state."""

    fixed_classifier = True

    def __init__(self, frame: Tensor, frame_meta: Mapping | None, input_kind: str = "pooled"):
        frame = _check_frame(frame)
        super().__init__(frame.shape[1], frame.shape[0], input_kind)
        self.register_buffer("frame", frame)
        self.frame_meta = _plain_metadata(frame_meta)
        self._frame_loaded = self.frame_meta.get("kind") != PLACEHOLDER

    def class_vectors(self) -> Tensor:
        return self.frame

    def _checked_frame(self) -> Tensor:
        if not self._frame_loaded:
            raise HafclsError(
                "This model was created with frame='state_dict' but no state dict was loaded.",
                "call model.load_state_dict(...) with the checkpoint's weights before using it.",
            )
        return self.frame

    def get_extra_state(self) -> dict:
        return {"frame": dict(self.frame_meta)}

    def set_extra_state(self, state: dict) -> None:
        meta = dict((state or {}).get("frame") or {})
        ours, theirs = self.frame_meta.get("fingerprint"), meta.get("fingerprint")
        if ours and theirs and ours != theirs:
            raise HafclsError(
                f"The checkpoint's frame was built for hierarchy {theirs}, this model's for "
                f"{ours}.",
                "load it into a model created with the hierarchy it was trained on.",
            )
        self.frame_meta = meta
        self._frame_loaded = True


def _plain_metadata(meta: Mapping | None) -> dict:
    """Metadata as plain JSON values, so the state dict loads with ``weights_only=True``."""

    def convert(value):
        return value.item() if hasattr(value, "item") else str(value)

    return json.loads(json.dumps(dict(meta or {}), default=convert))


def _check_frame(frame: Tensor) -> Tensor:
    if not isinstance(frame, Tensor) or frame.ndim != 2 or min(frame.shape) < 1:
        raise HafclsError(
            f"A frame must be a d x K matrix, got {getattr(frame, 'shape', type(frame))}.",
            "pass a hafcls.frames.Frame or its .weight (one column per class).",
        )
    frame = frame.detach().to(torch.float32).clone()
    if not torch.isfinite(frame).all():
        raise HafclsError("The frame holds NaN or infinite values.", "rebuild the frame.")
    return frame


def _unit_columns(frame: Tensor) -> Tensor:
    return frame / frame.norm(dim=0, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------- heads
class HAFrameHead(FixedFrameHead):
    """HAFrame type-II head: projection -> BN1d(d) -> PReLU transformation -> fixed frame.

    Logits are plain dot products ``Wᵀh`` (no normalisation, no temperature, zero bias).
    """

    kind = "haframe"

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


class LinearHead(Head):
    """A learnable linear classifier (with bias) in one of three shapes.

    - ``"plain"``: ``Linear(C, K)`` on the pooled features (timm's usual head).
    - ``"type1"``: ``BN -> Linear(C, hidden) -> BN -> ELU -> Linear(hidden, K)`` (HAFrame's
      type-I baseline; ``hidden_dim`` defaults to K).
    - ``"type2"``: HAFrame's type-II trunk (projection -> BN -> transformation) with a
      learnable ``Linear(hidden, K)`` instead of the frame (the paper's ablation).
    """

    kind = "linear"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        shape: str = "plain",
        hidden_dim: int | None = None,
        input_kind: str = "pooled",
        transform: str = "prelu",
    ):
        if shape not in LINEAR_SHAPES:
            raise HafclsError(
                f"Unknown linear head shape {shape!r}.", f"use one of {', '.join(LINEAR_SHAPES)}."
            )
        if shape != "type2" and input_kind != "pooled":
            raise HafclsError(
                f"The {shape!r} linear head reads pooled features, not a feature map.",
                "use feature_input='pooled', or shape='type2' for the 1x1-convolution trunk.",
            )
        hidden = in_features if shape == "plain" else int(hidden_dim or num_classes)
        super().__init__(num_classes, hidden, input_kind)
        self.shape = shape
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
        h = self.neck(x)
        return self.classifier(h), h

    def class_vectors(self) -> Tensor:
        return self.classifier.weight.t()


class ETFHead(FixedFrameHead):
    """Fixed simplex ETF (Yang et al., 2022): BN1d, L2 normalisation, cosine logits.

    ``features`` are the unit-length BN outputs; the frame's columns are normalised, so logits
    are cosines and the prediction is the nearest ETF vector by cosine. A linear projection
    (no bias) maps C to d only when they differ.
    """

    kind = "etf"

    def __init__(self, in_features: int, frame: Tensor, frame_meta: Mapping | None = None):
        super().__init__(frame, frame_meta, "pooled")
        d = self.feature_dim
        self.frame.copy_(_unit_columns(self.frame))
        self.projection = nn.Identity() if in_features == d else nn.Linear(in_features, d, False)
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.bn(self.projection(x)), dim=1)
        return h @ self._checked_frame().to(h.dtype), h


class HUGHead(Head):
    """HUG proxy head (Liu et al., 2023): learnable proxies normalised on every call.

    An embedding layer ``Linear(C, d)`` lets features leave the non-negative orthant of ReLU
    backbones; ``features`` are its output normalised to unit length, logits the cosines to the
    normalised proxies (the prediction is the nearest proxy by cosine).
    """

    kind = "hug"

    def __init__(self, in_features: int, num_classes: int, dim: int | None = None):
        d = int(dim or in_features)
        super().__init__(num_classes, d, "pooled")
        self.projection = nn.Linear(in_features, d)
        self.proxies = nn.Parameter(F.normalize(torch.randn(num_classes, d), dim=1))

    def class_vectors(self) -> Tensor:
        return F.normalize(self.proxies, dim=1).t()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.projection(x), dim=1)
        return h @ self.class_vectors().to(h.dtype), h


class EBVHead(FixedFrameHead):
    """Equiangular Basis Vectors: fixed near-orthogonal unit vectors, logits = cos / temperature.

    An embedding layer ``Linear(C, d)`` maps the features to the basis dimension d (which may
    be smaller than K); ``features`` are its unit-length outputs.
    """

    kind = "ebv"

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


HEADS: dict[str, type[Head]] = {
    cls.kind: cls for cls in (HAFrameHead, LinearHead, ETFHead, HUGHead, EBVHead)
}
