"""Backbone weights from local checkpoints that are not plain timm state dicts.

MoCo-v2 checkpoints (including PASS's 800-epoch ResNet-50 that tieredImageNet-H runs start from,
docs/haframe.md) are saved by the MoCo training script as
``{"epoch", "arch", "state_dict", "optimizer"}`` where ``state_dict`` is the whole MoCo model
wrapped in DistributedDataParallel:

- ``module.encoder_q.<torchvision ResNet name>``: the query encoder, the one to keep;
- ``module.encoder_q.fc.*``: its projection head (an MLP ``fc.0``/``fc.2`` in v2), dropped;
- ``module.encoder_k.*``, ``module.queue``, ``module.queue_ptr``: the momentum encoder and the
  negatives queue, dropped.

torchvision's ResNet names (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``) are timm's
``resnet*`` names, so the query encoder maps onto ``timm.create_model("resnet50")`` by stripping
the prefix. Missing and unexpected keys are logged and returned (:class:`WeightsReport`); a
checkpoint of which no tensor fits the model is an error. Files are read with
``torch.load(weights_only=True)`` (or safetensors): no code runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hafcls.errors import HafclsError

log = logging.getLogger(__name__)

MOCO_PREFIXES = ("module.encoder_q.", "encoder_q.")
MOCO_HEAD = "fc."  # the projection head of the query encoder
_WRAPPERS = ("state_dict", "model", "module")


@dataclass
class WeightsReport:
    """What a weights file gave a model: loaded, missing and unexpected keys, dropped entries."""

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys):
            return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

        parts = [f"{len(self.loaded)} tensors loaded from {self.source} ({self.layout})"]
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped ({few(self.dropped)})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing in the file ({few(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({few(self.unexpected)})")
        return "; ".join(parts)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict stored in a ``.safetensors`` or torch file (tensors and plain data only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file, a foreign format, or a pickle that runs code
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise HafclsError(
            f"Cannot read the weights file {path} ({type(err).__name__}: {first}).",
            "give a .safetensors file or a torch state dict / checkpoint saved with torch.save.",
        ) from None
    if not isinstance(obj, dict):
        raise HafclsError(f"{path} does not hold a state dict.",
                          "give a state dict or a checkpoint with a 'state_dict' entry.")
    return obj


def state_dict_of(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the dict itself or its ``state_dict``/``model`` entry."""
    for key in _WRAPPERS:
        inner = checkpoint.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            checkpoint = inner
            break
    return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def is_moco(state: dict) -> bool:
    """Whether a state dict holds a MoCo query encoder (``[module.]encoder_q.*`` keys)."""
    return any(k.startswith(MOCO_PREFIXES) for k in state)


def map_moco(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(encoder weights under timm/torchvision ResNet names, dropped keys)``."""
    mapped, dropped = {}, []
    for key, value in state.items():
        prefix = next((p for p in MOCO_PREFIXES if key.startswith(p)), None)
        name = key[len(prefix):] if prefix else None
        if name is None or name.startswith(MOCO_HEAD):
            dropped.append(key)  # key encoder, queue, projection head
        else:
            mapped[name] = value
    return mapped, dropped


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, layout: str,
              dropped: list[str] | None = None) -> WeightsReport:
    """Copy the tensors of ``state`` into ``model`` by name; report what matched.

    A shape mismatch or a state dict of which nothing matches is an error; missing and
    unexpected keys are logged (a warning) and returned.
    """
    own = model.state_dict()
    report = WeightsReport(source, layout, dropped=list(dropped or []))
    report.unexpected = sorted(k for k in state if k not in own)
    report.missing = sorted(k for k in own if k not in state)
    bad = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in state
           if k in own and state[k].shape != own[k].shape]
    if bad:
        k, got, want = bad[0]
        raise HafclsError(
            f"{source}: {len(bad)} tensor(s) have the wrong shape for {type(model).__name__}, "
            f"e.g. {k!r} is {got} in the file and {want} in the model.",
            "pass the architecture the checkpoint was trained with (PASS MoCo-v2: resnet50).",
        )
    report.loaded = sorted(k for k in state if k in own)
    if not report.loaded:
        raise HafclsError(
            f"No tensor of {source} matches {type(model).__name__} (file keys such as "
            f"{', '.join(sorted(state)[:3]) or 'none'}).",
            "pass a checkpoint of this architecture (a MoCo ResNet goes with timm 'resnet50').",
        )
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    (log.warning if report.missing or report.unexpected else log.info)(report.summary())
    return report


def load_moco_checkpoint(model: nn.Module, path: str | os.PathLike) -> WeightsReport:
    """Load the query encoder of a MoCo(-v2) checkpoint into a timm ResNet."""
    state = state_dict_of(read_checkpoint(path))
    if not is_moco(state):
        raise HafclsError(f"{path} has no MoCo query encoder (no 'module.encoder_q.*' keys).",
                          "pass it as an ordinary weights file instead.")
    mapped, dropped = map_moco(state)
    return load_into(model, mapped, str(path), "MoCo encoder_q", dropped)


def file_is_moco(path: str | os.PathLike) -> bool:
    """Whether a weights file is a MoCo checkpoint; unreadable files answer False (the ordinary
    loader then reports them)."""
    try:
        return is_moco(state_dict_of(read_checkpoint(path)))
    except HafclsError:
        return False
