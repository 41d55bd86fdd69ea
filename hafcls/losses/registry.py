"""Training methods by name: head + head options + loss + loss options, with published defaults.

=============  =========================  ===========================================  ======
method         head (options)             loss (options)                               score T
=============  =========================  ===========================================  ======
``ce``         linear (shape="type1")     cross-entropy (label_smoothing=0)            1
``haframe``    haframe (γ, s_min=paper)   HAFrame: (1−α)·CE + α·L_cos                  1
``etf-dr``     etf                        dot regression                               0.07
``hug-mhe``    hug                        HUG, MHE energy (α = β = 1)                  0.07
``hug-mhs``    hug                        HUG, MHS energy                              0.07
``hug-mgd``    hug                        HUG, MGD energy                              0.07
``soft-labels`` linear (shape="type1")    soft labels, β = 10                          1
``hxe``        linear (shape="type1")     hierarchical CE, α = 0.1                     1
``ebv``        ebv (temperature 0.07)     cross-entropy on cos/0.07                    1
=============  =========================  ===========================================  ======

HAFrame's γ and α per dataset are the paper's (METHODS.md §2): cifar100 γ=2 α=0.4,
fgvc-aircraft γ=1 α=0.5, inat2019 γ=5 α=0.4, tiered-imagenet γ=3 α=0.5. Any other dataset
(``synthetic``, ``folder``, None, ...) gets γ=2, α=0.4, the small-data CIFAR-100 setting.
The learnable-head baselines use HAFrame's type-I head, the head of the paper's CE baseline.
Soft labels' β=10 and HXE's α=0.1 are values inside the ranges the authors swept
(β ∈ 4…30, α ∈ 0.1…0.6), not tuned per dataset.

Scores for evaluation: ``Method.score(logits) = softmax(logits / T)``. Ranking (top-k,
HierDist@k) never depends on T. For the cosine heads (``etf``, ``hug``) logits lie in [−1, 1],
so T = 0.07 (EBV's temperature) gives usable probabilities for CRM and hedging; it is a
convention, not a calibration.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.losses.etf import DotRegressionLoss
from hafcls.losses.haframe import HAFrameLoss
from hafcls.losses.hierarchical import CrossEntropyLoss, HierarchicalCrossEntropy, SoftLabelLoss
from hafcls.losses.hug import HUGLoss

COSINE_TEMPERATURE = 0.07

# (gamma, alpha) of the HAFrame paper per dataset, and the default for any other dataset
HAFRAME_PRESETS: dict[str, tuple[float, float]] = {
    "cifar100": (2.0, 0.4),
    "fgvc-aircraft": (1.0, 0.5),
    "inat2019": (5.0, 0.4),
    "tiered-imagenet": (3.0, 0.5),
}
HAFRAME_DEFAULT = (2.0, 0.4)
DATASET_ALIASES = {
    "cifar-100": "cifar100",
    "fgvc": "fgvc-aircraft",
    "fgvc_aircraft": "fgvc-aircraft",
    "aircraft": "fgvc-aircraft",
    "inat19": "inat2019",
    "inaturalist2019": "inat2019",
    "inat-2019": "inat2019",
    "tiered": "tiered-imagenet",
    "tieredimagenet": "tiered-imagenet",
    "tiered-imagenet-h": "tiered-imagenet",
    "tieredimagenet-h": "tiered-imagenet",
}


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: which head to create and which loss to train it with.

    ``head_kwargs`` go to :func:`hafcls.models.create` (``create(backbone, hierarchy,
    head=m.head, head_kwargs=m.head_kwargs)`` or :meth:`create_model`); ``build_loss`` makes
    the loss for that model.
    """

    name: str
    head: str
    loss: str
    head_kwargs: dict = dataclasses.field(default_factory=dict)
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    score_temperature: float = 1.0
    dataset: str | None = None
    description: str = ""

    def with_options(self, **overrides: Any) -> Method:
        """A copy with some head or loss options changed (e.g. ``alpha=0.3``, ``gamma=1``)."""
        head_kwargs, loss_kwargs = dict(self.head_kwargs), dict(self.loss_kwargs)
        for key, value in overrides.items():
            if key in loss_kwargs:
                loss_kwargs[key] = value
            elif key in head_kwargs or key in _extra_head_options(self.head):
                head_kwargs[key] = value
            else:
                known = sorted({*loss_kwargs, *head_kwargs, *_extra_head_options(self.head)})
                raise HafclsError(
                    f"Method {self.name!r} has no option {key!r}.",
                    f"use one of {', '.join(known)}.",
                )
        return dataclasses.replace(self, head_kwargs=head_kwargs, loss_kwargs=loss_kwargs)

    def create_model(self, backbone: str, hierarchy=None, **kwargs: Any):
        """``hafcls.models.create`` with this method's head and head options."""
        from hafcls.models import create  # same layer; imported on use

        head_kwargs = {**self.head_kwargs, **kwargs.pop("head_kwargs", {})}
        return create(backbone, hierarchy, head=self.head, head_kwargs=head_kwargs, **kwargs)

    def build_loss(self, model: nn.Module, hierarchy=None) -> nn.Module:
        """The loss module for ``model`` (created with this method's head).

        Losses that keep tensors (frames, distances) hold them as buffers: move the loss to
        the model's device with ``.to(device)``.
        """
        head = getattr(model, "head", model)
        _check_fingerprint(model, hierarchy)
        if self.loss in _NEEDS_HEAD and getattr(head, "kind", None) != self.head:
            raise HafclsError(
                f"Method {self.name!r} needs a model with a {self.head!r} head, got "
                f"{getattr(head, 'kind', type(head).__name__)!r}.",
                "create the model with method.create_model(...) or head=method.head.",
            )
        if self.loss in _NEEDS_HIERARCHY and hierarchy is None:
            raise HafclsError(
                f"The {self.name!r} loss needs the hierarchy.", "pass build_loss(model, hierarchy)."
            )
        kw = dict(self.loss_kwargs)
        if self.loss == "ce":
            return CrossEntropyLoss(**kw)
        if self.loss == "haframe":
            return _haframe_loss(head, hierarchy, **kw)
        if self.loss == "dot_regression":
            return DotRegressionLoss(head.class_vectors())
        if self.loss == "hug":
            return HUGLoss(head, **kw)
        if self.loss == "soft_labels":
            return SoftLabelLoss(hierarchy, **kw)
        return HierarchicalCrossEntropy(hierarchy, **kw)

    def score(self, logits: Tensor) -> Tensor:
        """Class probabilities for evaluation: ``softmax(logits / score_temperature)``."""
        return torch.softmax(logits.float() / self.score_temperature, dim=1)


_NEEDS_HEAD = ("haframe", "dot_regression", "hug")
_NEEDS_HIERARCHY = ("soft_labels", "hxe")

_METHODS: dict[str, dict] = {
    "ce": dict(
        head="linear", head_kwargs={"shape": "type1"}, loss="ce",
        loss_kwargs={"label_smoothing": 0.0},
        description="Cross-entropy with a learnable (type-I) linear classifier.",
    ),
    "haframe": dict(
        head="haframe", head_kwargs={"s_min": "paper"}, loss="haframe",
        description="Fixed Hierarchy-Aware Frame, CE + cosine regression (Liang & Davis 2023).",
    ),
    "etf-dr": dict(
        head="etf", loss="dot_regression", score_temperature=COSINE_TEMPERATURE,
        description="Fixed simplex ETF with the dot-regression loss (Yang et al. 2022).",
    ),
    "soft-labels": dict(
        head="linear", head_kwargs={"shape": "type1"}, loss="soft_labels",
        loss_kwargs={"beta": 10.0},
        description="Soft labels from class distances, KL loss (Bertinetto et al. 2020).",
    ),
    "hxe": dict(
        head="linear", head_kwargs={"shape": "type1"}, loss="hxe", loss_kwargs={"alpha": 0.1},
        description="Hierarchical cross-entropy (Bertinetto et al. 2020).",
    ),
    "ebv": dict(
        head="ebv", head_kwargs={"temperature": COSINE_TEMPERATURE}, loss="ce",
        loss_kwargs={"label_smoothing": 0.0},
        description="Fixed equiangular basis vectors, CE on cos/0.07 (Shen et al. 2023).",
    ),
}
for _variant in ("mhe", "mhs", "mgd"):
    _METHODS[f"hug-{_variant}"] = dict(
        head="hug", loss="hug",
        loss_kwargs={"variant": _variant, "alpha": 1.0, "beta": 1.0},
        score_temperature=COSINE_TEMPERATURE,
        description=f"HUG proxies, {_variant.upper()} inter-class energy (Liu et al. 2023).",
    )


def available_methods() -> list[str]:
    """Names accepted by :func:`get_method`."""
    return sorted(_METHODS)


def canonical_dataset(dataset: str | None) -> str | None:
    """The preset key for a dataset name (lower case, known aliases resolved)."""
    if dataset is None:
        return None
    key = str(dataset).strip().lower()
    return DATASET_ALIASES.get(key, key)


def get_method(name: str, dataset: str | None = None) -> Method:
    """The method ``name`` with its default options for ``dataset`` (see module docstring)."""
    if name not in _METHODS:
        raise HafclsError(
            f"Unknown method {name!r}.", f"use one of {', '.join(available_methods())}."
        )
    spec = copy.deepcopy(_METHODS[name])
    dataset = canonical_dataset(dataset)
    if name == "haframe":
        gamma, alpha = HAFRAME_PRESETS.get(dataset, HAFRAME_DEFAULT)
        spec["head_kwargs"]["gamma"] = gamma
        spec["loss_kwargs"] = {"alpha": alpha}
    return Method(name=name, dataset=dataset, **spec)


# ---------------------------------------------------------------------- helpers
def _extra_head_options(head: str) -> tuple[str, ...]:
    from hafcls.models.factory import HEAD_OPTIONS

    return HEAD_OPTIONS.get(head, ())


def _check_fingerprint(model, hierarchy) -> None:
    ours = getattr(model, "fingerprint", None)
    if hierarchy is None or not ours:
        return
    if ours != hierarchy.fingerprint():
        raise HafclsError(
            f"The model was created for hierarchy {ours}, the loss for "
            f"{hierarchy.fingerprint()}.",
            "build the loss with the model's own hierarchy.",
        )


def _haframe_loss(head, hierarchy, alpha: float) -> HAFrameLoss:
    """Targets from the hierarchy and the frame's (γ, s_min) when both are known (exact, and
    K x K never materialised); otherwise the frame's own Gram matrix of unit columns."""
    frame = head.class_vectors()
    meta: Mapping = getattr(head, "frame_meta", {}) or {}
    gamma, s_min = _number(meta.get("gamma")), _number(meta.get("s_min"))
    kind = (meta.get("info") or {}).get("distance", "published")
    if hierarchy is not None and gamma is not None and s_min is not None and kind in (
        "published", "lca_height"
    ):
        distance = hierarchy.distance_matrix(kind)
        return HAFrameLoss.from_distance(distance, gamma, s_min, alpha, frame_weight=frame)
    unit = frame.detach().float()
    unit = unit / unit.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return HAFrameLoss(unit.t() @ unit, alpha, frame_weight=frame)


def _number(value) -> float | None:
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        return float(value)
    return None
