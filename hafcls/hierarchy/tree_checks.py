"""Checks that make a graph a label tree, and the parsing of the tree file formats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import networkx as nx

from hafcls.errors import HafclsError


def parse_isa_text(text: str, path: Path) -> list[tuple[str, str]]:
    """``(parent, child)`` pairs of an is-a file; blank lines and ``#`` comments are skipped."""
    edges = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if not edges and _looks_like_header(line):
            raise HafclsError(
                f"{path}, line {lineno}: {line[:80]!r} looks like a header line, not an edge "
                "(it would become a second root).",
                "delete the header line or start it with '#'.")
        if len(parts) != 2:
            sep = next((c for c in ",;|" if c in line), None)
            hint = (f" (ids separated by {sep!r}: an is-a file separates them by whitespace)"
                    if sep and len(line.split(sep)) == 2 else "")
            raise HafclsError(
                f"{path}, line {lineno}: expected 'parent child', got {line[:80]!r}{hint}.",
                "write exactly two whitespace-separated ids per line.",
            )
        edges.append((parts[0], parts[1]))
    if not edges:
        raise HafclsError(f"{path} holds no edges.", "write one 'parent child' pair per line.")
    return edges


_HEADER_WORDS = {"parent", "child", "parents", "children", "source", "target", "from", "to",
                 "hypernym", "hyponym", "superclass", "subclass", "id", "node", "label"}


def _looks_like_header(line: str) -> bool:
    words = [w.strip(",;|\t").lower() for w in line.replace(",", " ").split()]
    return len(words) >= 2 and all(w in _HEADER_WORDS for w in words)


def check_hierarchy_dict(data, format_name: str, format_version: int | None = None) -> None:
    """Refuse a mapping that is not a hafcls hierarchy (before any edge is read): the format
    and its version, and JSON types as written (ids are strings: a number or null is refused,
    never turned into a string that may name another node)."""
    if not isinstance(data, Mapping) or data.get("format") != format_name:
        raise HafclsError(
            "This is not a hafcls hierarchy file (no \"format\": \"hafcls-hierarchy\").",
            "write it with Hierarchy.to_json or `hafcls hierarchy build`, or load an is-a "
            "edge list with Hierarchy.from_isa_file.",
        )
    _check_version(data, format_version)
    for key in ("classes", "edges"):
        if not isinstance(data.get(key), list):
            raise HafclsError(
                f"The hierarchy file has no list under {key!r}.",
                "regenerate it with `hafcls hierarchy build`.",
            )
    for key in ("names", "meta"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise HafclsError(
                f"The hierarchy file's {key!r} must be a JSON object (a mapping).",
                "regenerate it with `hafcls hierarchy build`.",
            )
    if any(not isinstance(e, list) or len(e) != 2 for e in data["edges"]):
        raise HafclsError(
            "The hierarchy file's \"edges\" must be [parent, child] pairs.",
            "regenerate it with `hafcls hierarchy build`.",
        )
    _check_ids(data)


def _check_version(data: Mapping, format_version: int | None) -> None:
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise HafclsError(f"The hierarchy file's \"version\" must be a whole number >= 1, got "
                          f"{version!r}.", "regenerate it with `hafcls hierarchy build`.")
    if format_version is not None and version > format_version:
        raise HafclsError(
            f"The hierarchy file has format version {version}; this hafcls reads up to version "
            f"{format_version}.", "upgrade hafcls, or write the file with this version.")


def _check_ids(data: Mapping) -> None:
    def refuse(where: str, value) -> None:
        raise HafclsError(
            f"The hierarchy file's {where} holds {value!r} ({type(value).__name__}); node ids "
            "must be JSON strings.",
            f"quote it (\"{value}\") if it is meant as an id, or regenerate the file.")

    for c in data["classes"]:
        if not isinstance(c, str):
            refuse("\"classes\"", c)
    for edge in data["edges"]:
        for node in edge:
            if not isinstance(node, str):
                refuse("\"edges\"", node)
    for key, name in (data.get("names") or {}).items():
        if not isinstance(name, str):
            raise HafclsError(f"The hierarchy file names node {key!r} with {name!r} "
                              f"({type(name).__name__}); names must be JSON strings.",
                              "quote the name, or regenerate the file.")
    if "root" in data and not isinstance(data["root"], str):
        refuse("\"root\"", data["root"])


def check_tree(g: nx.DiGraph) -> None:
    if g.number_of_nodes() == 0:
        raise HafclsError("The hierarchy is empty.", "give at least one parent -> child edge.")
    loops = list(nx.selfloop_edges(g))
    if loops:
        raise HafclsError(
            f"Node {loops[0][0]!r} is its own parent.", "remove the self-loop edge."
        )
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        chain = " -> ".join([u for u, _ in cycle] + [cycle[-1][1]])
        raise HafclsError(
            f"The hierarchy has a cycle: {chain}.",
            "a label tree needs every edge to point from parent to child; remove one edge of "
            "the cycle.",
        )
    multi = [n for n, d in g.in_degree() if d > 1]
    if multi:
        n = multi[0]
        parents = sorted(g.predecessors(n))
        raise HafclsError(
            f"Node {n!r} has {len(parents)} parents ({', '.join(map(repr, parents[:4]))}); "
            f"{len(multi)} node(s) have more than one.",
            "keep one parent edge per node, or build from WordNet with "
            "hafcls.hierarchy.wordnet(), which resolves multiple hypernyms by a fixed rule.",
        )
    roots = sorted(n for n, d in g.in_degree() if d == 0)
    if len(roots) > 1:
        raise HafclsError(
            f"The hierarchy has {len(roots)} roots ({', '.join(map(repr, roots[:4]))}"
            f"{', ...' if len(roots) > 4 else ''}); a tree has one.",
            "add a common root, e.g. one line 'root X' per top-level node X.",
        )


def check_classes(g: nx.DiGraph, classes: list[str]) -> None:
    if not classes:
        raise HafclsError("The hierarchy has no classes.", "list at least one class node.")
    dup = [c for c, n in Counter(classes).items() if n > 1]
    if dup:
        raise HafclsError(
            f"Class {dup[0]!r} is listed {Counter(classes)[dup[0]]} times "
            f"({len(dup)} duplicated class(es)).",
            "list each class once.",
        )
    missing = [c for c in classes if c not in g]
    if missing:
        raise HafclsError(
            f"{len(missing)} class(es) are not in the tree, e.g. "
            f"{', '.join(map(repr, missing[:3]))}.",
            "add an edge from a parent to each of them, or drop them from the class list.",
        )
