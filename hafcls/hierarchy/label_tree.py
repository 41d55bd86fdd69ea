"""The label tree: a rooted ``networkx.DiGraph`` (edges parent -> child) plus the ordered classes.

Node ids are strings. Every class is one node, usually a leaf, but a class may also sit at an
internal node (WordNet class sets such as ImageNet-21k have such classes). Only the nodes on a path
from the root to some class are kept: other branches cannot change any distance, and dropping
them keeps every array here proportional to the classes actually used.

On construction the tree is indexed into flat numpy arrays (parent index, depth, each class's
ancestor at every depth), so that distances, frames and metrics are vectorised over classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from hafcls.errors import HafclsError
from hafcls.hierarchy.tree_checks import (
    check_classes,
    check_hierarchy_dict,
    check_tree,
    parse_isa_text,
)
from hafcls.validation import read_user_json, read_user_text

FORMAT = "hafcls-hierarchy"
FORMAT_VERSION = 1


class Hierarchy:
    """A rooted label tree with an ordered list of classes (the model's output order).

    Parameters
    ----------
    graph:
        Directed tree, edges parent -> child. Node ids are converted to ``str``.
    classes:
        Class node ids in output order. Defaults to the leaves in sorted order.
    names:
        Optional human-readable name per node (WordNet lemma, taxon name, ...).
    meta:
        Free-form build options (source, DAG-to-tree rule, pruning, ...) kept in the JSON file.
    """

    def __init__(
        self,
        graph: nx.DiGraph,
        classes: Sequence[Hashable] | None = None,
        names: Mapping[Hashable, str] | None = None,
        meta: Mapping | None = None,
    ):
        graph = nx.relabel_nodes(graph, {n: str(n) for n in graph.nodes}, copy=True)
        check_tree(graph)
        root = next(n for n, deg in graph.in_degree() if deg == 0)
        if classes is None:
            classes = sorted(n for n in graph.nodes if graph.out_degree(n) == 0)
        classes = [str(c) for c in classes]
        check_classes(graph, classes)

        keep = set()
        for c in classes:
            keep.add(c)
            keep.update(nx.ancestors(graph, c))
        self._graph = graph.subgraph(keep).copy()
        self._root = root
        self._classes = list(classes)
        self._names = {str(k): str(v) for k, v in (names or {}).items() if str(k) in keep}
        self.meta = dict(meta or {})
        self._index()

    # ------------------------------------------------------------------ indexing
    def _index(self) -> None:
        g = self._graph
        order = [self._root, *(v for _, v in nx.bfs_edges(g, self._root))]
        self._nodes = order
        self._node_index = {n: i for i, n in enumerate(order)}
        parents = np.full(len(order), -1, dtype=np.int64)
        depths = np.zeros(len(order), dtype=np.int64)
        for i, n in enumerate(order[1:], start=1):
            p = self._node_index[next(iter(g.predecessors(n)))]
            parents[i] = p
            depths[i] = depths[p] + 1  # BFS order: the parent is already set
        self._parents = parents
        self._depths = depths
        self._class_nodes = np.array([self._node_index[c] for c in self._classes], dtype=np.int64)
        self._class_index = {c: i for i, c in enumerate(self._classes)}
        self._height = int(depths[self._class_nodes].max())

        # ancestor at every depth 0..H; a class shallower than t repeats its own node, which can
        # never equal another class's real ancestor at depth t (that one has depth t).
        anc = np.empty((len(self._classes), self._height + 1), dtype=np.int64)
        cur = self._class_nodes.copy()
        for t in range(self._height, -1, -1):
            deeper = depths[cur] > t
            cur = np.where(deeper, parents[cur], cur)
            anc[:, t] = np.where(depths[cur] == t, cur, self._class_nodes)
        # a class shallower than t: its own node at depth >= its depth
        self._ancestors = anc

    # ------------------------------------------------------------------ basic properties
    @property
    def graph(self) -> nx.DiGraph:
        """The tree (edges parent -> child), restricted to nodes on root-to-class paths."""
        return self._graph

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self._classes)

    @property
    def root(self) -> str:
        return self._root

    @property
    def height(self) -> int:
        """Depth (edges from the root) of the deepest class."""
        return self._height

    @property
    def nodes(self) -> list[str]:
        """All node ids in breadth-first order (root first); the index used by the arrays."""
        return list(self._nodes)

    @property
    def num_nodes(self) -> int:
        return len(self._nodes)

    @property
    def parents(self) -> np.ndarray:
        """Parent index of every node in :attr:`nodes` order, -1 for the root."""
        return self._parents

    @property
    def node_depths(self) -> np.ndarray:
        return self._depths

    @property
    def class_nodes(self) -> np.ndarray:
        """Index into :attr:`nodes` of each class, in class order."""
        return self._class_nodes

    @property
    def ancestor_matrix(self) -> np.ndarray:
        """``K x (H+1)`` node indices: each class's ancestor at depth t (its own node below it)."""
        return self._ancestors

    @property
    def names(self) -> dict[str, str]:
        return dict(self._names)

    def name(self, node: Hashable) -> str:
        """Human-readable name of a node (falls back to the node id)."""
        return self._names.get(str(node), str(node))

    @property
    def class_names(self) -> list[str]:
        return [self.name(c) for c in self._classes]

    def node_index(self, node: Hashable) -> int:
        try:
            return self._node_index[str(node)]
        except KeyError:
            raise HafclsError(
                f"Node {node!r} is not in the hierarchy.",
                "use one of the ids in Hierarchy.nodes (names are not ids).",
            ) from None

    def class_index(self, cls: Hashable) -> int:
        try:
            return self._class_index[str(cls)]
        except KeyError:
            raise HafclsError(
                f"Class {cls!r} is not one of the hierarchy's {self.num_classes} classes.",
                "check the class id, or build the hierarchy with this class in `classes`.",
            ) from None

    def depth(self, node: Hashable) -> int:
        return int(self._depths[self.node_index(node)])

    def parent(self, node: Hashable) -> str | None:
        p = self._parents[self.node_index(node)]
        return None if p < 0 else self._nodes[p]

    def path(self, node: Hashable) -> list[str]:
        """Nodes from the root down to ``node``, both included."""
        out, i = [], self.node_index(node)
        while i >= 0:
            out.append(self._nodes[i])
            i = self._parents[i]
        return out[::-1]

    def ancestors(self, node: Hashable) -> list[str]:
        """Proper ancestors of ``node``, root first."""
        return self.path(node)[:-1]

    def lca(self, a: Hashable, b: Hashable) -> str:
        """Lowest common ancestor of two nodes (class ids are node ids)."""
        pa, pb = self.path(a), self.path(b)
        k = 0
        while k < min(len(pa), len(pb)) and pa[k] == pb[k]:
            k += 1
        return pa[k - 1]

    def descendant_classes(self, node: Hashable) -> list[int]:
        """Indices of the classes at or below ``node``."""
        i = self.node_index(node)
        t = self._depths[i]
        if t > self._height:
            return []
        return np.flatnonzero(self._ancestors[:, t] == i).tolist()

    # ------------------------------------------------------------------ levels
    def level(self, depth: int) -> np.ndarray:
        """Each class's ancestor at ``depth`` as an index into :meth:`level_nodes` (length K).

        A class shallower than ``depth`` maps to its own node.
        """
        nodes, inverse = self._level(depth)
        return inverse

    def level_nodes(self, depth: int) -> list[str]:
        """The distinct node ids that :meth:`level` indexes into."""
        nodes, _ = self._level(depth)
        return [self._nodes[i] for i in nodes]

    def _level(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= depth <= self._height:
            raise HafclsError(
                f"Depth {depth} is outside this hierarchy (0..{self._height}).",
                f"pick a depth between 0 and {self._height}.",
            )
        nodes, inverse = np.unique(self._ancestors[:, depth], return_inverse=True)
        return nodes, inverse.astype(np.int64)

    def membership(self) -> tuple[np.ndarray, np.ndarray]:
        """Sparse node-class incidence: ``(node_idx, class_idx)`` pairs, one per node on each path.

        Used to sum class probabilities into every node in one vectorised scatter.
        """
        depths = self._depths[self._class_nodes]
        t = np.arange(self._height + 1)
        mask = t[None, :] <= depths[:, None]
        cls = np.broadcast_to(np.arange(self.num_classes)[:, None], mask.shape)[mask]
        return self._ancestors[mask], cls

    # ------------------------------------------------------------------ distances
    def distance_matrix(self, kind: str = "published") -> np.ndarray:
        """K x K class distances (small integers, zero diagonal).

        ``kind="published"``: ``H - depth(LCA)``, H the depth of the deepest class (the distance
        every paper in docs/hierarchies.md uses). ``kind="lca_height"``: height of the LCA's subtree
        (the same for balanced trees, different for unbalanced ones).
        """
        from hafcls.hierarchy.distances import distance_matrix

        return distance_matrix(self, kind)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """SHA-256 over the class order and each node's parent: equal iff distances can be equal
        for the same class order. Stored with frames and checkpoints to refuse a mismatch."""
        h = hashlib.sha256()
        h.update(json.dumps(self._classes).encode())
        edges = sorted((self._nodes[p], n) for n, p in zip(self._nodes, self._parents) if p >= 0)
        h.update(json.dumps(edges).encode())
        return h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hierarchy) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return (
            f"Hierarchy(classes={self.num_classes}, nodes={self.num_nodes}, "
            f"height={self.height}, root={self.root!r})"
        )

    def summary(self) -> str:
        """A short readable description: sizes, classes per depth, distance histogram."""
        cdepth = Counter(self._depths[self._class_nodes].tolist())
        ndepth = Counter(self._depths.tolist())
        lines = [
            "Hierarchy" + (f" {self.meta['name']!r}" if self.meta.get("name") else ""),
            f"  classes: {self.num_classes}   nodes: {self.num_nodes}   height: {self.height}"
            f"   root: {self.name(self.root)}",
            f"  fingerprint: {self.fingerprint()}",
            "  depth  nodes  classes",
        ]
        for t in range(int(self._depths.max()) + 1):
            lines.append(f"  {t:5d}  {ndepth.get(t, 0):5d}  {cdepth.get(t, 0):7d}")
        lines.append("  distance histogram over class pairs (published distance):")
        for v, c in enumerate(self._distance_histogram()):
            if c:
                lines.append(f"  {v:5d}  {c}")
        examples = ", ".join(self.class_names[:5])
        lines.append(f"  first classes: {examples}{', ...' if self.num_classes > 5 else ''}")
        return "\n".join(lines)

    def _distance_histogram(self) -> np.ndarray:
        """Number of class pairs at each published distance ``H - depth(LCA)``, from per-depth
        ancestor counts in O(K x H) memory (no K x K matrix): the pairs sharing their ancestor
        at depth t are sum_v C(n_v, 2) over that depth's ancestors v."""
        k, h = self.num_classes, self.height
        sharing = np.zeros(h + 2, dtype=np.int64)   # pairs whose LCA depth is >= t
        sharing[0] = k * (k - 1) // 2
        for t in range(1, h + 1):
            counts = np.unique(self._ancestors[:, t], return_counts=True)[1].astype(np.int64)
            sharing[t] = int((counts * (counts - 1) // 2).sum())
        at_depth = sharing[:-1] - sharing[1:]         # pairs whose LCA depth is exactly t
        return at_depth[::-1].copy()                   # index H - t: the published distance

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[Hashable, Hashable]],
        classes: Sequence[Hashable] | None = None,
        names: Mapping[Hashable, str] | None = None,
        meta: Mapping | None = None,
    ) -> Hierarchy:
        """From ``(parent, child)`` pairs."""
        edges = [(str(p), str(c)) for p, c in edges]
        g = nx.DiGraph()
        seen: dict[tuple[str, str], int] = {}
        for i, (p, c) in enumerate(edges):
            if (p, c) in seen:
                raise HafclsError(
                    f"The edge {p!r} -> {c!r} is listed twice (entries {seen[(p, c)] + 1} "
                    f"and {i + 1}).",
                    "remove the duplicate line.",
                )
            seen[(p, c)] = i
            g.add_edge(p, c)
        return cls(g, classes, names, meta)

    @classmethod
    def from_networkx(
        cls, graph: nx.DiGraph, classes: Sequence[Hashable] | None = None, **kw
    ) -> Hierarchy:
        """From a ``networkx.DiGraph`` with edges parent -> child."""
        if not isinstance(graph, nx.DiGraph):
            raise HafclsError(
                f"Expected a networkx.DiGraph, got {type(graph).__name__}.",
                "build a DiGraph with edges parent -> child (nx.DiGraph(edge_list)).",
            )
        return cls(graph, classes, **kw)

    @classmethod
    def from_paths(
        cls, paths: Mapping[Hashable, Sequence[Hashable]], **kw
    ) -> Hierarchy:
        """From ``{class: [root, ..., class]}``; classes keep the mapping's order.

        A path may omit the class itself at the end; it is appended.
        """
        edges: set[tuple[str, str]] = set()
        classes = []
        for c, path in paths.items():
            path = [str(n) for n in path]
            if not path or path[-1] != str(c):
                path.append(str(c))
            classes.append(str(c))
            edges.update(zip(path[:-1], path[1:]))
        if not edges:
            raise HafclsError(
                "The paths give no edges: a hierarchy needs a root above the classes.",
                "give each class its path from the root, e.g. {'cat': ['root', 'animal', 'cat']}.",
            )
        return cls(nx.DiGraph(sorted(edges)), classes, **kw)

    @classmethod
    def from_isa_file(cls, path: str | os.PathLike, classes: Sequence[Hashable] | None = None,
                      **kw) -> Hierarchy:
        """From an is-a file: one ``parent child`` pair per line (whitespace separated).

        Blank lines and lines starting with ``#`` are ignored.
        """
        path = Path(path)
        edges = parse_isa_text(read_user_text(path), path)
        meta = {"source": "isa", "file": path.name, **kw.pop("meta", {})}
        return cls.from_edges(edges, classes, meta=meta, **kw)

    # ------------------------------------------------------------------ json
    def to_dict(self) -> dict:
        edges = [[self._nodes[p], n] for n, p in zip(self._nodes, self._parents) if p >= 0]
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "root": self._root,
            "classes": self._classes,
            "edges": edges,
            "names": self._names,
            "meta": self.meta,
            "fingerprint": self.fingerprint(),
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the documented JSON format atomically (temp file, then rename)."""
        from hafcls.io import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    @classmethod
    def from_dict(cls, data: Mapping) -> Hierarchy:
        check_hierarchy_dict(data, FORMAT, FORMAT_VERSION)
        h = cls.from_edges(
            [tuple(e) for e in data["edges"]],
            data["classes"],
            names=data.get("names") or {},
            meta=data.get("meta") or {},
        )
        stored = data.get("fingerprint")
        if stored and stored != h.fingerprint():
            raise HafclsError(
                "The hierarchy file's fingerprint does not match its contents (it was edited "
                "or is damaged).",
                "remove the \"fingerprint\" entry if the edit was intended, or regenerate the "
                "file.",
            )
        return h

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Hierarchy:
        return cls.from_dict(read_user_json(
            path, fix="fix the file or regenerate it with `hafcls hierarchy build`."))
