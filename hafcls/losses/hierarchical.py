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


class HierarchicalCrossEntropy(nn.Module):
    """Hierarchical cross-entropy (Bertinetto et al., CVPR 2020).

    ``HXE(y) = Σ_{C on y's path, C ≠ root} λ(C)·(−log P(C) / P(parent(C)))`` where P(C) is the
    softmax mass of the classes at or below node C and ``λ(C) = exp(−α·depth(C)) / Z``,
    Z = Σ over *all* nodes of the hierarchy (root included) of ``exp(−α·depth)``, as in the
    authors' weighting. The constant Z only scales the loss (α = 0 on a flat tree gives CE/Z).

    log P(C) is a log-sum-exp over the node's classes with a per-node shift, so it stays
    finite for any logits; all nodes are computed in one scatter over the ``membership()``
    pairs, and the path terms of a batch in one gather.
    """

    def __init__(self, hierarchy, alpha: float = 0.1):
        super().__init__()
        if not alpha >= 0:
            raise HafclsError(f"alpha must be >= 0, got {alpha}.", "use e.g. alpha=0.1.")
        self.alpha = float(alpha)
        self.num_nodes = hierarchy.num_nodes
        node_idx, class_idx = hierarchy.membership()
        depths = hierarchy.node_depths
        weight = np.exp(-self.alpha * depths.astype(np.float64))
        weight /= weight.sum()

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
