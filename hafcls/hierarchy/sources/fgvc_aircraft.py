"""FGVC-Aircraft's manufacturer -> family -> variant tree (30 -> 70 -> 100 on the real data).

Built from the dataset's own files in ``fgvc-aircraft-2013b/data``: ``variants.txt`` (class order),
and ``images_<level>_<split>.txt`` (lines ``<image id> <label>``, labels may contain spaces) for the
three levels. Each variant must sit under one family and each family under one manufacturer in
every image; a contradiction is an error. Class ids are variant names; internal nodes are
``manufacturer:<name>`` and ``family:<name>`` (a family can share its name with a variant).
"""

from __future__ import annotations

import os
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy

LEVELS = ("variant", "family", "manufacturer")
SPLITS = ("train", "val", "trainval", "test")
ROOT = "aircraft"
LAYOUT = (
    "the official FGVC-Aircraft 2013b folder: 'fgvc-aircraft-2013b/data' holding variants.txt, "
    "families.txt, manufacturers.txt, images_<variant|family|manufacturer>_<train|val|test>.txt "
    "and images/"
)


def find_fgvc_dir(root: str | os.PathLike) -> Path:
    """The ``data`` folder: ``root`` itself, ``root/data`` or ``root/fgvc-aircraft-2013b/data``."""
    root = Path(root)
    for cand in (root, root / "data", root / "fgvc-aircraft-2013b" / "data"):
        if (cand / "variants.txt").is_file():
            return cand
    raise HafclsError(f"No FGVC-Aircraft data under {root}.", f"expected {LAYOUT}.")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise HafclsError(f"Missing FGVC-Aircraft file {path}.", f"expected {LAYOUT}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HafclsError(f"{path} is not a text file.", "re-extract the archive.") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_image_labels(data_dir: str | os.PathLike, level: str, split: str) -> list[tuple[str, str]]:
    """``(image id, label)`` pairs of ``images_<level>_<split>.txt``."""
    if level not in LEVELS or split not in SPLITS:
        raise HafclsError(
            f"Unknown FGVC-Aircraft level/split {level!r}/{split!r}.",
            f"use a level in {LEVELS} and a split in {SPLITS}.",
        )
    path = Path(data_dir) / f"images_{level}_{split}.txt"
    pairs = []
    for lineno, line in enumerate(_lines(path), start=1):
        image_id, _, label = line.partition(" ")
        if not label.strip():
            raise HafclsError(
                f"{path}, line {lineno}: expected '<image id> <label>', got {line[:60]!r}.",
                "re-extract the archive.",
            )
        pairs.append((image_id, label.strip()))
    return pairs


def fgvc_aircraft(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "val", "test")
                  ) -> Hierarchy:
    """The aircraft tree, checked for consistency over every image of ``splits``."""
    data = find_fgvc_dir(root)
    variants = _lines(data / "variants.txt")
    family_of: dict[str, str] = {}
    maker_of: dict[str, str] = {}
    for split in splits:
        levels = {lv: dict(read_image_labels(data, lv, split)) for lv in LEVELS}
        for image_id, variant in levels["variant"].items():
            family = levels["family"].get(image_id)
            maker = levels["manufacturer"].get(image_id)
            if family is None or maker is None:
                raise HafclsError(
                    f"Image {image_id} of the {split} split has a variant but no "
                    f"{'family' if family is None else 'manufacturer'} label.",
                    "re-extract the archive; the three images_<level>_<split>.txt files must "
                    "list the same images.",
                )
            for child, parent, table, what in (
                (variant, family, family_of, "variant"),
                (family, maker, maker_of, "family"),
            ):
                if table.setdefault(child, parent) != parent:
                    raise HafclsError(
                        f"The labels contradict a tree: {what} {child!r} is under "
                        f"{table[child]!r} and, for image {image_id}, under {parent!r}.",
                        "fix the label files so each variant has one family and each family "
                        "one manufacturer.",
                    )
    unknown = sorted(set(family_of) - set(variants))
    if unknown:
        raise HafclsError(
            f"Variant {unknown[0]!r} is labelled on images but missing from variants.txt.",
            "add it to variants.txt or re-extract the archive.",
        )
    missing = [v for v in variants if v not in family_of]
    if missing:
        raise HafclsError(
            f"Variant {missing[0]!r} from variants.txt has no labelled image, so its family "
            "is unknown.",
            "check that the images_<level>_<split>.txt files are complete.",
        )
    edges = [(ROOT, f"manufacturer:{m}") for m in sorted(set(maker_of.values()))]
    edges += [(f"manufacturer:{m}", f"family:{f}") for f, m in sorted(maker_of.items())]
    edges += [(f"family:{family_of[v]}", v) for v in variants]
    names = {f"manufacturer:{m}": m for m in maker_of.values()}
    names.update({f"family:{f}": f for f in maker_of})
    names[ROOT] = "aircraft"
    return Hierarchy.from_edges(
        edges, variants, names=names,
        meta={"source": "fgvc-aircraft", "name": "fgvc-aircraft", "splits": list(splits)},
    )
