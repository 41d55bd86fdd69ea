"""timm backbones: creation (weights only from a local file unless asked), widths, feature layout.

Every backbone is a timm model created with ``num_classes=0``: ``forward_features`` gives its last
feature map (or token sequence) and ``forward_head(x, pre_logits=True)`` its pooled features.
A head reads one of the two; which one is the head's ``input_kind``:

- ``"pooled"``: ``N x C`` from ``forward_head(..., pre_logits=True)``, C = :func:`feature_width`.
- ``"map"``: the ``N x C x H x W`` map from ``forward_features`` (CNNs only; C =
  :func:`feature_map_channels`). HAFrame's type-II model puts its 1x1 convolution there.
"""

from __future__ import annotations

import difflib
import os
import pickle
import zipfile
from pathlib import Path

import timm
import torch
from torch import nn

from hafcls.errors import HafclsError
from hafcls.models.pretrained import file_is_moco, load_moco_checkpoint

FEATURE_INPUTS = ("auto", "map", "pooled")


def create_backbone(
    name: str,
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    **timm_kwargs,
) -> nn.Module:
    """Create the timm model ``name`` without its classifier (``num_classes=0``).

    Weights come from ``pretrained_file`` when given: a local ``.safetensors``/``.pth``/``.bin``
    state dict of this timm model (loaded by timm with ``weights_only``; torchvision's own ResNet
    files fit timm's ``resnet*`` names, so ``name="resnet50.tv_in1k"`` with torchvision's
    ``resnet50-19c8e357.pth`` gives the papers' ImageNet initialisation and timm's matching
    data config), or a MoCo(-v2) checkpoint (``module.encoder_q.*`` keys, e.g. PASS) whose query
    encoder is mapped onto the ResNet by :mod:`hafcls.models.pretrained`; its report of loaded,
    missing and unexpected keys is kept as ``model.hafcls_weights_report``. ``pretrained=True``
    without a file lets timm download the default weights: an explicit request, never a default.
    """
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise HafclsError(
            f"{name!r} is not a timm model name.{hint}",
            "pick a name from timm.list_models(), e.g. 'resnet50' or 'vit_small_patch16_224'.",
        )
    for key in ("num_classes", "pretrained_cfg_overlay"):
        if key in timm_kwargs:
            raise HafclsError(
                f"{key!r} cannot be passed through to timm here.",
                "give the class count with num_classes=/hierarchy= and a weights file with "
                "pretrained_file=.",
            )
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise HafclsError(
                f"Pretrained weights file {str(path)!r} does not exist.",
                "check the path, or leave pretrained_file unset to start from random weights.",
            )
        if file_is_moco(path):  # MoCo(-v2) checkpoint, e.g. PASS: keep encoder_q, map names
            model = _create(name, False, timm_kwargs)
            model.hafcls_weights_report = load_moco_checkpoint(model, path)
            return model
        # timm resolves 'file' before any hub/url source, so nothing is downloaded
        timm_kwargs["pretrained_cfg_overlay"] = dict(file=str(path.resolve()))
        pretrained = True
    try:
        return _create(name, pretrained, timm_kwargs)
    except HafclsError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as err:
        if pretrained_file is None:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise HafclsError(
            f"Cannot load backbone weights for {name!r} from {pretrained_file} "
            f"({type(err).__name__}: {first[:200]}).",
            "give a .safetensors/.pth state dict of this same timm model, or a MoCo checkpoint "
            "(module.encoder_q.* keys) of a ResNet (pickles that run code are refused), or "
            "leave the pretrained file out.",
        ) from None


def _create(name: str, pretrained: bool, timm_kwargs: dict) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **timm_kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise HafclsError(
            f"The backbone {name!r} does not accept the option(s) "
            f"{', '.join(sorted(timm_kwargs))} ({err}).",
            "drop them from the model options, or check timm's documentation of this model.",
        ) from None


def feature_width(backbone: nn.Module) -> int:
    """Width of the pooled features (``head_hidden_size``, else ``num_features``)."""
    width = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not width:
        raise HafclsError(
            f"{type(backbone).__name__} exposes no feature width (head_hidden_size/num_features).",
            "use a timm model as backbone.",
        )
    return int(width)


def feature_map_channels(backbone: nn.Module) -> int:
    """Channels of the ``forward_features`` map (``num_features``)."""
    return int(backbone.num_features)


def _probe_sizes(backbone: nn.Module, in_chans: int) -> list[tuple[int, int, int]]:
    """Image sizes to try, cheapest first: a ViT's fixed size, 64 px (any CNN), the model's."""
    sizes = []
    img_size = getattr(getattr(backbone, "patch_embed", None), "img_size", None)
    if img_size is not None:  # a ViT built with img_size=... only accepts that size
        sizes.append((img_size, img_size) if isinstance(img_size, int) else tuple(img_size))
    sizes.append((64, 64))
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    if cfg.get("input_size"):
        sizes.append(tuple(cfg["input_size"][1:]))
    sizes.append((224, 224))
    return [(in_chans, *hw) for hw in dict.fromkeys(sizes)]


def detect_feature_input(backbone: nn.Module, in_chans: int = 3) -> str:
    """``"map"`` if ``forward_features`` gives an ``N x C x H x W`` map (CNNs), else ``"pooled"``.

    Decided once, at model creation, by running one zero image through the backbone in eval
    mode (no statistics change): layouts differ across timm families (NHWC maps in Swin and
    MambaOut, token sequences in ViTs) and no attribute says which one a model uses.
    """
    channels = feature_map_channels(backbone)
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    out = None
    try:
        with torch.no_grad():
            for size in _probe_sizes(backbone, in_chans):
                try:
                    out = backbone.forward_features(torch.zeros(1, *size, device=device))
                    break
                except (RuntimeError, AssertionError, ValueError):
                    continue
    finally:
        backbone.train(was_training)
    if out is None:
        raise HafclsError(
            f"Could not run a probe image through {type(backbone).__name__} to find its feature "
            "layout.",
            "pass feature_input='pooled' (or 'map' for a CNN) to hafcls.models.create.",
        )
    if isinstance(out, (list, tuple)):
        return "pooled"
    is_nchw = out.ndim == 4 and out.shape[1] == channels and out.shape[-1] != channels
    return "map" if is_nchw else "pooled"


def resolve_feature_input(backbone: nn.Module, feature_input: str, in_chans: int = 3) -> str:
    """Validate ``feature_input`` ("auto", "map", "pooled") and resolve "auto"."""
    if feature_input not in FEATURE_INPUTS:
        raise HafclsError(
            f"Unknown feature_input {feature_input!r}.",
            f"use one of {', '.join(FEATURE_INPUTS)}.",
        )
    if feature_input == "auto":
        return detect_feature_input(backbone, in_chans)
    return feature_input
