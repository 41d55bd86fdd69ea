"""Neural collapse measures (Papyan, Han & Donoho 2020) and HAFrame's angular collapse.

All measures use the classes present in ``labels`` (C of them). Notation: μ_c the mean feature
of class c, μ_G the mean of the class means (equal to the global mean for balanced classes, and
the centre for which an ETF's centred means sum to zero), M = [μ_c − μ_G] the centred means,
W the d x K classifier restricted to the present classes' columns.

- ``nc1`` = Tr(Σ_W Σ_B†)/C, Σ_W the within-class covariance over all samples (1/N), Σ_B the
  covariance of the centred means (1/C); the pseudo-inverse drops singular values below
  ``max(C, d) * eps * largest`` (the numpy/torch rank rule), computed in the C-dim span of M.
- ``equinorm`` = std/mean of ‖μ_c − μ_G‖.
- ``equiangularity`` = std of the cosines between centred means over pairs c < c'.
- ``max_angle`` = mean over pairs of |cos + 1/(C − 1)| (0 for a simplex ETF).
- ``self_duality`` (NC3, needs ``classifier``) = ‖W/‖W‖_F − M/‖M‖_F‖²_F.
- ``self_duality_uncentred`` (needs ``classifier``): the same with the uncentred means, the form
  HAFrame uses against a fixed frame.
- ``nc4`` (needs ``predictions`` or ``classifier``) = fraction of samples where the
  nearest-class-mean rule (Euclidean, uncentred means) disagrees with the network's prediction.
  Pass the network's own ``predictions`` (the argmax of its logits); without them the
  prediction is ``argmax(hᵀW + b)`` (``bias`` b, zero if not given), which is the network's
  only for a linear classifier on these features.
- ``angular_collapse_mean`` / ``angular_collapse_std`` (needs ``frame_similarity`` S): mean and
  std over pairs c < c' of |cos(μ_c, μ_c') − S_cc'| with uncentred means.

Every std is the population std (ddof = 0), so a single pair gives 0, not NaN. Computations run
in float64 over row blocks of the features; no d x d or N x d float64 copy is made.
"""

from __future__ import annotations

import numpy as np
import torch

from hafcls.errors import HafclsError

_BLOCK_ELEMENTS = 1 << 22


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise HafclsError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}.",
                      f"pass {name} as an array.")


def _as_labels(x, n: int, name: str) -> torch.Tensor:
    x = _as_tensor(x if isinstance(x, (np.ndarray, torch.Tensor)) else np.asarray(x), name)
    if x.ndim != 1 or x.shape[0] != n:
        raise HafclsError(f"{name} must be 1-D with one entry per feature row ({n}), got shape "
                          f"{tuple(x.shape)}.", f"pass one class index per sample in {name}.")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise HafclsError(f"{name} must hold integer class indices, got {x.dtype}.",
                          "convert them with .long().")
    x = x.cpu().long()
    if n and int(x.min()) < 0:
        raise HafclsError(f"{name} hold a negative class index.", "use indices 0..K-1.")
    return x


def neural_collapse(features, labels, classifier=None, frame_similarity=None,
                    predictions=None, bias=None) -> dict[str, float]:
    """Neural collapse measures of ``features`` (N x d) grouped by ``labels`` (N class indices).

    Parameters
    ----------
    features:
        N x d penultimate features (what the classifier acts on), usually of the training set.
    labels:
        N class indices in ``[0, K)``; at least two distinct classes must be present.
    classifier:
        Optional d x K class vectors (the orientation of ``Frame.weight`` and
        ``head.class_vectors()``; an ``nn.Linear.weight`` is K x d and must be transposed).
        Enables ``self_duality``, ``self_duality_uncentred`` and, without ``predictions``,
        ``nc4`` with predictions ``argmax(features @ classifier)``.
    frame_similarity:
        Optional K x K target cosines S of a frame; enables the angular collapse measures.
    predictions:
        Optional N predicted class indices of the network; enables ``nc4``.
    bias:
        Optional K classifier biases, used with ``classifier`` when ``predictions`` is not
        given (e.g. ``nn.Linear.bias``).

    Returns
    -------
    dict of floats (module docstring), plus ``num_classes`` (C) and ``n``; keys whose inputs are
    missing are absent.
    """
    h = _as_tensor(features, "features")
    if h.ndim != 2 or h.shape[0] == 0 or h.shape[1] == 0:
        raise HafclsError(f"features must be a non-empty N x d array, got shape "
                          f"{tuple(h.shape)}.", "pass one feature vector per row.")
    if not h.is_floating_point():
        h = h.double()
    if not bool(torch.isfinite(h.sum())) and not bool(torch.isfinite(h).all()):
        raise HafclsError("features contain NaN or infinite values.",
                          "check the model: its features diverged.")
    h = h.cpu()
    n, dim = h.shape
    y = _as_labels(labels, n, "labels")

    w = s = None
    k_total = int(y.max()) + 1
    if classifier is not None:
        w = _as_tensor(classifier, "classifier").cpu().double()
        if w.ndim != 2 or w.shape[0] != dim:
            hint = (" It looks transposed (K x d, like nn.Linear.weight)."
                    if w.ndim == 2 and w.shape[1] == dim else "")
            raise HafclsError(f"classifier must be d x K with d = {dim}, got shape "
                              f"{tuple(w.shape)}.{hint}",
                              "pass the class vectors as columns (e.g. linear.weight.T).")
        k_total = w.shape[1]
    if frame_similarity is not None:
        s = _as_tensor(frame_similarity, "frame_similarity").cpu().double()
        if s.ndim != 2 or s.shape[0] != s.shape[1]:
            raise HafclsError(f"frame_similarity must be K x K, got shape {tuple(s.shape)}.",
                              "pass the frame's target cosine matrix (Frame.similarity).")
        if w is not None and s.shape[0] != k_total:
            raise HafclsError(f"frame_similarity is {s.shape[0]} x {s.shape[0]} but the "
                              f"classifier has {k_total} classes.",
                              "pass the similarity of the same frame.")
        k_total = s.shape[0]
    if int(y.max()) >= k_total:
        raise HafclsError(f"Label {int(y.max())} is outside the {k_total} classes of the "
                          "classifier / frame.", "check the labels' class order.")

    present, y_local = torch.unique(y, return_inverse=True)
    c = int(present.numel())
    if c < 2:
        raise HafclsError("Neural collapse needs features of at least two classes, got "
                          f"{c}.", "pass features of several classes.")

    rows = max(1, _BLOCK_ELEMENTS // dim)
    counts = torch.bincount(y_local, minlength=c).double()
    sums = torch.zeros(c, dim, dtype=torch.float64)
    for start in range(0, n, rows):
        sums.index_add_(0, y_local[start:start + rows], h[start:start + rows].double())
    mu = sums / counts[:, None]                   # C x d uncentred means
    centred = mu - mu.mean(dim=0)                 # C x d, rows = M's columns
    out: dict[str, float] = {}

    # NC1 in the span of the centred means: Σ_B† = C Σ_j v_j v_jᵀ / s_j² over M's right
    # singular vectors, so Tr(Σ_W Σ_B†)/C = Σ_j (v_jᵀ Σ_W v_j) / s_j²
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
    keep = sv > sv.max() * max(c, dim) * torch.finfo(torch.float64).eps
    vh, sv = vh[keep], sv[keep]
    proj_var = torch.zeros(vh.shape[0], dtype=torch.float64)
    for start in range(0, n, rows):
        z = h[start:start + rows].double() - mu.index_select(0, y_local[start:start + rows])
        proj_var += ((z @ vh.T) ** 2).sum(dim=0)
    out["nc1"] = float((proj_var / n / sv**2).sum()) if sv.numel() else float("nan")

    norms = centred.norm(dim=1)
    out["equinorm"] = float(norms.std(correction=0) / norms.mean())
    iu = torch.triu_indices(c, c, offset=1)
    cos_c = _cosines(centred)[iu[0], iu[1]]
    out["equiangularity"] = float(cos_c.std(correction=0))
    out["max_angle"] = float((cos_c + 1.0 / (c - 1)).abs().mean())

    if w is not None:
        wp = w[:, present]                        # d x C
        out["self_duality"] = _duality(wp, centred.T)
        out["self_duality_uncentred"] = _duality(wp, mu.T)

    pred = None
    if predictions is not None:
        pred = _as_labels(predictions, n, "predictions")
    elif w is not None:
        b = torch.zeros(w.shape[1], dtype=torch.float64)
        if bias is not None:
            b = _as_tensor(bias, "bias").cpu().double().reshape(-1)
            if b.numel() != w.shape[1]:
                raise HafclsError(f"bias has {b.numel()} entries, the classifier {w.shape[1]} "
                                  "classes.", "pass one bias per class (nn.Linear.bias).")
        pred = torch.cat([(h[i:i + rows].double() @ w + b).argmax(dim=1)
                          for i in range(0, n, rows)])
    if pred is not None:
        mu_sq = (mu**2).sum(dim=1)
        ncc = torch.cat([(mu_sq - 2 * h[i:i + rows].double() @ mu.T).argmin(dim=1)
                         for i in range(0, n, rows)])
        out["nc4"] = float((present[ncc] != pred).double().mean())

    if s is not None:
        cos_u = _cosines(mu)[iu[0], iu[1]]
        target = s[present][:, present][iu[0], iu[1]]
        gap = (cos_u - target).abs()
        out["angular_collapse_mean"] = float(gap.mean())
        out["angular_collapse_std"] = float(gap.std(correction=0))

    out["num_classes"] = c
    out["n"] = n
    return out


def _cosines(vectors: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of the rows (a zero row has cosine 0 with everything)."""
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return unit @ unit.T


def _duality(w: torch.Tensor, m: torch.Tensor) -> float:
    """‖W/‖W‖_F − M/‖M‖_F‖²_F for two d x C matrices."""
    diff = w / w.norm().clamp_min(1e-300) - m / m.norm().clamp_min(1e-300)
    return float((diff**2).sum())
