"""The orthogonal-subspace head (Hier-COS, docs/hiercos.md) on HAFrame's type-II trunk.

``projection (1x1 conv or linear, d channels, no bias) -> BN1d(d) -> PReLU transformation ->
fixed rotation R``, with d the number of non-root tree nodes (see :mod:`hafcls.frames.hiercos`).

Interface (the same as every :class:`~hafcls.models.heads.Head`):

- ``forward(x) -> (scores, z)``. ``z = h R`` (N x d) are the node coordinates, the "features"
  handed to the loss (``loss(scores, z, targets)``) and to the collapse metrics;
  ``scores`` (N x K) are ``s_c = ‖P_c z‖₂ = sqrt(Σ_{n ∈ V_c} z_n²)``, the logits used for
  ranking, top-k and ``softmax(scores / T)``. Both come out of one call: no state is kept
  between forward and loss.
- ``class_vectors()``: d x K unit vectors along each class's path, in node coordinates (the
  space of ``z``).
- ``level_scores(z, depth)`` / ``level_predictions(z)``: per-level predictions from the level
  projections ``|z_n|``, n among the coordinates of one depth (the quantity the level-wise loss
  term trains); ``level_nodes(depth)`` names them.

Buffers: ``frame`` (the class vectors) and ``rotation`` (the seeded d x d matrix) are saved in the
state dict; the index sets (``paths``, ``coord_depth``, ``member_class``, ``member_coord``,
``membership``) are a function of the hierarchy alone, whose fingerprint the extra state
carries, so they are rebuilt rather than saved (a checkpoint of another tree is refused by the
fingerprint check instead of failing on a shape).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.frames.hiercos import NodeSubspaces, node_subspaces, random_rotation
from hafcls.models.head_base import (
    FROM_STATE_DICT,
    FixedFrameHead,
    Head,
    HeadContext,
    build_projection,
    register_head,
)
from hafcls.models.transformation_module import build_transform
from hafcls.validation import Option

DENSE_MEMBERSHIP_MAX = 1 << 22  # K x d entries up to which the scores are one dense matmul


@register_head
class SubspaceHead(FixedFrameHead):
    """Type-II trunk, fixed rotation to node coordinates, class scores ``‖P_c z‖₂``.

    Parameters
    ----------
    in_features:
        Channels of the backbone's map (``input_kind="map"``) or width of its pooled features.
    subspaces:
        The :class:`~hafcls.frames.hiercos.NodeSubspaces` of the hierarchy.
    seed:
        Seed of the random rotation (ignored when ``rotation`` is given).
    rotation:
        Optional d x d orthonormal matrix (e.g. from a checkpoint); by default drawn from ``seed``.
    frame_meta:
        Extra metadata merged into the head's ``frame_meta`` (saved in the extra state).
    input_kind, transform:
        As for :class:`~hafcls.models.heads.HAFrameHead`.
    """

    kind = "subspace"
    options = (
        Option("seed", int, 0, None, help="Seed of the fixed random rotation (default: the "
                                           "run's seed)."),
        Option("feature_input", str, choices=("auto", "map", "pooled"),
               help="Read the feature map (1x1 conv + pooling) or pooled features."),
    )

    @classmethod
    def reads_feature_map(cls, options: Mapping) -> bool:
        return True

    @classmethod
    def build(cls, ctx: HeadContext) -> tuple[Head, dict]:
        """The head of ``ctx.hierarchy``: its node subspaces are a function of the tree, the
        rotation of the seed (from a checkpoint, both come back with the state dict)."""
        if ctx.given is not None:
            raise HafclsError(
                "The subspace head builds its class subspaces from the hierarchy; it takes no "
                "frame.", "drop the frame argument.")
        if ctx.hierarchy is None:
            raise HafclsError("The subspace head needs the hierarchy.", "pass hierarchy=.")
        input_kind = ctx.options.get("feature_input", "pooled")
        seed = int(ctx.options.get("seed", 0))
        subspaces = node_subspaces(ctx.hierarchy)
        # from a checkpoint the rotation is overwritten by load_state_dict: skip the QR
        rotation = torch.eye(subspaces.dim) if ctx.frame_arg == FROM_STATE_DICT else None
        head = cls(ctx.in_features(input_kind), subspaces, seed=seed, rotation=rotation,
                   input_kind=input_kind, transform=ctx.transform)
        return head, {"seed": seed, "feature_input": input_kind}

    def __init__(
        self,
        in_features: int,
        subspaces: NodeSubspaces,
        seed: int = 0,
        rotation: Tensor | None = None,
        frame_meta: Mapping | None = None,
        input_kind: str = "pooled",
        transform: str = "prelu",
    ):
        if not isinstance(subspaces, NodeSubspaces):
            raise HafclsError(
                f"subspaces must be NodeSubspaces, got {type(subspaces).__name__}.",
                "build them with hafcls.frames.hiercos.node_subspaces(hierarchy), or use "
                "SubspaceHead.from_hierarchy(...).",
            )
        meta = {**subspaces.to_metadata(), "kind": self.kind, "seed": seed, **(frame_meta or {})}
        super().__init__(torch.from_numpy(subspaces.class_vectors()), meta, input_kind)
        d = self.feature_dim
        self.register_buffer("rotation", _check_rotation(rotation, d, seed))
        self._register_index_sets(subspaces)
        self.projection = build_projection(input_kind, in_features, d)
        self.bn = nn.BatchNorm1d(d)
        self.transform = build_transform(transform, d)

    @classmethod
    def from_hierarchy(cls, in_features: int, hierarchy, seed: int = 0, **kwargs) -> SubspaceHead:
        """The head for ``hierarchy`` (its node subspaces, a rotation drawn from ``seed``)."""
        return cls(in_features, node_subspaces(hierarchy), seed=seed, **kwargs)

    def _register_index_sets(self, subspaces: NodeSubspaces) -> None:
        self.coordinate_names = subspaces.coordinates
        self.coordinate_nodes = subspaces.nodes
        cls, coord = subspaces.members()
        self.register_buffer("paths", torch.from_numpy(subspaces.paths), persistent=False)
        self.register_buffer("coord_depth", torch.from_numpy(subspaces.depths), persistent=False)
        self.register_buffer("member_class", torch.from_numpy(cls), persistent=False)
        self.register_buffer("member_coord", torch.from_numpy(coord), persistent=False)
        dense = None
        if subspaces.num_classes * subspaces.dim <= DENSE_MEMBERSHIP_MAX:
            dense = torch.from_numpy(subspaces.membership_matrix())
        self.register_buffer("membership", dense, persistent=False)

    @property
    def height(self) -> int:
        return int(self.paths.shape[1])

    # ------------------------------------------------------------------ forward
    def node_coordinates(self, x: Tensor) -> Tensor:
        """``z = T(BN(P(x))) R``: the N x d coordinates along the node directions."""
        h = self.transform(self.bn(self.projection(x)))
        return h @ self.rotation.to(h.dtype)

    def scores(self, z: Tensor) -> Tensor:
        """``s_c = sqrt(Σ_{n ∈ V_c} z_n²)`` for all classes at once (N x K, float32, or float64
        for a float64 model)."""
        z2 = z.to(torch.promote_types(z.dtype, torch.float32)).pow(2)
        if self.membership is not None:
            energy = z2 @ self.membership.t().to(z2.dtype)
        else:  # sparse: gather each (class, coord) pair's z², sum per class
            energy = z2.new_zeros(z2.shape[0], self.num_classes)
            energy = energy.index_add(1, self.member_class, z2[:, self.member_coord])
        # clamp: sqrt'(0) is infinite; below 1e-12 the score is 1e-6 and its gradient zero
        return energy.clamp_min(1e-12).sqrt()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._checked_frame()
        z = self.node_coordinates(x)
        return self.scores(z), z

    # ------------------------------------------------------------------ levels
    def level_coordinates(self, depth: int) -> Tensor:
        """Coordinate indices of one level (depth 1..height)."""
        if not 1 <= int(depth) <= self.height:
            raise HafclsError(
                f"Level {depth} is outside the head's depths 1..{self.height}.",
                f"pick a depth between 1 and {self.height}.",
            )
        return torch.nonzero(self.coord_depth == int(depth)).flatten()

    def level_nodes(self, depth: int) -> list[str]:
        """Hierarchy node ids of the level's coordinates (a pseudo-leaf names its class)."""
        return [self.coordinate_nodes[i] for i in self.level_coordinates(depth).tolist()]

    def level_scores(self, z: Tensor, depth: int) -> Tensor:
        """N x n_t level projections ``|z_n|``, n over the coordinates of ``depth``."""
        return z[:, self.level_coordinates(depth)].abs()

    def level_predictions(self, z: Tensor) -> Tensor:
        """N x height: at each depth, the coordinate index with the largest ``|z_n|`` among that
        depth's coordinates (a loop over the few levels, vectorised over samples)."""
        a = z.detach().abs()
        out = []
        for depth in range(1, self.height + 1):
            coords = self.level_coordinates(depth)
            out.append(coords[a[:, coords].argmax(dim=1)])
        return torch.stack(out, dim=1)


def _check_rotation(rotation, d: int, seed: int) -> Tensor:
    if rotation is None:
        return random_rotation(d, seed)
    r = torch.as_tensor(rotation).detach().to(torch.float32).clone()
    if r.shape != (d, d):
        raise HafclsError(
            f"The rotation must be {d} x {d} (one column per non-root node), got "
            f"{tuple(r.shape)}.",
            "leave rotation out to draw one from the seed.",
        )
    err = (r.t() @ r - torch.eye(d)).abs().max().item()
    if not err < 1e-4:
        raise HafclsError(
            f"The rotation is not orthonormal (max |RᵀR − I| = {err:.2g}).",
            "pass an orthonormal matrix, or leave rotation out.",
        )
    return r
