"""Readers for making-better-mistakes' split listings (iNat-2019 and tieredImageNet-H).

HAFrame, HAF and Hier-COS use the train/val/test splits published with "Making Better Mistakes"
(Bertinetto et al., CVPR 2020) as ``splits_inat19.zip`` and ``splits_tiered.zip``. Format (either
the zip archive itself or the folder it extracts to; one enclosing folder is allowed)::

    train/<class folder>.txt     one image file name per line (blank lines ignored)
    val/<class folder>.txt
    test/<class folder>.txt

- iNat-2019: class folders ``nat0000`` ... ``nat1009``, the competition's category ids in order
  (``nat0042`` is category 42, class id ``"42"`` in :func:`hafcls.hierarchy.inaturalist`); the
  splits re-divide the official train+val images.
- tieredImageNet-H: class folders are the 608 WordNet ids (``n01440764``), the class ids of the
  WordNet hierarchies. ``splits_tiered.zip``: train 700 ILSVRC-2012 *train* images per class
  (425,600), val 25 ILSVRC *val* images per class (15,200), test 25 other val images per class
  (15,200). A second listing with 91,200 test images exists; :meth:`SplitListing.summary`
  prints the sizes so a run names the one it used.

Each sample is ``("<class folder>/<file name>", label)`` with ``label`` the class's index in the
hierarchy's class order. The images are expected where the papers' preparation puts them,
``<image root>/<split>/<class folder>/<file name>`` (:meth:`SplitListing.paths`).
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hafcls.data.base import ImageFileDataset
from hafcls.errors import HafclsError

SPLITS = ("train", "val", "test")
FORMAT = ("a folder or zip archive with train/, val/ and test/, each holding one "
          "'<class folder>.txt' per class with one image file name per line "
          "(making-better-mistakes' splits_inat19.zip / splits_tiered.zip)")
_ENTRY = re.compile(r"^(?P<prefix>(?:[^/]+/)?)(?P<split>train|val|test)/(?P<cls>[^/]+)\.txt$")
_INAT_FOLDER = re.compile(r"^nat(\d{4})$")


@dataclass
class SplitListing:
    """The samples of each split: ``(relative image path, label)`` pairs, labels in class order."""

    source: str
    classes: list[str]
    samples: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {split: len(items) for split, items in self.samples.items()}

    def paths(self, image_root: str | os.PathLike, split: str) -> list[tuple[Path, int]]:
        """Absolute image paths of ``split`` under ``image_root/<split>/``."""
        base = Path(image_root) / split
        return [(base / rel, label) for rel, label in self.samples[split]]

    def summary(self) -> str:
        parts = []
        for split, items in self.samples.items():
            present = len({label for _, label in items})
            parts.append(f"{split} {len(items):,} images ({present} classes)")
        return f"{self.source}: " + ", ".join(parts)


# ---------------------------------------------------------------------- raw files
def _zip_entries(path: Path) -> dict[tuple[str, str, str], str]:
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                m = _ENTRY.match(name)
                if m and not name.startswith("__MACOSX/"):
                    out[(m["prefix"], m["split"], m["cls"])] = _decode(zf.read(name), name)
    except zipfile.BadZipFile:
        raise HafclsError(f"{path} is not a valid zip archive.", f"expected {FORMAT}.") from None
    return out


def _folder_entries(path: Path) -> dict[tuple[str, str, str], str]:
    out = {}
    for prefix in ("", *sorted(f"{p.name}/" for p in path.iterdir() if p.is_dir())):
        for split in SPLITS:
            folder = path / prefix / split
            if folder.is_dir():
                for f in folder.glob("*.txt"):
                    out[(prefix, split, f.name[:-4])] = _decode(f.read_bytes(), str(f))
    return out


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HafclsError(f"The listing {name} is not UTF-8 text.", f"expected {FORMAT}.") from None


def read_listing_files(source: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
    """``{split: {class folder: [file names]}}`` of a listing folder or zip archive."""
    path = Path(source).expanduser()
    if path.is_file():
        entries = _zip_entries(path)
    elif path.is_dir():
        entries = _folder_entries(path)
    else:
        raise HafclsError(f"No split listing at {path}.", f"pass {FORMAT}.")
    prefixes = sorted({p for p, _, _ in entries})
    if len(prefixes) > 1:
        raise HafclsError(f"{path} holds several listings ({', '.join(prefixes)}).",
                          "pass the one folder (or archive) to use.")
    found = {s: {} for s in SPLITS}
    for (_, split, cls), text in sorted(entries.items()):
        found[split][cls] = [_check_name(line.strip(), split, cls)
                             for line in text.splitlines() if line.strip()]
    missing = [s for s in SPLITS if not found[s]]
    if missing:
        raise HafclsError(
            f"The split listing {path} has no {', '.join(f'{s}/' for s in missing)} class "
            "files.", f"pass {FORMAT}.")
    return found


def _check_name(name: str, split: str, cls: str) -> str:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts:
        raise HafclsError(f"{split}/{cls}.txt lists {name!r}, not a file name inside the split.",
                          "list image file names relative to their class folder.")
    return "/".join(parts)


# ---------------------------------------------------------------------- with class ids
def read_split_listing(source: str | os.PathLike, class_of_folder: Callable[[str], str],
                       classes: list[str] | None = None) -> SplitListing:
    """Read a listing; ``class_of_folder`` maps a class folder to a class id, ``classes`` (the
    hierarchy's class order) gives labels; without it, the classes are the listing's, sorted."""
    found = read_listing_files(source)
    folders = sorted({f for per in found.values() for f in per})
    ids = {f: class_of_folder(f) for f in folders}
    if classes is None:
        classes = sorted(set(ids.values()), key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(classes)}
    unknown = [f for f in folders if ids[f] not in index]
    if unknown:
        raise HafclsError(
            f"{len(unknown)} class folder(s) of the listing {source} are not classes of the "
            f"hierarchy, e.g. {unknown[0]!r} (class id {ids[unknown[0]]!r}).",
            "use the hierarchy the listing was made for (iNat-2019's 1,010 species, "
            "tieredImageNet-H's 608 WordNet ids).",
        )
    samples = {split: [(f"{folder}/{name}", index[ids[folder]])
                       for folder, names in per.items() for name in names]
               for split, per in found.items()}
    return SplitListing(str(source), list(classes), samples)


def inat_class_id(folder: str) -> str:
    """``nat0042`` -> ``"42"`` (the category id, the class id of the iNaturalist hierarchy)."""
    m = _INAT_FOLDER.match(folder)
    if not m:
        raise HafclsError(f"{folder!r} is not an iNat-2019 class folder (nat0000 ... nat1009).",
                          "pass making-better-mistakes' splits_inat19 listing.")
    return str(int(m.group(1)))


def _wnid(folder: str) -> str:
    if not re.fullmatch(r"n\d{8}", folder):
        raise HafclsError(f"{folder!r} is not a WordNet id class folder (like n01440764).",
                          "pass making-better-mistakes' splits_tiered listing.")
    return folder


def inat2019_listing(source: str | os.PathLike, hierarchy=None) -> SplitListing:
    """making-better-mistakes' iNat-2019 splits; labels in ``hierarchy.classes`` order."""
    return read_split_listing(source, inat_class_id, _classes(hierarchy))


def tiered_listing(source: str | os.PathLike, hierarchy=None) -> SplitListing:
    """making-better-mistakes' tieredImageNet-H splits; labels in ``hierarchy.classes`` order."""
    return read_split_listing(source, _wnid, _classes(hierarchy))


def _classes(hierarchy) -> list[str] | None:
    return None if hierarchy is None else list(hierarchy.classes)


def datasets_from_listing(listing: SplitListing, image_root: Path, hierarchy, req, layout: str,
                          skip_corrupt: bool = False) -> tuple:
    """``(train, val, test)`` image datasets of a split listing, images under
    ``image_root/<split>/`` (``layout`` describes it in errors); the listing's summary goes to
    stderr (the run's log)."""
    for split in SPLITS:
        if not (image_root / split).is_dir():
            raise HafclsError(f"The split listing names {split} images, but {image_root / split} "
                              "does not exist.", f"lay the images out as {layout}.")
    out = []
    for split in SPLITS:
        pairs = listing.paths(image_root, split)
        out.append(ImageFileDataset([p for p, _ in pairs], [label for _, label in pairs],
                                    hierarchy, req.transform(split), skip_corrupt))
    print(f"Split listing {listing.summary()}", file=sys.stderr)
    return tuple(out)


def listing_info(listing: SplitListing, source) -> dict:
    """What a run records about the listing it used (file, sizes, the summary line)."""
    return {"protocol": "split-listing", "splits": str(source), "listing": listing.summary(),
            "listing_sizes": listing.sizes()}
