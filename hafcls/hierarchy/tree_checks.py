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
        if len(parts) != 2:
            raise HafclsError(
                f"{path}, line {lineno}: expected 'parent child', got {line[:80]!r}.",
                "write exactly two whitespace-separated ids per line.",
            )
        edges.append((parts[0], parts[1]))
    if not edges:
        raise HafclsError(f"{path} holds no edges.", "write one 'parent child' pair per line.")
    return edges


def check_hierarchy_dict(data, format_name: str) -> None:
    """Refuse a mapping that is not a hafcls hierarchy (before any edge is read)."""
    if not isinstance(data, Mapping) or data.get("format") != format_name:
        raise HafclsError(
            "This is not a hafcls hierarchy file (no \"format\": \"hafcls-hierarchy\").",
            "write it with Hierarchy.to_json or `hafcls hierarchy build`, or load an is-a "
            "edge list with Hierarchy.from_isa_file.",
        )
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
