"""FGVC-Aircraft 2013b: official splits, variant labels, the 20-pixel copyright banner cropped.

Layout (the official tarball): ``fgvc-aircraft-2013b/data/`` with ``images/<id>.jpg`` and
``images_variant_<split>.txt`` (lines ``<image id> <variant>``; variants may contain spaces).
The label files are read by :mod:`hafcls.hierarchy.sources.fgvc_aircraft`, which also builds the
manufacturer -> family -> variant tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from hafcls.data.base import (
    ImageFileDataset,
    check_split,
    locate_or_download,
    map_labels,
    resolve_hierarchy,
)
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.errors import HafclsError
from hafcls.hierarchy import Hierarchy
from hafcls.hierarchy.sources.fgvc_aircraft import (
    LAYOUT,
    fgvc_aircraft,
    find_fgvc_dir,
    read_image_labels,
)
from hafcls.validation import Option

URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
BANNER_PIXELS = 20
SPLITS = ("train", "val", "trainval", "test")


def locate_fgvc(root: str | os.PathLike, download: bool = False) -> Path:
    """The ``data`` folder of FGVC-Aircraft under ``root``; fetched first when ``download``."""
    # the archive publishes no checksum; the extracted files are validated when read
    return locate_or_download(root, find_fgvc_dir, name="FGVC-Aircraft", layout=LAYOUT,
                              url=URL, md5=None, download=download)


class CropBottom:
    """Remove the bottom ``pixels`` rows (FGVC-Aircraft's copyright banner)."""

    def __init__(self, pixels: int = BANNER_PIXELS):
        self.pixels = int(pixels)

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if self.pixels <= 0:
            return img
        return img.crop((0, 0, w, max(1, h - self.pixels)))

    def __repr__(self) -> str:
        return f"CropBottom(pixels={self.pixels})"


class FGVCAircraft(ImageFileDataset):
    """FGVC-Aircraft split ``"train"``, ``"val"``, ``"trainval"`` or ``"test"`` (variants).

    Parameters
    ----------
    root:
        A folder holding ``fgvc-aircraft-2013b/`` (or that folder, or its ``data/`` folder).
    hierarchy:
        A user tree whose classes include every variant; default the dataset's own
        manufacturer -> family -> variant tree (classes in ``variants.txt`` order).
    crop_banner:
        Rows removed from the bottom of every image (the 20-pixel banner; 0 keeps it).
    download:
        Fetch and extract the official tarball into ``root`` when it is missing.
    skip_corrupt:
        Skip and count unreadable images instead of raising.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        hierarchy: Hierarchy | None = None,
        transform: Callable | None = None,
        crop_banner: int = BANNER_PIXELS,
        download: bool = False,
        skip_corrupt: bool = False,
    ):
        check_split(split, SPLITS)
        if isinstance(crop_banner, bool) or not isinstance(crop_banner, int) or crop_banner < 0:
            raise HafclsError(f"crop_banner must be an int >= 0, got {crop_banner!r}.",
                              "pass crop_banner=20 (the official banner) or 0.")
        data = locate_fgvc(root, download)
        if not (data / "images").is_dir():
            raise HafclsError(f"The FGVC-Aircraft images folder {data / 'images'} is missing.",
                              f"expected {LAYOUT}; re-extract the archive.")
        h = fgvc_aircraft(data) if hierarchy is None else hierarchy
        pairs = read_image_labels(data, "variant", split)
        paths = [data / "images" / f"{image_id}.jpg" for image_id, _ in pairs]
        targets = map_labels([label for _, label in pairs], h,
                             f"FGVC-Aircraft images_variant_{split}.txt")
        super().__init__(paths, targets, h, transform, skip_corrupt,
                         crop=CropBottom(crop_banner) if crop_banner else None)
        self.split = split
        self.data_dir = data
        self.image_ids = [image_id for image_id, _ in pairs]


@register_dataset("fgvc-aircraft", image_size=224, aliases=("fgvc", "aircraft"),
                  options=(Option("crop_banner", int, 0, None),),
                  help="FGVC-Aircraft 2013b, official splits, 100 variants / 70 families / "
                       "30 manufacturers.")
def build_fgvc_aircraft(req: DatasetRequest):
    from hafcls.hierarchy.sources.fgvc_aircraft import LAYOUT, fgvc_aircraft

    data = locate_fgvc(req.need_dir("fgvc-aircraft", LAYOUT), req.download)
    h = fgvc_aircraft(data) if req.hierarchy is None else resolve_hierarchy(req.hierarchy)
    opts = {"crop_banner": req.options.get("crop_banner", BANNER_PIXELS),
            "skip_corrupt": req.options.get("skip_corrupt", False)}
    train, val, test = (FGVCAircraft(data, split, h, req.transform(split), **opts)
                        for split in ("train", "val", "test"))
    return h, train, val, test, {"crop_banner": opts["crop_banner"]}
