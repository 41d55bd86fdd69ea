"""Orthogonal node subspaces of a label tree (the geometry of Hier-COS, docs/hiercos.md).

Every node of the tree except the root owns one orthonormal direction ``e_n``, so the feature
space has ``d = number of non-root nodes`` coordinates. Class c owns the subspace
``V_c = span{e_n : n ∈ ancestors(c) ∪ {c} ∪ descendants(c)}`` (root excluded) and scores
``s_c(z) = ‖P_c z‖₂``. Classes that share ancestors share coordinates, so the scores follow the
tree by construction.

Classes at internal nodes (WordNet class sets can have them). With the formula above, an internal
class c would contain the subspace of every class c' below it (``V_c' ⊆ V_c``), so c would score
at least as high as c' for *every* z and c' could never be predicted. We therefore give each
internal class one extra coordinate ``c*`` (named ``"<c>::self"``), a pseudo-leaf child of c that
stands for "c itself, none of its children". In this augmented tree every class is a leaf, its
descendants are empty and ``V_c = ancestors(c) ∪ {c} ∪ {c*}``: a root-to-leaf path. Distances
between classes are unchanged (the LCA of c* and any other class is the LCA of c and it). For
the usual trees, whose classes are all leaves, nothing is added and ``V_c`` is the class's path.

Coordinate order: the hierarchy's non-root nodes in :attr:`Hierarchy.nodes` order (breadth
first), then the pseudo-leaves in class order. ``depth`` of a coordinate is its depth in the
(augmented) tree, 1 for the root's children; the coordinates of one depth are a *level*.

The last layer is fixed: a random orthonormal ``d x d`` matrix ``R`` (Haar, from a seed) whose
columns are the directions e_n in the transformed feature space, so ``z = h R`` are the node
coordinates of a feature h.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.frames.etf import random_orthonormal

SELF_SUFFIX = "::self"


@dataclasses.dataclass(frozen=True, eq=False)
class NodeSubspaces:
    """The coordinates of the tree's nodes and each class's subspace as index sets.

    Attributes
    ----------
    coordinates:
        d coordinate names: non-root node ids, then ``"<class>::self"`` pseudo-leaves.
    nodes:
        d hierarchy node ids the coordinates stand for (a pseudo-leaf stands for its class).
    parents:
        (d,) parent coordinate of each coordinate, -1 for the root's children.
    depths:
        (d,) depth of each coordinate in the augmented tree, 1..height.
    paths:
        (K, height) coordinate of each class's path at depth t+1, -1 past the path's end; the
        last valid entry of row c is the class's own (leaf) coordinate.
    fingerprint:
        The hierarchy's fingerprint.
    """

    coordinates: tuple[str, ...]
    nodes: tuple[str, ...]
    parents: np.ndarray
    depths: np.ndarray
    paths: np.ndarray
    fingerprint: str

    @property
    def dim(self) -> int:
        return len(self.coordinates)

    @property
    def num_classes(self) -> int:
        return int(self.paths.shape[0])

    @property
    def height(self) -> int:
        """Depth of the deepest coordinate (the longest class path)."""
        return int(self.paths.shape[1])

    @property
    def path_lengths(self) -> np.ndarray:
        """(K,) number of coordinates in each class's subspace (= its path length)."""
        return (self.paths >= 0).sum(axis=1)

    def subspace(self, cls: int) -> np.ndarray:
        """The index set of V_c (sorted coordinate indices)."""
        row = self.paths[int(cls)]
        return np.sort(row[row >= 0])

    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """``(class_idx, coord_idx)`` pairs, one per coordinate of every V_c (sparse K x d)."""
        mask = self.paths >= 0
        cls = np.broadcast_to(np.arange(self.num_classes)[:, None], mask.shape)[mask]
        return cls.astype(np.int64), self.paths[mask].astype(np.int64)

    def membership_matrix(self, dtype=np.float32) -> np.ndarray:
        """The dense K x d 0/1 matrix M with ``M[c, n] = 1`` iff n ∈ V_c (small trees only)."""
        m = np.zeros((self.num_classes, self.dim), dtype=dtype)
        cls, coord = self.members()
        m[cls, coord] = 1
        return m

    def level(self, depth: int) -> np.ndarray:
        """Coordinate indices of one level (depth 1..height), ascending."""
        if not 1 <= depth <= self.height:
            raise HafclsError(
                f"Level {depth} is outside the subspaces' depths 1..{self.height}.",
                f"pick a depth between 1 and {self.height}.",
            )
        return np.flatnonzero(self.depths == depth)

    def level_targets(self, depth: int) -> np.ndarray:
        """(K,) position of each class's depth-``depth`` path node inside :meth:`level`, or -1
        when the class's path is shorter (a shallow class in an unbalanced tree)."""
        coords = self.level(depth)
        position = np.full(self.dim, -1, dtype=np.int64)
        position[coords] = np.arange(len(coords))
        column = self.paths[:, depth - 1]
        return np.where(column >= 0, position[np.maximum(column, 0)], -1)

    def class_vectors(self) -> np.ndarray:
        """d x K unit vectors along each class's path (the class's ideal direction in node
        coordinates: the z that scores it highest, up to the weights along the path)."""
        m = self.membership_matrix(np.float64).T
        return (m / np.sqrt(m.sum(axis=0, keepdims=True))).astype(np.float32)

    def to_metadata(self) -> dict:
        return {
            "kind": "node_subspaces",
            "dim": self.dim,
            "num_classes": self.num_classes,
            "height": self.height,
            "pseudo_leaves": int(sum(c.endswith(SELF_SUFFIX) for c in self.coordinates)),
            "fingerprint": self.fingerprint,
        }


def node_subspaces(hierarchy) -> NodeSubspaces:
    """The node coordinates and class subspaces of ``hierarchy`` (see the module docstring)."""
    if not hasattr(hierarchy, "ancestor_matrix") or not hasattr(hierarchy, "class_nodes"):
        raise HafclsError(
            f"node_subspaces needs a hafcls Hierarchy, got {type(hierarchy).__name__}.",
            "load one with hafcls.hierarchy.load(...) or Hierarchy.from_edges(...).",
        )
    nodes = hierarchy.nodes
    node_parents = hierarchy.parents
    node_depths = hierarchy.node_depths
    class_nodes = hierarchy.class_nodes
    n = len(nodes)
    # node i (i >= 1, BFS order with the root at 0) is coordinate i - 1
    has_child = np.zeros(n, dtype=bool)
    has_child[node_parents[node_parents >= 0]] = True
    internal = np.flatnonzero(has_child[class_nodes])  # class indices sitting at internal nodes
    k = len(class_nodes)

    coordinates = [*nodes[1:], *(f"{nodes[class_nodes[c]]}{SELF_SUFFIX}" for c in internal)]
    coord_nodes = [*nodes[1:], *(nodes[class_nodes[c]] for c in internal)]
    parents = np.concatenate([node_parents[1:] - 1, class_nodes[internal] - 1])
    depths = np.concatenate([node_depths[1:], node_depths[class_nodes[internal]] + 1])

    class_depth = node_depths[class_nodes]
    lengths = class_depth + has_child[class_nodes]
    height = int(lengths.max())
    anc = hierarchy.ancestor_matrix  # K x (H+1): node at depth t, the class's own node below it
    t = np.arange(1, height + 1)
    paths = np.full((k, height), -1, dtype=np.int64)
    on_tree = t[None, :] <= class_depth[:, None]
    cols = np.minimum(t, anc.shape[1] - 1)
    paths[on_tree] = (anc[:, cols] - 1)[on_tree]
    paths[internal, class_depth[internal]] = (n - 1) + np.arange(len(internal))
    return NodeSubspaces(
        coordinates=tuple(coordinates),
        nodes=tuple(coord_nodes),
        parents=parents.astype(np.int64),
        depths=depths.astype(np.int64),
        paths=paths,
        fingerprint=hierarchy.fingerprint(),
    )


def random_rotation(dim: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A Haar-random orthonormal ``dim x dim`` matrix drawn from ``seed`` (QR of a Gaussian with
    R's diagonal signs moved into Q). Its columns are the node directions e_n."""
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise HafclsError(f"dim must be a positive integer, got {dim!r}.", "pass e.g. dim=10.")
    q = random_orthonormal(int(dim), int(dim), np.random.default_rng(seed))
    return torch.from_numpy(q).to(dtype)
