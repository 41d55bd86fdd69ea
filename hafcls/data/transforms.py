"""Image transforms following timm / torchvision conventions.

Training: ``RandomResizedCrop`` + horizontal flip for ordinary images; for small images (CIFAR-like,
at most :data:`SMALL_IMAGE_MAX` pixels) the classic ``RandomCrop(padding=size // 8)`` + flip, which
keeps the whole object in view. Evaluation: resize the short side to ``size / crop_pct`` and take
the centre crop (timm's convention; ``crop_pct = 1`` for small images, where cropping would throw
away a large share of a 32-pixel image).

Every pipeline accepts a PIL image, a ``HWC`` uint8 numpy array or a ``CHW`` uint8 tensor and
returns a float32 ``CHW`` tensor normalised with ``mean`` / ``std``. Geometric steps are
torchvision v2 transforms; conversion and normalisation are fused into one step
(:class:`ToNormalizedTensor`), which is what keeps small-image pipelines fast.

:data:`PRESETS` are the papers' own pipelines (:func:`preset_transforms`): reflect padding for
CIFAR, stretch + pad-crop for FGVC-Aircraft, stretch-only evaluation for iNat and tieredImageNet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from hafcls.errors import HafclsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
DEFAULT_CROP_PCT = 0.875  # timm's default for ImageNet-style evaluation
SMALL_IMAGE_MAX = 64  # at or below this size, pad-and-crop replaces RandomResizedCrop

_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
}


def _check_size(image_size) -> int:
    if isinstance(image_size, Sequence) and not isinstance(image_size, str):
        sizes = list(image_size)[-2:]  # accepts timm's (C, H, W) input_size
        if len(sizes) != 2 or sizes[0] != sizes[1]:
            raise HafclsError(
                f"Only square image sizes are supported, got {tuple(image_size)}.",
                "pass a single int such as 224.",
            )
        image_size = sizes[0]
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise HafclsError(
            f"image_size must be a positive int, got {image_size!r}.",
            "pass e.g. image_size=32 for CIFAR-sized data or 224 for ImageNet-sized data.",
        )
    return int(image_size)


def _check_stats(name: str, values) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except TypeError:
        out = (float(values),) * 3
    if len(out) == 1:
        out = out * 3
    if len(out) != 3 or (name == "std" and min(out) <= 0):
        raise HafclsError(
            f"{name} must be three numbers (one per RGB channel){' > 0' if name == 'std' else ''},"
            f" got {values!r}.",
            f"pass e.g. {name}={IMAGENET_MEAN if name == 'mean' else IMAGENET_STD}.",
        )
    return out  # type: ignore[return-value]


def _interpolation(value) -> InterpolationMode:
    if isinstance(value, InterpolationMode):
        return value
    mode = _INTERPOLATIONS.get(str(value).lower())
    if mode is None:
        raise HafclsError(
            f"Unknown interpolation {value!r}.",
            f"use one of {', '.join(_INTERPOLATIONS)}.",
        )
    return mode


class ArrayToPIL:
    """``H x W x 3`` uint8 numpy array -> PIL image; anything else passes through.

    (torchvision v2 transforms leave numpy arrays untouched, which would silently skip the
    augmentation.)"""

    def __call__(self, img):
        if isinstance(img, np.ndarray):
            return Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
        return img

    def __repr__(self) -> str:
        return "ArrayToPIL()"


class ToNormalizedTensor:
    """PIL / uint8 ``CHW`` tensor / float ``CHW`` tensor in [0, 1] -> normalised float32 ``CHW``.

    Equal to ``ToImage + ToDtype(float32, scale=True) + Normalize(mean, std)`` in one step.
    """

    def __init__(self, mean, std):
        self.mean = _check_stats("mean", mean)
        self.std = _check_stats("std", std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img) -> torch.Tensor:
        if isinstance(img, Image.Image):
            arr = np.array(img.convert("RGB") if img.mode != "RGB" else img)
            x = torch.from_numpy(arr).permute(2, 0, 1)
        elif isinstance(img, np.ndarray):
            x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        elif isinstance(img, torch.Tensor):
            x = img.as_subclass(torch.Tensor)
        else:
            raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(img)}")
        if x.dtype == torch.uint8:
            return x.float().div_(255.0).sub_(self._mean).div_(self._std)
        return (x.float() - self._mean) / self._std  # never in place on the caller's tensor

    def __repr__(self) -> str:
        return f"ToNormalizedTensor(mean={self.mean}, std={self.std})"


def build_transforms(
    image_size,
    train: bool,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bilinear",
    crop_pct: float | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    small: bool | None = None,
) -> v2.Compose:
    """The train or eval pipeline for square ``image_size`` inputs.

    Parameters
    ----------
    image_size:
        Output side in pixels (an int, or timm's ``(3, H, W)`` input size).
    train:
        Random augmentation (True) or the deterministic evaluation pipeline (False).
    mean, std:
        Per-channel normalisation applied to the ``[0, 1]`` image.
    interpolation:
        ``"bilinear"``, ``"bicubic"``, ... (or a torchvision ``InterpolationMode``).
    crop_pct:
        Evaluation centre-crop fraction; default 1.0 for small images, else 0.875.
    scale:
        Area range of ``RandomResizedCrop`` (ignored for small images).
    hflip:
        Probability of a horizontal flip during training (0 disables it).
    small:
        Force (True) or forbid (False) the small-image pad-and-crop recipe; by default it is used
        when ``image_size <= 64``.
    """
    size = _check_size(image_size)
    mean, std = _check_stats("mean", mean), _check_stats("std", std)
    interp = _interpolation(interpolation)
    small = size <= SMALL_IMAGE_MAX if small is None else bool(small)
    if crop_pct is None:
        crop_pct = 1.0 if small else DEFAULT_CROP_PCT
    if not 0.0 < float(crop_pct) <= 1.0:
        raise HafclsError(
            f"crop_pct must be in (0, 1], got {crop_pct!r}.",
            "use 0.875 for ImageNet-style evaluation or 1.0 for no crop.",
        )
    if not 0.0 <= float(hflip) <= 1.0:
        raise HafclsError(f"hflip must be a probability, got {hflip!r}.", "use 0.5 or 0.")

    # geometric steps run on the PIL image (several times faster than on tensors at small
    # sizes); one fused step then converts and normalises
    steps: list = [ArrayToPIL()]
    if train:
        if small:
            steps += [
                v2.Resize((size, size), interpolation=interp, antialias=True),
                v2.RandomCrop(size, padding=max(size // 8, 1)),
            ]
        else:
            steps.append(
                v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=interp,
                                     antialias=True)
            )
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=float(hflip)))
    else:
        if small:
            resize = v2.Resize((size, size), interpolation=interp, antialias=True)
        else:
            # short side to size / crop_pct, as timm does (floor, never below the crop)
            resize = v2.Resize(max(size, int(np.floor(size / float(crop_pct)))),
                               interpolation=interp, antialias=True)
        steps += [resize, v2.CenterCrop(size)]
    steps.append(ToNormalizedTensor(mean, std))
    return v2.Compose(steps)


# ---------------------------------------------------------------------- the papers' pipelines
#: transform presets of the HAFrame/HAF recipes (docs/fidelity.md), selected by a recipe's
#: ``transform_preset``; each is ``(train, eval)`` geometry before one fused normalisation
PRESETS = {
    "cifar": "train: 4-px reflect padding + random crop + flip; eval: the image as it is",
    "fgvc": "train: stretch to size x size + random crop with 4-px zero padding + flip; "
            "eval: stretch to size x size (no crop)",
    "stretch": "train: RandomResizedCrop + flip; eval: stretch to size x size (no crop)",
}
PRESET_PADDING = 4


def preset_transforms(name: str, image_size, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      hflip: float = 0.5, interpolation="bilinear") -> v2.Compose:
    """The train or eval pipeline of the preset ``name`` (:data:`PRESETS`).

    ``"cifar"`` (CIFAR-100 from scratch): ``RandomCrop(size, padding=4, padding_mode="reflect")``
    + flip; at evaluation nothing but the normalisation (images are resized only when they are
    not already ``size x size``, which CIFAR's are). ``"fgvc"`` (FGVC-Aircraft):
    ``Resize((size, size))`` (a stretch; the whole aircraft stays in view) ->
    ``RandomCrop(size, padding=4)`` -> flip; eval ``Resize((size, size))``. ``"stretch"``
    (iNat-2019, tieredImageNet-H): ``RandomResizedCrop`` + flip; eval ``Resize((size, size))``
    without a centre crop.
    """
    if name not in PRESETS:
        raise HafclsError(f"Unknown transform preset {name!r}.",
                          f"use one of {', '.join(PRESETS)}.")
    size = _check_size(image_size)
    interp = _interpolation(interpolation)
    if not 0.0 <= float(hflip) <= 1.0:
        raise HafclsError(f"hflip must be a probability, got {hflip!r}.", "use 0.5 or 0.")
    stretch = v2.Resize((size, size), interpolation=interp, antialias=True)
    steps: list = [ArrayToPIL(), stretch]  # a no-op on images already size x size
    if train:
        if name == "cifar":
            steps.append(v2.RandomCrop(size, padding=PRESET_PADDING, padding_mode="reflect"))
        elif name == "fgvc":
            steps.append(v2.RandomCrop(size, padding=PRESET_PADDING))
        else:
            steps[-1] = v2.RandomResizedCrop(size, interpolation=interp, antialias=True)
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=float(hflip)))
    steps.append(ToNormalizedTensor(mean, std))
    return v2.Compose(steps)


def preset_pair(name: str, image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                hflip: float = 0.5, interpolation="bilinear") -> tuple[v2.Compose, v2.Compose]:
    """``(train, eval)`` pipelines of a preset (see :func:`preset_transforms`)."""
    return (preset_transforms(name, image_size, True, mean, std, hflip, interpolation),
            preset_transforms(name, image_size, False, mean, std, hflip, interpolation))


def _data_config(model_or_cfg) -> dict:
    """timm's resolved data config for a model, a HierarchyClassifier or a pretrained cfg."""
    from timm.data import resolve_data_config

    if isinstance(model_or_cfg, Mapping):
        cfg = dict(model_or_cfg)
        # a config already resolved (has input_size) or a timm pretrained_cfg
        return resolve_data_config(args={}, pretrained_cfg=cfg)
    model = getattr(model_or_cfg, "backbone", model_or_cfg)  # HierarchyClassifier -> timm model
    if not isinstance(model, torch.nn.Module):
        raise HafclsError(
            f"Cannot read a data config from a {type(model_or_cfg).__name__}.",
            "pass a timm model, a hafcls model or a timm pretrained_cfg dict.",
        )
    return resolve_data_config(args={}, model=model)


def transforms_for_model(model_or_pretrained_cfg, train: bool, image_size=None, **kwargs):
    """The train/eval pipeline with the backbone's mean, std, interpolation and crop_pct.

    Values come from timm's ``resolve_data_config`` (the backbone's ``pretrained_cfg``).
    ``image_size`` overrides the config's input size (e.g. 32 for CIFAR from scratch); other
    keyword arguments go to :func:`build_transforms` and override the config.
    """
    cfg = _data_config(model_or_pretrained_cfg)
    opts = {
        "mean": cfg.get("mean", IMAGENET_MEAN),
        "std": cfg.get("std", IMAGENET_STD),
        "interpolation": cfg.get("interpolation", "bilinear") or "bilinear",
    }
    size = image_size if image_size is not None else cfg.get("input_size", (3, 224, 224))
    size = _check_size(size)
    if size > SMALL_IMAGE_MAX and cfg.get("crop_pct"):
        opts["crop_pct"] = float(cfg["crop_pct"])
    opts.update(kwargs)
    return build_transforms(size, train, **opts)
