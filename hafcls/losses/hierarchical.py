"""Losses that read the hierarchy: soft labels and hierarchical cross-entropy (HXE).

Every loss is called as ``loss(logits, features, targets)`` (features are unused here) and
computes in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.validation import check_distance_matrix


def class_distances(hierarchy_or_distance) -> Tensor:
    """K x K class distances as a uint8/int16 tensor, from a Hierarchy or a matrix."""
    if hasattr(hierarchy_or_distance, "distance_matrix"):
        d = hierarchy_or_distance.distance_matrix()
    else:
        d = hierarchy_or_distance
    d = check_distance_matrix(d, whole=True)
    d = torch.as_tensor(np.round(d) if np.issubdtype(d.dtype, np.floating) else d)
    dtype = torch.uint8 if d.max() <= 255 else torch.int16
    return d.to(dtype)


class SoftLabelLoss(nn.Module):
    """Soft labels (Bertinetto et al., CVPR 2020): KL(q_y ‖ softmax(logits)).

    ``q_y(c) ∝ exp(-β·d(c, y)/d_max)``. As β grows q_y becomes one-hot and the loss becomes CE
    (KL and CE differ by the entropy of q_y, a constant).
    """

    def __init__(self, hierarchy_or_distance, beta: float = 10.0):
        super().__init__()
        if not beta > 0:
            raise HafclsError(f"beta must be positive, got {beta}.", "use e.g. beta=10.")
        d = class_distances(hierarchy_or_distance)
        self.beta = float(beta)
        d_max = int(d.max())
        self.register_buffer("distance", d, persistent=False)
        # one weight per distance value: the K x K target matrix is never materialised
        steps = torch.arange(d_max + 1, dtype=torch.float64)
        self.register_buffer("lut", torch.exp(-self.beta * steps / d_max).float(), False)

    def target_distribution(self, targets: Tensor) -> Tensor:
        """B x K soft targets q_y."""
        q = self.lut[self.distance[targets].long()]
        return q / q.sum(dim=1, keepdim=True)

    def forward(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        return F.kl_div(log_p, self.target_distribution(targets), reduction="batchmean")


def hxe_node_weights(hierarchy, alpha: float, normalisation: str = "gradient") -> np.ndarray:
    """λ per node (float64): ``exp(−α·depth) / Z`` with the ``normalisation``'s constant Z."""
    depths = hierarchy.node_depths.astype(np.float64)
    raw = np.exp(-float(alpha) * depths)
    if normalisation == "nodes":
        return raw / raw.sum()
    if normalisation == "height":
        height = int(depths[hierarchy.class_nodes].max())
        return raw / np.exp(-float(alpha) * np.arange(1.0, max(height, 1) + 1)).mean()
    return raw / (uniform_gradient_norm(hierarchy, raw) / uniform_gradient_norm(
        hierarchy, np.ones_like(raw)))


def uniform_gradient_norm(hierarchy, node_weight: np.ndarray) -> float:
    """Mean over classes y of ‖∂HXE(y)/∂logits‖ at equal logits, for per-node weights.

    At equal logits P(C) = n_C / K (n_C classes at or below C), and the term of the edge into
    the path node C_t adds ``w_t/n_{t−1}`` on C_{t−1} and ``−w_t/n_t`` on C_t. The gradient is
    constant on each shell C_j \\ C_{j+1} of the path (and on C_L), so its norm needs the
    K x height prefix sums only, never a K x K array.
    """
    node_idx, _ = hierarchy.membership()
    size = np.bincount(node_idx, minlength=hierarchy.num_nodes).astype(np.float64)
    anc = hierarchy.ancestor_matrix                       # K x (height + 1), column 0 the root
    depth = hierarchy.node_depths[hierarchy.class_nodes]  # L per class
    cols = np.arange(anc.shape[1])[None, :]
    valid = cols <= depth[:, None]
    n = np.where(valid, size[anc], 1.0)                   # n_0 .. n_L (padding unused)
    w = np.where(valid, node_weight[anc], 0.0)            # w_0 (root, unused) .. w_L
    # a_j = Σ_{s=1}^{j+1} w_s / n_{s-1} − Σ_{s=1}^{j} w_s / n_s: the value on shell j
    down = np.cumsum(np.concatenate([w[:, 1:] / n[:, :-1], np.zeros((len(n), 1))], 1), 1)
    up = np.cumsum(np.concatenate([np.zeros((len(n), 1)), w[:, 1:] / n[:, 1:]], 1), 1)
    a = down - up                                         # column j: shell j (j < L)
    last = down[np.arange(len(n)), depth - 1] - up[np.arange(len(n)), depth]
    shell = np.where(cols[:, :-1] < depth[:, None], n[:, :-1] - n[:, 1:], 0.0)
    sq = (shell * a[:, :-1] ** 2).sum(axis=1) + size[anc[np.arange(len(n)), depth]] * last**2
    return float(np.sqrt(sq).mean())


class HierarchicalCrossEntropy(nn.Module):
    """Hierarchical cross-entropy (Bertinetto et al., CVPR 2020).

    ``HXE(y) = Σ_{C on y's path, C ≠ root} λ(C)·(−log P(C) / P(parent(C)))`` where P(C) is the
    softmax mass of the classes at or below node C and ``λ(C) = exp(−α·depth(C)) / Z``.

    ``normalisation`` chooses the constant Z (it only scales the loss; see ``docs/hxe.md``):

    - ``"gradient"`` (default): Z makes the mean gradient norm (w.r.t. the logits) at equal
      logits, i.e. at the start of training, equal to that of α = 0, which is CE's. At α = 0
      the weights are exactly 1 and the path terms telescope to ``−log P(y)``: exactly CE
      when every class is a leaf. SGD then starts HXE at CE's step size for any α.
    - ``"height"``: ``Z = (1/H)·Σ_{t=1..H} exp(−α·t)``, H the depth of the deepest class: the
      weights of a full-height path sum to H, as CE's H factors do (α = 0 also gives CE).
    - ``"nodes"``: the authors' Z = Σ over *all* nodes (root included) of ``exp(−α·depth)``,
      which makes the loss 100–1,000x smaller than CE on the benchmark trees (they used Adam).

    The two differ by a constant factor only, so they have the same minimisers and the same
    behaviour under Adam.

    log P(C) is a log-sum-exp over the node's classes with a per-node shift, so it stays
    finite for any logits; all nodes are computed in one scatter over the ``membership()``
    pairs, and the path terms of a batch in one gather.
    """

    NORMALISATIONS = ("gradient", "height", "nodes")

    def __init__(self, hierarchy, alpha: float = 0.1, normalisation: str = "gradient"):
        super().__init__()
        if not alpha >= 0:
            raise HafclsError(f"alpha must be >= 0, got {alpha}.", "use e.g. alpha=0.1.")
        if normalisation not in self.NORMALISATIONS:
            raise HafclsError(f"Unknown HXE normalisation {normalisation!r}.",
                              f"use one of {', '.join(self.NORMALISATIONS)}.")
        self.alpha = float(alpha)
        self.normalisation = normalisation
        self.num_nodes = hierarchy.num_nodes
        node_idx, class_idx = hierarchy.membership()
        depths = hierarchy.node_depths
        weight = hxe_node_weights(hierarchy, self.alpha, normalisation)

        # edges (parent -> child) along each class's path: column t-1 holds the edge into the
        # ancestor at depth t; padding edges (beyond the class's depth) get weight 0
        anc = hierarchy.ancestor_matrix
        class_depth = depths[hierarchy.class_nodes]
        valid = np.arange(1, anc.shape[1])[None, :] <= class_depth[:, None]
        child = np.where(valid, anc[:, 1:], 0)
        parent = np.where(valid, anc[:, :-1], 0)
        self.register_buffer("pair_nodes", torch.as_tensor(node_idx, dtype=torch.long), False)
        self.register_buffer("pair_classes", torch.as_tensor(class_idx, dtype=torch.long), False)
        self.register_buffer("edge_child", torch.as_tensor(child, dtype=torch.long), False)
        self.register_buffer("edge_parent", torch.as_tensor(parent, dtype=torch.long), False)
        edge_w = np.where(valid, weight[child], 0.0)
        self.register_buffer("edge_weight", torch.as_tensor(edge_w, dtype=torch.float32), False)

    def node_log_mass(self, logits: Tensor) -> Tensor:
        """B x N unnormalised ``log Σ_{c ≤ node} exp(logit_c)`` for every node."""
        z = logits.float()[:, self.pair_classes]
        index = self.pair_nodes.expand(z.shape[0], -1)
        shift = torch.full((z.shape[0], self.num_nodes), -torch.inf, device=z.device)
        shift = shift.scatter_reduce(1, index, z.detach(), reduce="amax")
        terms = torch.exp(z - shift[:, self.pair_nodes])
        mass = torch.zeros_like(shift).index_add_(1, self.pair_nodes, terms)
        return mass.log() + shift

    def forward(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        lse = self.node_log_mass(logits)
        child = lse.gather(1, self.edge_child[targets])
        log_cond = child - lse.gather(1, self.edge_parent[targets])
        return -(self.edge_weight[targets] * log_cond).sum(dim=1).mean()
