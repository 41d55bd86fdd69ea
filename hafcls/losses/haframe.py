"""HAFrame loss (Liang & Davis, ICCV 2023): cross-entropy plus a cosine-similarity regression.

``L = (1 − α)·CE(Wᵀh, y) + α·L_cos``, ``L_cos = mean_b Σ_c (cos(w_c, h_b) − S[c, y_b])²``.

The cosines come from the logits the head already computed: ``cos(w_c, h) = (Wᵀh)_c / (‖w_c‖‖h‖)``
with ``‖w_c‖ = 1`` for frames (or the column norms of ``frame_weight`` when given). ``‖h‖`` is
smoothed as ``sqrt(‖h‖² + eps)`` so that a zero feature has cosine 0 and finite gradients.

The targets ``S[y_b, :]`` come from a dense K x K S, or (:meth:`HAFrameLoss.from_distance`, and
:meth:`HAFrameLoss.from_frame` for a frame built without S, the default above 8,192 classes) from
the uint8 class distances through a lookup table of the d_max + 1 values of S: the same float32
numbers, so the two forms give bit-identical losses and gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hafcls.errors import HafclsError
from hafcls.frames.similarity import DISTANCES, similarity_from_distance
from hafcls.frames.tree import TreeSimilarity
from hafcls.hierarchy import Hierarchy
from hafcls.losses.hierarchical import class_distances


def column_norms(weight) -> Tensor:
    """The float32 column norms of a d x K frame.

    On the CPU torch's reduction over dim 0 is slow for a wide matrix (27.7 s for the
    28,013 x 21,841 ImageNet-21k frame); numpy's row-by-row sum of squares takes under a second
    and adds in the same order (equal to ``weight.norm(dim=0)`` on every frame tried).
    """
    w = torch.as_tensor(weight).detach().float()
    if w.device.type != "cpu" or w.ndim != 2:
        return w.norm(dim=0)
    a = w.numpy()
    return torch.from_numpy(np.sqrt(np.einsum("ij,ij->j", a, a)))


class HAFrameLoss(nn.Module):
    """``(1 − α)·CE + α·L_cos`` against the target cosine matrix S (K x K).

    Parameters
    ----------
    similarity:
        The K x K target cosines S (``Frame.similarity``). For large K build the loss with
        :meth:`from_frame` or :meth:`from_distance` instead, which keep only the uint8 distances
        and a lookup table.
    alpha:
        Weight of the cosine term, in [0, 1].
    frame_weight:
        Optional d x K frame; only its column norms are used (1 for a proper frame).
    """

    def __init__(self, similarity=None, alpha: float = 0.5, frame_weight: Tensor | None = None,
                 eps: float = 1e-12):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise HafclsError(f"alpha must be in [0, 1], got {alpha}.", "use e.g. alpha=0.5.")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.register_buffer("similarity", None, persistent=False)
        self.register_buffer("distance", None, persistent=False)
        self.register_buffer("lut", None, persistent=False)
        if similarity is not None:
            s = torch.as_tensor(np.asarray(similarity) if not isinstance(similarity, Tensor)
                                else similarity).float()
            if s.ndim != 2 or s.shape[0] != s.shape[1]:
                raise HafclsError(
                    f"similarity must be a K x K matrix, got shape {tuple(s.shape)}.",
                    "pass Frame.similarity.",
                )
            self.similarity = s
        norms = None if frame_weight is None else column_norms(frame_weight)
        self.register_buffer("class_norms", norms, persistent=False)

    @classmethod
    def from_distance(cls, hierarchy_or_distance, gamma: float, s_min: float,
                      alpha: float = 0.5, frame_weight: Tensor | None = None, *,
                      distance: str = "published") -> HAFrameLoss:
        """Targets ``S = (1 − s_min)·exp(−γ·d/d_max) + s_min`` from the class distances.

        ``s_min`` must be the number the frame was built with (``Frame.s_min``). For a
        :class:`~hafcls.hierarchy.Hierarchy` the distances (``distance``: ``"published"`` or
        ``"lca_height"``, as the frame's) are filled from the tree like the frame's S
        (:meth:`TreeSimilarity.distances`: 1-2 s at 21,841 classes, against about 20 s for
        ``distance_matrix`` plus its validation); a K x K matrix is validated and used as given.
        """
        if isinstance(s_min, str) or isinstance(gamma, str):
            raise HafclsError(
                f"from_distance needs numbers for gamma and s_min, got {gamma!r}, {s_min!r}.",
                "pass the built frame's values (Frame.gamma, Frame.s_min).",
            )
        loss = cls(None, alpha, frame_weight)
        if isinstance(hierarchy_or_distance, Hierarchy):
            d = torch.from_numpy(TreeSimilarity(hierarchy_or_distance, distance).distances())
        else:
            d = class_distances(hierarchy_or_distance)
        d_max = int(d.max())
        # one lookup value per distance, from the frames' own similarity function and in numpy
        # like the frame's S, so the float32 targets are the very numbers of Frame.similarity
        lut = similarity_from_distance(np.arange(d_max + 1), float(gamma), float(s_min), d_max)
        loss.distance, loss.lut = d, torch.from_numpy(lut).float()
        return loss

    @classmethod
    def from_frame(cls, frame, hierarchy=None, alpha: float = 0.5) -> HAFrameLoss:
        """The loss for a HAFrame :class:`~hafcls.frames.Frame`: its S when the frame kept one,
        else the same targets from ``hierarchy`` (or the K x K distance matrix the frame was
        built from) by :meth:`from_distance`, with the frame's γ, s_min and distance kind: the
        loss never needs the frame's S."""
        if frame.similarity is not None:
            return cls(frame.similarity, alpha, frame_weight=frame.weight)
        if frame.kind != "haframe" or frame.gamma is None or frame.s_min is None:
            raise HafclsError(
                f"A {frame.kind!r} frame without target cosines S has no HAFrame loss target.",
                "use a HAFrame (hafcls.frames.haframe), or pass the target S to HAFrameLoss.",
            )
        if hierarchy is None:
            raise HafclsError(
                f"This frame ({frame.num_classes} classes) carries no target cosines S, so the "
                "loss needs the hierarchy to compute them.",
                "pass hierarchy= (the one the frame was built for), or rebuild the frame with "
                "haframe(..., with_similarity=True).",
            )
        kind = (frame.info or {}).get("distance", "published")
        if isinstance(hierarchy, Hierarchy):
            if frame.fingerprint is not None and hierarchy.fingerprint() != frame.fingerprint:
                raise HafclsError(
                    "The hierarchy is not the one the frame was built for (fingerprints differ).",
                    "pass the frame's own hierarchy.",
                )
            if kind not in DISTANCES:
                raise HafclsError(
                    f"The frame was built from a distance matrix ({kind!r}), not a hierarchy.",
                    "pass that K x K distance matrix as hierarchy=.",
                )
        else:
            kind = "published"  # unused for a matrix
        loss = cls.from_distance(hierarchy, frame.gamma, frame.s_min, alpha, frame.weight,
                                 distance=kind)
        if loss.num_classes != frame.num_classes:
            raise HafclsError(
                f"The distances cover {loss.num_classes} classes, the frame {frame.num_classes}.",
                "pass the hierarchy the frame was built for.",
            )
        return loss

    @property
    def num_classes(self) -> int:
        s = self.similarity if self.similarity is not None else self.distance
        return int(s.shape[0])

    def target_cosines(self, targets: Tensor) -> Tensor:
        """B x K rows ``S[y_b, :]`` (S is symmetric)."""
        if self.similarity is not None:
            return self.similarity[targets]
        return self.lut[self.distance[targets].long()]

    def cosines(self, logits: Tensor, features: Tensor) -> Tensor:
        """B x K ``cos(w_c, h_b)`` recovered from the logits ``Wᵀh``."""
        h = features.float()
        h_norm = torch.sqrt(h.pow(2).sum(dim=1, keepdim=True) + self.eps)
        cos = logits.float() / h_norm
        if self.class_norms is not None:
            cos = cos / self.class_norms.clamp_min(1e-12)
        return cos

    def cosine_loss(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        """``L_cos = mean_b Σ_c (cos(w_c, h_b) − S[c, y_b])²``."""
        diff = self.cosines(logits, features) - self.target_cosines(targets)
        return diff.pow(2).sum(dim=1).mean()

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        if logits.shape[1] != self.num_classes:
            raise HafclsError(
                f"The logits have {logits.shape[1]} classes, the loss's targets "
                f"{self.num_classes}.",
                "build the loss from the model's own frame and hierarchy.",
            )
        ce = F.cross_entropy(logits.float(), targets)
        if self.alpha == 0.0:
            return ce
        return (1.0 - self.alpha) * ce + self.alpha * self.cosine_loss(logits, features, targets)
