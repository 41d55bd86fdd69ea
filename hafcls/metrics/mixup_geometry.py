"""Mixup's last-layer geometry as a measurement (docs/mixup_and_imbalance.md; the seed paper
"Pushing
Boundaries: Mixup's Influence on Neural Collapse").

The paper's finding: with mixup, the last-layer features of a mix of two images of the *same*
class align with that class's classifier vector, while a mix of two *different* classes lies on
the decision boundary between them, moving along it as λ changes. Measured here, for pairs of
training images (a, b) with labels (y_a, y_b) mixed as ``λ·x_a + (1 − λ)·x_b`` at several λ:

- ``cos_a``, ``cos_b`` (P x L): ``cos(h, w_{y_a})`` and ``cos(h, w_{y_b})``;
- ``boundary`` (P x L): ``cos(h, w_{y_a} − w_{y_b})``, 0 when h lies on the (bias-free) decision
  boundary between the two classes for equal-norm class vectors, positive on y_a's side; NaN for
  same-class pairs, which have no boundary;
- ``cos_other`` (P x L): the largest cosine to any third class, to tell "between a and b" from
  "somewhere else".

A linear head's bias is ignored (the geometry is that of the class vectors). The pure functions
take arrays; :func:`collect_mixup_features` runs any ``forward(images) -> features`` callable, so
this module never imports a model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.metrics.inputs import as_float64

DEFAULT_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sample_mix_pairs(labels, n_same: int, n_cross: int, seed: int = 0) -> np.ndarray:
    """``(n_same + n_cross) x 2`` sample indices: first pairs of one class (distinct samples
    where the class has two), then pairs of two different classes, drawn uniformly."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size < 2 or not np.issubdtype(y.dtype, np.integer):
        raise HafclsError("labels must be a 1-D integer array with at least two samples.",
                          "pass the split's targets.")
    if n_cross and np.unique(y).size < 2:
        raise HafclsError("Cross-class mixes need at least two classes.", "use n_cross=0.")
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # same class: a uniform sample, then another of its class (offset 1..n-1 from it)
    a = rng.integers(0, y.size, n_same)
    ya = y[a]
    pos = np.empty(y.size, dtype=np.int64)
    pos[order] = np.arange(y.size) - starts[y[order]]
    n = counts[ya]
    offset = np.where(n > 1, 1 + (rng.random(n_same) * np.maximum(n - 1, 1)).astype(np.int64), 0)
    b = order[starts[ya] + (pos[a] + offset) % n]
    same = np.stack([a, b], axis=1)
    # cross class: uniform pairs, redrawing the second sample while the labels agree
    c = rng.integers(0, y.size, n_cross)
    d = rng.integers(0, y.size, n_cross)
    for _ in range(1000):
        clash = y[c] == y[d]
        if not clash.any():
            break
        d[clash] = rng.integers(0, y.size, int(clash.sum()))
    return np.concatenate([same, np.stack([c, d], axis=1)]).astype(np.int64)


def mix_inputs(x_a: torch.Tensor, x_b: torch.Tensor, lambdas) -> torch.Tensor:
    """``P x L x ...`` input mixes ``λ·x_a + (1 − λ)·x_b`` (input mixup, as in the paper)."""
    lam = torch.as_tensor(np.asarray(lambdas, dtype=np.float64), dtype=x_a.dtype,
                          device=x_a.device)
    shape = (1, -1) + (1,) * (x_a.ndim - 1)
    return lam.view(shape) * x_a[:, None] + (1 - lam.view(shape)) * x_b[:, None]


@torch.no_grad()
def collect_mixup_features(forward: Callable[[torch.Tensor], torch.Tensor], images, pairs,
                           lambdas=DEFAULT_LAMBDAS, batch_size: int = 256) -> torch.Tensor:
    """``P x L x d`` features of the mixes of ``images[pairs[:, 0]]`` and ``images[pairs[:, 1]]``
    (``images`` a tensor, or a dataset yielding ``(image, label)``), in batches of mixes."""
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise HafclsError("pairs must be P x 2 sample indices.", "use sample_mix_pairs().")
    lam = np.asarray(lambdas, dtype=np.float64)
    per_batch = max(1, batch_size // max(lam.size, 1))
    out = []
    for start in range(0, pairs.shape[0], per_batch):
        chunk = pairs[start:start + per_batch]
        x_a, x_b = _gather(images, chunk[:, 0]), _gather(images, chunk[:, 1])
        mixes = mix_inputs(x_a, x_b, lam)
        feats = forward(mixes.flatten(0, 1))
        out.append(feats.float().reshape(chunk.shape[0], lam.size, -1).cpu())
    return torch.cat(out)


def _gather(images, idx: np.ndarray) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(idx, device=images.device)]
    return torch.stack([images[int(i)][0] for i in idx])


def mixup_geometry(features, pair_labels, lambdas, classifier) -> dict[str, np.ndarray]:
    """Cosines of mixed features to the two classes involved (see the module docstring).

    ``features`` P x L x d (mix of pair p at ``lambdas[l]``, λ weighting the first image),
    ``pair_labels`` P x 2 classes (y_a, y_b), ``classifier`` d x K class vectors.
    Returns ``cos_a``, ``cos_b``, ``boundary``, ``cos_other`` (P x L), ``same`` (P,) and
    ``lambdas`` (L,) as float64/bool numpy arrays.
    """
    h = as_float64(features, "features")
    w = as_float64(classifier, "classifier")
    y = torch.as_tensor(np.asarray(pair_labels), dtype=torch.long)
    lam = np.asarray(lambdas, dtype=np.float64)
    if h.ndim != 3 or h.shape[1] != lam.size or w.ndim != 2 or h.shape[2] != w.shape[0]:
        raise HafclsError(
            f"features must be P x L x d with L = {lam.size} lambdas and d = classifier rows "
            f"({tuple(w.shape)}), got {tuple(h.shape)}.", "pass collect_mixup_features' output.")
    if y.shape != (h.shape[0], 2) or int(y.min()) < 0 or int(y.max()) >= w.shape[1]:
        raise HafclsError(f"pair_labels must be {h.shape[0]} x 2 classes in 0..{w.shape[1] - 1}.",
                          "pass labels[pairs].")
    h_unit = h / h.norm(dim=2, keepdim=True).clamp_min(1e-300)
    w_unit = w / w.norm(dim=0, keepdim=True).clamp_min(1e-300)
    cos = h_unit @ w_unit  # P x L x K
    idx_a = y[:, 0].view(-1, 1, 1).expand(-1, lam.size, 1)
    idx_b = y[:, 1].view(-1, 1, 1).expand(-1, lam.size, 1)
    cos_a, cos_b = cos.gather(2, idx_a).squeeze(2), cos.gather(2, idx_b).squeeze(2)
    others = cos.scatter(2, idx_a, -torch.inf).scatter(2, idx_b, -torch.inf)
    cos_other = others.max(dim=2).values if w.shape[1] > 2 else torch.full_like(cos_a, np.nan)
    normal = w[:, y[:, 0]] - w[:, y[:, 1]]  # d x P
    normal_norm = normal.norm(dim=0)
    same = (y[:, 0] == y[:, 1]).numpy()
    boundary = torch.einsum("pld,dp->pl", h_unit, normal) / normal_norm.clamp_min(1e-300)[:, None]
    boundary[torch.as_tensor(same) | (normal_norm == 0)] = np.nan
    return {"cos_a": cos_a.numpy(), "cos_b": cos_b.numpy(), "boundary": boundary.numpy(),
            "cos_other": cos_other.numpy(), "same": same, "lambdas": lam}


def geometry_curves(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-λ means (L,) for a plot: ``same_cos`` (same-class mixes' cosine to their class),
    ``cross_cos_a``, ``cross_cos_b``, ``cross_boundary`` and ``cross_cos_other`` (cross-class
    mixes). NaN where a kind of pair is absent."""
    same = result["same"]
    nan = np.full(result["lambdas"].size, np.nan)

    def mean(key, rows):
        return result[key][rows].mean(axis=0) if rows.any() else nan.copy()

    return {"lambdas": result["lambdas"], "same_cos": mean("cos_a", same),
            "cross_cos_a": mean("cos_a", ~same), "cross_cos_b": mean("cos_b", ~same),
            "cross_boundary": mean("boundary", ~same), "cross_cos_other": mean("cos_other", ~same)}


def geometry_summary(result: dict[str, np.ndarray]) -> dict[str, float]:
    """Scalars for the collapse report: ``mixup_same_class_cos`` (mean cosine of same-class
    mixes to their class over all λ), ``mixup_cross_boundary_abs`` (mean |boundary cosine| of
    cross-class mixes at the λ nearest 0.5) and ``mixup_cross_cos`` (their mean cosine to the two
    classes there)."""
    same, lam = result["same"], result["lambdas"]
    mid = int(np.argmin(np.abs(lam - 0.5)))
    cross = ~same
    nan = float("nan")
    return {
        "mixup_same_class_cos": float(result["cos_a"][same].mean()) if same.any() else nan,
        "mixup_cross_boundary_abs": (float(np.abs(result["boundary"][cross, mid]).mean())
                                     if cross.any() else nan),
        "mixup_cross_cos": (float((result["cos_a"][cross, mid] + result["cos_b"][cross, mid])
                                  .mean() / 2) if cross.any() else nan),
    }
