"""What every classification head shares: the base classes, projections and the build context.

The concrete heads live in :mod:`hafcls.models.heads`, each registered by name in
:data:`hafcls.registry.HEADS`.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.registry import HEADS
from hafcls.validation import Option

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
    #: options ``hafcls.models.create`` accepts for this head (types and bounds as data)
    options: tuple[Option, ...] = ()

    @classmethod
    def reads_feature_map(cls, options: Mapping) -> bool:
        """Whether this head (with ``options``) can read the backbone's feature map."""
        return False

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        """The head for ``ctx`` and its resolved options (stored in ``model.config``)."""
        raise NotImplementedError

    @classmethod
    def embedding_options(cls, n_features: int, num_classes: int) -> dict:
        """Option defaults when the head sits on frozen embeddings (``hafcls.sklearn``), where
        nothing before the head learns: heads whose only trainable part could vanish there
        override this to keep a learnable projection."""
        return {}

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




# ---------------------------------------------------------------------- building
def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: register a head under its ``kind``."""
    HEADS.add(cls.kind, cls)
    return cls


FROM_STATE_DICT = "state_dict"


@dataclass
class HeadContext:
    """What a head's :meth:`Head.build` needs: the backbone, K, the hierarchy, the frame given
    to ``create`` (if any) and the head's checked options."""

    backbone: Any
    width: int
    num_classes: int
    hierarchy: Any
    given: tuple[Tensor, dict] | None
    frame_arg: Any
    transform: str
    options: dict
    head_options: tuple[Option, ...] = ()

    @property
    def frame_mode(self) -> str | None:
        """``"state_dict"`` when the frame is not built here (given, or from a checkpoint)."""
        given = self.given is not None or self.frame_arg == FROM_STATE_DICT
        return FROM_STATE_DICT if given else None

    def in_features(self, input_kind: str) -> int:
        """Channels of the feature map for ``"map"`` input, else the pooled width."""
        if input_kind == "map":
            from hafcls.models.backbone import feature_map_channels

            return feature_map_channels(self.backbone)
        return self.width

    def frame(self, default_dim: int, build: Callable[[], Any],
              describe: Callable[[Any], dict] | None = None) -> tuple[Tensor, dict, dict]:
        """Weight, metadata and config options of the head's frame: the given one, an empty
        placeholder filled by ``load_state_dict``, or ``build()`` (``describe(frame)`` adds the
        options that rebuild it)."""
        if self.given is not None:
            weight, meta = self.given
            return weight, meta, {"dim": int(weight.shape[0])}
        if self.frame_arg == FROM_STATE_DICT:
            dim = int(self.options.get("dim") or default_dim)
            # the options that describe the frame travel in the config; its size is dim
            keep = [o.name for o in self.head_options if o.name not in ("dim", "feature_input")]
            resolved = {key: self.options[key] for key in keep if key in self.options}
            return torch.zeros(dim, self.num_classes), {"kind": PLACEHOLDER}, \
                {**resolved, "dim": dim}
        built = build()
        meta = dict(built.to_metadata())
        meta.setdefault("fingerprint", getattr(built, "fingerprint", None))
        resolved = {"dim": int(built.weight.shape[0]), "seed": getattr(built, "seed", None)}
        if describe is not None:
            resolved.update(describe(built))
        return built.weight, meta, {key: v for key, v in resolved.items() if v is not None}


def frames_module():
    """:mod:`hafcls.frames`, imported on use: only the fixed-frame heads need it."""
    import hafcls.frames as frames

    return frames
