"""The :class:`Method` record and its registry: a head, its options, a loss and a score.

A method is one module under :mod:`hafcls.methods` that registers a factory::

    from hafcls.methods.base import Method, register_method

    @register_method("my-method")
    def my_method(dataset: str | None = None) -> Method:
        return Method(name="my-method", head="linear", loss="ce", build=build_my_loss, ...)

``hafcls.get_method(name, dataset)`` calls the factory with the canonical dataset name, so
per-dataset presets live beside the method (see :mod:`hafcls.methods.haframe`). Formulas and
constants are explained in ``docs/<method>.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.registry import HEADS, METHODS
from hafcls.validation import Option, options_by_name

#: Softmax temperature that turns the cosine logits of the ETF / HUG heads (in [−1, 1]) into
#: usable probabilities: EBV's own temperature, used until the engine's validation fit at the
#: end of training replaces it (stored in the checkpoint, used by CRM, hedging and prediction).
COSINE_TEMPERATURE = 0.07

#: Spellings of the datasets the published presets name (lower case).
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

LossBuilder = Callable[["Method", nn.Module, Any], nn.Module]


def scores_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Class probabilities ``softmax(logits / temperature)`` (the one place): float64 logits
    give float64 probabilities (for CRM), anything else float32."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.softmax(logits.to(dtype) / temperature, dim=1)


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: which head to create and which loss to train it with.

    ``head_kwargs`` go to :func:`hafcls.models.create` (``create(backbone, hierarchy,
    head=m.head, head_kwargs=m.head_kwargs)`` or :meth:`create_model`); ``build_loss`` makes
    the loss for that model with ``build(method, head, hierarchy)``. ``loss_options`` declare the
    types and bounds of ``loss_kwargs`` (the head's own options come from the head registry).
    """

    name: str
    head: str
    loss: str
    head_kwargs: dict = dataclasses.field(default_factory=dict)
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    score_temperature: float = 1.0
    dataset: str | None = None
    description: str = ""
    build: LossBuilder | None = dataclasses.field(default=None, compare=False, repr=False)
    loss_options: tuple[Option, ...] = ()
    needs_head: bool = False        # the loss reads this head's class vectors
    needs_hierarchy: bool = False   # the loss needs the hierarchy (distances, tree)

    def with_options(self, **overrides: Any) -> Method:
        """A copy with some head or loss options changed (e.g. ``alpha=0.3``, ``gamma=1``);
        each value is checked against its declared type and bounds."""
        head_kwargs, loss_kwargs = dict(self.head_kwargs), dict(self.loss_kwargs)
        loss_specs = options_by_name(self.loss_options)
        head_specs = options_by_name(head_options(self.head))
        where = f"method {self.name!r}"
        for key, value in overrides.items():
            if key in loss_kwargs or key in loss_specs:
                spec = loss_specs.get(key)
                loss_kwargs[key] = spec.check(value, where) if spec else value
            elif key in head_kwargs or key in head_specs:
                spec = head_specs.get(key)
                head_kwargs[key] = spec.check(value, where) if spec else value
            else:
                known = sorted({*loss_kwargs, *loss_specs, *head_kwargs, *head_specs})
                raise HafclsError(
                    f"Method {self.name!r} has no option {key!r}.",
                    f"use one of {', '.join(known)}.",
                )
        return dataclasses.replace(self, head_kwargs=head_kwargs, loss_kwargs=loss_kwargs)

    def create_model(self, backbone: str, hierarchy=None, **kwargs: Any):
        """``hafcls.models.create`` with this method's head and head options."""
        from hafcls.models import create

        head_kwargs = {**self.head_kwargs, **kwargs.pop("head_kwargs", {})}
        return create(backbone, hierarchy, head=self.head, head_kwargs=head_kwargs, **kwargs)

    def build_loss(self, model: nn.Module, hierarchy=None) -> nn.Module:
        """The loss module for ``model`` (created with this method's head).

        Losses that keep tensors (frames, distances) hold them as buffers: move the loss to
        the model's device with ``.to(device)``.
        """
        head = getattr(model, "head", model)
        _check_fingerprint(model, hierarchy)
        if self.needs_head and getattr(head, "kind", None) != self.head:
            raise HafclsError(
                f"Method {self.name!r} needs a model with a {self.head!r} head, got "
                f"{getattr(head, 'kind', type(head).__name__)!r}.",
                "create the model with method.create_model(...) or head=method.head.",
            )
        if self.needs_hierarchy and hierarchy is None:
            raise HafclsError(
                f"The {self.name!r} loss needs the hierarchy.", "pass build_loss(model, hierarchy)."
            )
        if self.build is None:
            raise HafclsError(f"Method {self.name!r} has no loss builder.",
                              "register the method with build=<function>.")
        return self.build(self, head, hierarchy)

    def score(self, logits: Tensor) -> Tensor:
        """Class probabilities for evaluation: ``softmax(logits / score_temperature)``."""
        return scores_from_logits(logits, self.score_temperature)


# ---------------------------------------------------------------------- registry
def register_method(name: str, *, aliases: tuple[str, ...] = ()):
    """Decorator registering ``factory(dataset: str | None) -> Method`` under ``name``."""
    return METHODS.register(name, aliases=aliases)


def register_presets(build: Callable[[str, Any], Method], presets: Mapping[str, Any]) -> None:
    """Register ``name -> build(name, value)`` for each preset: the variants of one method that
    differ only in a constant (HXE's α, the soft labels' β, HUG's inter-class energy)."""
    for name, value in presets.items():
        register_method(name)(_preset_factory(build, name, value))


def _preset_factory(build: Callable[[str, Any], Method], name: str, value: Any):
    def factory(dataset: str | None = None) -> Method:
        return build(name, value)

    factory.__name__ = factory.__qualname__ = name.replace("-", "_").replace(".", "")
    return factory


def available_methods() -> list[str]:
    """Names accepted by :func:`get_method`."""
    return METHODS.names()


def canonical_dataset(dataset: str | None) -> str | None:
    """The preset key for a dataset name (lower case, known aliases resolved)."""
    if dataset is None:
        return None
    key = str(dataset).strip().lower()
    return DATASET_ALIASES.get(key, key)


def get_method(name: str, dataset: str | None = None) -> Method:
    """The method ``name`` with its default options for ``dataset`` (presets per dataset)."""
    factory = METHODS.get(name)
    dataset = canonical_dataset(dataset)
    method = factory(dataset)
    return dataclasses.replace(method, name=METHODS.canonical(name), dataset=dataset)


def head_options(head: str) -> tuple[Option, ...]:
    """The declared options of a registered head (empty for an unknown head)."""
    return tuple(getattr(HEADS.get(head), "options", ())) if head in HEADS else ()


# ---------------------------------------------------------------------- helpers
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


def loss_on_hierarchy(loss_cls: type[nn.Module]) -> LossBuilder:
    """The builder of a loss constructed as ``loss_cls(hierarchy, **loss_kwargs)``."""

    def build(method: Method, head, hierarchy) -> nn.Module:
        return loss_cls(hierarchy, **method.loss_kwargs)

    build.__name__ = f"build_{loss_cls.__name__}"
    return build


def number(value) -> float | None:
    """``value`` as a float when it is a real number (not bool), else None."""
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        return float(value)
    return None


def frame_metadata(head) -> Mapping:
    return getattr(head, "frame_meta", {}) or {}
