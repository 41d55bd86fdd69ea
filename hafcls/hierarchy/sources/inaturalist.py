"""The iNaturalist taxonomy (kingdom -> phylum -> class -> order -> family -> genus -> species).

Reads the categories of the competitions' COCO-style json: a ``train2019.json``-like file with a
``categories`` list, or a bare list such as ``categories.json``. Each category holds its taxon at
every rank (2019: ``kingdom … genus`` + ``name``; 2021 adds ``specific_epithet`` and
``common_name``). Classes are ordered by category id and their ids are ``str(category id)``;
taxon nodes are identified by their full path (``Plantae/Tracheophyta/…``) so that a name reused
under two parents (a homonym) cannot merge two branches. Names are the taxon names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")
ROOT = "life"


def read_categories(source: str | os.PathLike | Mapping | Sequence) -> list[dict]:
    """The category records from a json path, a loaded json dict, or a list of categories."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise HafclsError(
                f"No iNaturalist json at {path}.",
                "pass the competition's train2019.json (or categories.json).",
            )
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HafclsError(f"{path} is not valid JSON ({err}).", "re-download it.") from None
    cats = source.get("categories") if isinstance(source, Mapping) else source
    if not isinstance(cats, Sequence) or not cats or not all(isinstance(c, Mapping) for c in cats):
        raise HafclsError(
            "The iNaturalist json has no 'categories' list.",
            "pass train2019.json / val2019.json or the categories.json of the release.",
        )
    return [dict(c) for c in cats]


def _species_name(cat: Mapping) -> str:
    if cat.get("genus") and cat.get("specific_epithet"):
        name = f"{cat['genus']} {cat['specific_epithet']}"
    else:
        name = str(cat.get("name", cat["id"]))
    common = cat.get("common_name")
    return f"{name} ({common})" if common else name


def inaturalist(source: str | os.PathLike | Mapping | Sequence) -> Hierarchy:
    """The 7-level taxonomy over the json's categories (1,010 species in iNat-2019)."""
    cats = read_categories(source)
    missing = [(c.get("id"), r) for c in cats for r in ("id", *RANKS) if c.get(r) in (None, "")]
    if missing:
        cid, rank = missing[0]
        raise HafclsError(
            f"Category {cid!r} has no {rank!r}; {len(missing)} missing field(s) in all.",
            f"each category needs 'id' and the ranks {', '.join(RANKS)}.",
        )
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids):
        raise HafclsError("Category ids repeat in the iNaturalist json.", "use the official file.")
    edges: set[tuple[str, str]] = set()
    names = {ROOT: "life"}
    classes = []
    for cat in sorted(cats, key=lambda c: int(c["id"])):
        parent = ROOT
        for rank in RANKS:
            node = f"{parent}/{cat[rank]}" if parent != ROOT else str(cat[rank])
            edges.add((parent, node))
            names[node] = str(cat[rank])
            parent = node
        cls = str(cat["id"])
        edges.add((parent, cls))
        names[cls] = _species_name(cat)
        classes.append(cls)
    return Hierarchy.from_edges(
        sorted(edges), classes, names=names,
        meta={"source": "inaturalist", "ranks": list(RANKS)},
    )
