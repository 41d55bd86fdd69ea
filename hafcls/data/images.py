"""Safe image loading: a damaged file raises :class:`CorruptImageError`, or is skipped and counted.

Large image collections (iNaturalist, user folders) often hold a few zero-byte, truncated or
non-image files. :func:`load_rgb` decodes the whole file up front, so a damaged file fails here
with the file named, not somewhere inside a transform. A dataset built with ``skip_corrupt=True``
returns :data:`SKIPPED` for such a file and increments a :class:`CorruptCounter`;
:func:`collate_skip_corrupt` drops those entries from the batch. The counter lives in shared
memory, so counts made inside DataLoader worker processes are visible in the main process.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import default_collate, get_worker_info

from hafcls.errors import HafclsError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: What a dataset with ``skip_corrupt=True`` returns for an unreadable image.
SKIPPED = None

_MAX_WORKER_SLOTS = 256


class CorruptImageError(HafclsError):
    """An image file that cannot be decoded (empty, truncated, not an image).

    Raised inside a DataLoader worker, torch re-creates the exception in the main process from
    one string holding the worker's traceback; that string is parsed back into the original
    problem, fix and path so the user sees the one-paragraph message, not a traceback.
    """

    def __init__(self, problem: str, fix: str | None = None, path: str | None = None):
        if fix is None and path is None and "Original Traceback" in problem:
            problem, fix, path = _parse_worker_message(problem)
        super().__init__(problem, fix)
        self.path = path


def _parse_worker_message(text: str) -> tuple[str, str | None, str | None]:
    marker = f"{CorruptImageError.__name__}: "
    start = text.rfind(marker)
    if start < 0:
        return text, None, None
    message = text[start + len(marker):].strip()
    problem, _, fix = message.partition(" Fix: ")
    found = re.match(r"Image file (.+?) (is empty|cannot be (?:decoded|converted)|does not exist)",
                     problem)
    return problem, (fix or None), (found.group(1) if found else None)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image as RGB.

    Raises :class:`CorruptImageError` naming the file when it is empty, truncated or not an
    image (PIL decodes lazily, so the pixels are loaded here to catch truncation).
    """
    path = Path(path)
    fix = ("delete or re-download the file, or skip unreadable images and count them "
           "(--skip-corrupt on the command line, skip_corrupt=True in Python).")
    try:
        if path.stat().st_size == 0:
            raise CorruptImageError(f"Image file {path} is empty (0 bytes).", fix, str(path))
        with Image.open(path) as img:
            img.load()
            return to_rgb(img, path)
    except (CorruptImageError, UnsupportedImageModeError):
        raise
    except FileNotFoundError:
        raise CorruptImageError(
            f"Image file {path} does not exist.",
            "check that the dataset was extracted completely.",
            str(path),
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as err:
        # PIL reports truncation and bad headers as OSError / SyntaxError / ValueError
        raise CorruptImageError(
            f"Image file {path} cannot be decoded ({type(err).__name__}: {err}).", fix, str(path)
        ) from None


#: What transparent pixels are shown against (the usual page background of such images)
ALPHA_BACKGROUND = (255, 255, 255)
_HIGH_BYTE_MODES = ("I;16", "I;16B", "I;16L", "I;16N")   # 16-bit grey: keep the top 8 bits
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_PLAIN_MODES = ("RGB", "L", "1", "YCbCr", "P")


class UnsupportedImageModeError(CorruptImageError):
    """An image whose pixel format cannot be mapped to 8-bit RGB without guessing (skipped and
    counted like a damaged file under ``skip_corrupt``, else refused naming the file)."""

    def __init__(self, problem: str, fix: str | None = None, path: str | None = None):
        super().__init__(problem, fix, path)


def to_rgb(img: Image.Image, path: str | os.PathLike = "the image") -> Image.Image:
    """8-bit RGB from any mode PIL decodes, converted by a fixed rule, never guessed.

    - 16-bit grey (``I;16*``): the full 0..65535 range maps to 0..255 (PIL's own ``convert``
      would clip everything above 255 to white);
    - 32-bit integer grey (``I``): accepted when its values lie in 0..65535 (16-bit PNGs
      decode to it), scaled the same way; other ranges and float images (``F``) are refused;
    - CMYK: through the embedded ICC profile when there is one, else PIL's conversion;
    - transparency (``RGBA``, ``LA``, ``PA``, palettes with a transparent entry): composited
      over :data:`ALPHA_BACKGROUND` (dropping alpha would show whatever colour the transparent
      pixels happen to store);
    - ``RGB``, ``L``, ``1``, ``P``, ``YCbCr``: PIL's conversion. Anything else is refused.
    """
    import numpy as np

    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _HIGH_BYTE_MODES or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise UnsupportedImageModeError(
                f"Image file {path} cannot be converted to RGB: 32-bit integer values "
                f"{arr.min()}..{arr.max()} have no known 8-bit brightness.",
                "convert it to 8-bit (or 16-bit) greyscale or RGB first.", str(path))
        grey = Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "CMYK":
        profile = img.info.get("icc_profile")
        if profile:
            import io

            from PIL import ImageCms

            try:
                source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
                return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"),
                                                 outputMode="RGB")
            except (ImageCms.PyCMSError, OSError):
                pass  # an unusable profile: PIL's plain conversion below
        return img.convert("RGB")
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _PLAIN_MODES:
        return img.convert("RGB")
    raise UnsupportedImageModeError(
        f"Image file {path} cannot be converted to RGB: pixel mode {mode!r} has no fixed "
        "conversion to 8-bit RGB.",
        "convert it to 8-bit RGB or greyscale first (e.g. PIL: img.convert('RGB') if that "
        "is right for your data).", str(path))


class CorruptCounter:
    """Number of skipped images, summed over the main process and DataLoader workers.

    Each process increments its own slot of a shared-memory tensor (no lost updates between
    workers); :attr:`value` sums the slots. Under DDP every rank has its own counter: all-reduce
    :attr:`value` to get the global count.
    """

    def __init__(self):
        self._slots = torch.zeros(_MAX_WORKER_SLOTS + 1, dtype=torch.int64).share_memory_()

    def increment(self) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % _MAX_WORKER_SLOTS
        self._slots[slot] += 1

    @property
    def value(self) -> int:
        return int(self._slots.sum())

    def reset(self) -> None:
        self._slots.zero_()

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"CorruptCounter({self.value})"


class SafeImageLoader:
    """Callable ``loader(path) -> PIL.Image | SKIPPED``.

    With ``skip_corrupt=False`` (strict) a damaged file raises :class:`CorruptImageError`
    (a :class:`~hafcls.errors.HafclsError`); with ``skip_corrupt=True`` it is counted in
    :attr:`counter`, a warning names it, and :data:`SKIPPED` is returned.
    """

    def __init__(self, skip_corrupt: bool = False):
        self.skip_corrupt = bool(skip_corrupt)
        self.counter = CorruptCounter()

    @property
    def num_skipped(self) -> int:
        return self.counter.value

    def __call__(self, path: str | os.PathLike) -> Image.Image | None:
        try:
            return load_rgb(path)
        except CorruptImageError as err:
            if not self.skip_corrupt:
                raise
            self.counter.increment()
            warnings.warn(f"Skipping an unreadable image: {err.problem}", stacklevel=2)
            return SKIPPED


def collate_skip_corrupt(batch):
    """``default_collate`` after dropping the :data:`SKIPPED` entries of a batch.

    Returns ``None`` when every sample of the batch was skipped; a training loop using this
    collate function should ``continue`` on ``None``.
    """
    kept = [b for b in batch if b is not SKIPPED]
    if not kept:
        return None
    return default_collate(kept)
