"""Small-image datasets held in memory as one uint8 tensor and augmented in batches.

Decoding 70,000 Fashion-MNIST images once takes well under a second and 55 MB; after that, a
batch is an index into that tensor. :class:`TensorAugment` applies random crop with zero padding,
horizontal flip, resizing and normalisation to a whole ``N x C x h x w`` batch with a handful of
tensor operations (one gather does crop and flip together), instead of a chain of PIL calls per
image. :class:`InMemoryImageDataset` exposes it through the ordinary ``Dataset`` API:

* ``dataset[i]`` -> ``(float tensor, class index)``, as every other dataset here;
* ``dataset.__getitems__(indices)``, which ``torch.utils.data.DataLoader`` calls with a whole
  batch of sampler indices when a dataset defines it: one vectorised transform per batch.

Random choices come from one 64-bit seed per sample, mixed with SplitMix64: drawn from torch's
global generator for a plain index, or taken from the item for an ``(index, seed)`` pair (the
items of :class:`hafcls.engine.distributed.SeededDataset`), so a sample's augmentation depends
only on its seed, never on which batch or worker loads it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seeds: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of every entry (uint64 in, well-mixed uint64 out), vectorised."""
    z = np.asarray(seeds, dtype=np.uint64) + _GOLDEN  # wraps modulo 2**64, as intended
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def draw_seeds(n: int) -> np.ndarray:
    """``n`` 63-bit seeds from torch's global CPU generator (seeded per item by SeededDataset)."""
    return torch.randint(0, 2**63 - 1, (n,), dtype=torch.int64).numpy().astype(np.uint64)


def _stats(name: str, values, channels: int) -> tuple[float, ...]:
    vals = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]
    if len(vals) == 1:
        vals *= channels
    if channels == 1 and len(vals) == 3:
        vals = vals[:1]  # grayscale data replicated to RGB: the three statistics are equal
    if len(vals) != channels or (name == "std" and min(vals) <= 0):
        positive = " > 0" if name == "std" else ""
        raise HafclsError(f"{name} must have 1 or {channels} value(s){positive}, got {values!r}.",
                          f"pass e.g. {name}=(0.5,).")
    return tuple(vals)


class TensorAugment:
    """Batched transform of uint8 ``N x C x h x w`` tensors into normalised float tensors.

    Parameters
    ----------
    image_size:
        Output side; images are resized (bilinear) after cropping when it differs from ``h``.
    train:
        Random crop (``padding`` zero pixels on each side, then a crop back to ``h x w``) and a
        horizontal flip with probability ``hflip``; evaluation does neither.
    mean, std:
        Normalisation of the ``[0, 1]`` image, one value or one per output channel.
    channels:
        1 keeps grayscale; 3 replicates it (ImageNet-style backbones expect RGB).
    """

    def __init__(self, image_size: int, train: bool, mean, std, channels: int = 3,
                 padding: int = 2, hflip: float = 0.5):
        if channels not in (1, 3):
            raise HafclsError(f"channels must be 1 or 3, got {channels!r}.",
                              "use 1 for grayscale models (in_chans=1), 3 otherwise.")
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise HafclsError(f"padding must be an int >= 0, got {padding!r}.", "use e.g. 2.")
        if not 0.0 <= float(hflip) <= 1.0:
            raise HafclsError(f"hflip must be a probability, got {hflip!r}.", "use 0.5 or 0.")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
                or image_size < 1:
            raise HafclsError(f"image_size must be a positive int, got {image_size!r}.",
                              "use e.g. 28 or 32.")
        self.image_size, self.train, self.channels = int(image_size), bool(train), channels
        self.padding, self.hflip = int(padding), float(hflip)
        self.mean, self.std = _stats("mean", mean, channels), _stats("std", std, channels)
        # (x / 255 - mean) / std as one multiply and one add per pixel (float32, the same
        # arithmetic in the numpy single-image path and the torch batch path)
        std_a = np.array(self.std, dtype=np.float32).reshape(channels, 1, 1)
        self._scale_np = (np.float32(1.0) / (np.float32(255.0) * std_a)).astype(np.float32)
        self._shift_np = (-np.array(self.mean, dtype=np.float32).reshape(channels, 1, 1)
                          / std_a).astype(np.float32)
        self._scale = torch.from_numpy(self._scale_np)[None]
        self._shift = torch.from_numpy(self._shift_np)[None]

    def _params(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = splitmix64(seeds)
        span = np.uint64(2 * self.padding + 1)
        dy = ((z & np.uint64(0xFFFF)) % span).astype(np.int64)
        dx = (((z >> np.uint64(16)) & np.uint64(0xFFFF)) % span).astype(np.int64)
        u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)  # uniform in [0, 1)
        return dy, dx, u < self.hflip

    def params(self, seeds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop offsets ``dy, dx`` in ``[0, 2 * padding]`` and flip flags from per-sample seeds."""
        return tuple(torch.from_numpy(a) for a in self._params(seeds))  # type: ignore[return-value]

    def apply_one(self, image: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """One uint8 ``C x h x w`` image, equal to its row of :meth:`apply` with the same seed.

        Per-item loading (a DataLoader without ``__getitems__``) pays per-call overhead on
        every torch operation; at 28 pixels numpy slicing is several times cheaper.
        """
        c, h, w = image.shape
        if (h, w) != (self.image_size, self.image_size) or c not in (1, self.channels):
            seeds = None if seed is None else np.array([seed], dtype=np.uint64)
            return self.apply(image[None], seeds)[0]
        x = image.numpy()
        if self.train and (self.padding or self.hflip):
            s = draw_seeds(1) if seed is None else np.array([seed], dtype=np.uint64)
            dy, dx, flip = (int(a[0]) for a in self._params(s))
            p = self.padding
            x = np.pad(x, ((0, 0), (p, p), (p, p)))[:, dy:dy + h, dx:dx + w]
            x = x[:, :, ::-1] if flip else x
        out = x.astype(np.float32) * self._scale_np + self._shift_np  # broadcasts 1 -> 3 channels
        return torch.from_numpy(np.ascontiguousarray(out))

    def apply(self, images: torch.Tensor, seeds: np.ndarray | None = None) -> torch.Tensor:
        """Transform a uint8 batch; ``seeds`` (one per image) fix the random choices."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"expected a uint8 N x C x H x W tensor, got {images.dtype} "
                            f"{tuple(images.shape)}")
        n, c, h, w = images.shape
        if c not in (1, self.channels):
            raise HafclsError(f"Cannot turn {c}-channel images into {self.channels} channels.",
                              "use channels=3 for RGB data.")
        x = images
        if self.train and n and (self.padding or self.hflip):
            seeds = draw_seeds(n) if seeds is None else np.asarray(seeds, dtype=np.uint64)
            dy, dx, flip = self.params(seeds)
            p = self.padding
            padded = F.pad(images, (p, p, p, p)) if p else images
            rows = dy[:, None] + torch.arange(h)  # N x h
            cols = torch.where(flip[:, None], dx[:, None] + torch.arange(w - 1, -1, -1),
                               dx[:, None] + torch.arange(w))  # N x w, reversed when flipped
            # one gather over each flattened padded image crops and flips together (3x faster
            # than advanced indexing with broadcast row/column indices)
            flat = (rows[:, :, None] * (w + 2 * p) + cols[:, None, :]).view(n, 1, h * w)
            x = torch.gather(padded.reshape(n, c, -1), 2, flat.expand(n, c, h * w))
            x = x.view(n, c, h, w)
        x = x.float()
        if (h, w) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=self.image_size < min(h, w))
        return (x * self._scale + self._shift).contiguous()  # broadcasting 1 -> 3 channels

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """One ``C x h x w`` image or an ``N x C x h x w`` batch (random draws from torch)."""
        if img.dim() == 3:
            return self.apply_one(img)
        return self.apply(img)

    def __repr__(self) -> str:
        aug = f", padding={self.padding}, hflip={self.hflip}" if self.train else ""
        return (f"TensorAugment(size={self.image_size}, train={self.train}, "
                f"channels={self.channels}{aug}, mean={self.mean}, std={self.std})")


def _split_items(items: Sequence) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices and, for ``(index, seed)`` items, the seeds."""
    if len(items) and isinstance(items[0], tuple):
        idx = np.fromiter((int(i) for i, _ in items), dtype=np.int64, count=len(items))
        seeds = np.fromiter((int(s) % 2**64 for _, s in items), dtype=np.uint64, count=len(items))
        return idx, seeds
    return np.asarray(items, dtype=np.int64).reshape(-1), None


class InMemoryImageDataset(Dataset):
    """``images`` (uint8 ``N x C x h x w``) with class indices in ``hierarchy``'s order.

    With a :class:`TensorAugment` transform, items are float tensors and batches are
    transformed in one go (see the module docstring); any other transform receives a PIL
    image ("L" or "RGB"), the torchvision convention, and runs per item.
    """

    #: Items may be ``(index, seed)`` pairs: the dataset seeds each sample's augmentation itself,
    #: so a wrapper such as SeededDataset can hand it whole batches (``__getitems__``).
    seeded_items = True

    def __init__(self, images: torch.Tensor, targets: np.ndarray, hierarchy: Hierarchy,
                 transform: Callable | None = None, split: str | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 N x C x H x W tensor")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        if len(self.images) != len(self.targets):
            raise ValueError("images and targets differ in length")
        self.hierarchy = hierarchy
        self.transform = transform
        self.split = split

    @property
    def classes(self) -> list[str]:
        return self.hierarchy.classes

    @property
    def num_skipped(self) -> int:
        """Always 0: decoded images in memory cannot be unreadable."""
        return 0

    def reset_skipped(self) -> None:
        """Nothing to reset (kept for the API every dataset shares)."""

    def __len__(self) -> int:
        return len(self.targets)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=self.hierarchy.num_classes)

    def _pil(self, index: int) -> Image.Image:
        arr = self.images[index].numpy()
        return Image.fromarray(arr[0]) if arr.shape[0] == 1 else \
            Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        if self.transform is None:
            return self.images[index], int(self.targets[index])
        if isinstance(self.transform, TensorAugment):
            seed = None if seed is None else int(seed) % 2**64
            x = self.transform.apply_one(self.images[index], seed)
            return x, int(self.targets[index])
        return self.transform(self._pil(index)), int(self.targets[index])

    def __getitems__(self, items: Sequence) -> list:
        """A whole batch of sampler items (ints or ``(index, seed)`` pairs) at once."""
        if not isinstance(self.transform, TensorAugment):
            return [self[i] for i in items]
        idx, seeds = _split_items(items)
        x = self.transform.apply(self.images[torch.from_numpy(idx)], seeds)
        return list(zip(x.unbind(0), self.targets[idx].tolist()))

    def batch(self, indices, seeds: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, targets)`` tensors of ``indices`` without a DataLoader (analyses, tests)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        imgs = self.images[torch.from_numpy(idx)]
        if isinstance(self.transform, TensorAugment):
            imgs = self.transform.apply(imgs, seeds)
        elif self.transform is not None:
            imgs = torch.stack([self.transform(self._pil(i)) for i in idx.tolist()])
        return imgs, torch.from_numpy(self.targets[idx])

    def subset(self, indices, transform=...) -> InMemoryImageDataset:
        """A copy holding only ``indices``; optionally a new transform."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = copy.copy(self)
        out.images = self.images[torch.from_numpy(idx)]
        out.targets = self.targets[idx]
        if transform is not ...:
            out.transform = transform
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
                f"classes={self.hierarchy.num_classes}, shape={tuple(self.images.shape[1:])})")
