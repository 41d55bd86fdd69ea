"""The collapse report of a trained run: neural collapse, minority collapse and mixup geometry.

Written by rank 0 after the test evaluation (best-validation model) as ``collapse.json`` in the
run folder, with the figure ``plots/mixup_geometry.png`` when matplotlib is installed. It is on
by default for runs with ``--mixup``/``--cutmix`` or ``--imbalance`` (``collapse_report``).

Everything is measured on the *training* split seen through the evaluation transform (no
augmentation), at most ``PER_CLASS_CAP`` images per class (the first ones of a seeded shuffle):

- ``neural_collapse``: :func:`hafcls.metrics.neural_collapse` with the head's class vectors;
- ``minority_collapse``: the mean pairwise cosine of the rare classes' classifier vectors for a
  learnable classifier (Fang et al. 2021), of their class-mean features for a fixed frame
  (ETF, HAFrame, EBV), ``minority_collapse_source`` saying which; ``minority_collapse_means``
  is the class-mean form for every head, so that learnable and fixed heads compare on one scale
  (docs/mixup_and_imbalance.md §3), and ``minority_collapse_classifier`` the classifier form for
  every head (for a fixed frame: the value the frame was built with, e.g. −1/(K−1) for an ETF);
- ``mixup_geometry``: the seed paper's measurement (docs/mixup_and_imbalance.md §4) on
  ``N_PAIRS`` same-class and ``N_PAIRS`` cross-class input mixes at λ = 0, 0.1, ..., 1: the
  summary scalars and the per-λ curves that the figure draws.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hafcls.io import atomic_write_text

PER_CLASS_CAP = 200
N_PAIRS = 200


@contextlib.contextmanager
def eval_view(train_set, reference):
    """The training split with the evaluation transform of ``reference`` (val or test split)
    while the block runs; the training transform is put back afterwards."""
    if reference is None or not hasattr(reference, "transform"):
        yield train_set
        return
    saved = train_set.transform
    train_set.transform = reference.transform
    try:
        yield train_set
    finally:
        train_set.transform = saved


def report_indices(targets: np.ndarray, cap: int = PER_CLASS_CAP, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``cap`` samples per class (first ones of a seeded shuffle)."""
    order = np.random.default_rng(seed).permutation(targets.size)
    order = order[np.argsort(targets[order], kind="stable")]
    counts = np.bincount(targets)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(targets.size) - starts[targets[order]]
    return np.sort(order[rank < cap])


@torch.no_grad()
def _features(model: nn.Module, dataset, idx: np.ndarray, device, batch_size: int):
    feats = []
    for start in range(0, idx.size, batch_size):
        chunk = idx[start:start + batch_size]
        x = torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in chunk])
        feats.append(model(x.to(device), return_features=True)[1].float().cpu())
    return torch.cat(feats)


def collapse_report(model: nn.Module, train_set, reference, train_counts, device,
                    seed: int = 0, batch_size: int = 256, imbalanced: bool = False,
                    n_pairs: int | None = None) -> dict:
    """The report dict (see the module docstring); ``imbalanced`` adds minority collapse."""
    from hafcls.metrics import neural_collapse
    from hafcls.metrics.minority import minority_collapse, minority_collapse_from_means
    from hafcls.metrics.mixup_geometry import (
        DEFAULT_LAMBDAS,
        collect_mixup_features,
        geometry_curves,
        geometry_summary,
        mixup_geometry,
        sample_mix_pairs,
    )

    targets = np.asarray(train_set.targets, dtype=np.int64)
    idx = report_indices(targets, seed=seed)
    labels = targets[idx]
    was_training = model.training
    model.eval()
    try:
        with eval_view(train_set, reference) as data:
            feats = _features(model, data, idx, device, batch_size)
            w = model.class_vectors().detach().float().cpu()
            out: dict = {"n_train_features": int(idx.size)}
            out["neural_collapse"] = neural_collapse(feats, labels, classifier=w)
            if imbalanced:
                fixed = bool(getattr(model.head, "fixed_classifier", False))
                means = minority_collapse_from_means(feats, labels, train_counts)
                out["minority_collapse"] = means if fixed else minority_collapse(w, train_counts)
                out["minority_collapse_source"] = "class_means" if fixed else "classifier"
                out["minority_collapse_means"] = means
                # a fixed frame's own value: what its rare classes' means are pulled towards
                out["minority_collapse_classifier"] = minority_collapse(w, train_counts)
            n_pairs = N_PAIRS if n_pairs is None else n_pairs
            pairs = sample_mix_pairs(labels, n_pairs, n_pairs, seed=seed)
            mixes = collect_mixup_features(
                lambda x: model(x.to(device), return_features=True)[1], data, idx[pairs],
                DEFAULT_LAMBDAS, batch_size=batch_size)
    finally:
        model.train(was_training)
    geometry = mixup_geometry(mixes, labels[pairs], DEFAULT_LAMBDAS, w)
    out["mixup_geometry"] = geometry_summary(geometry)
    out["mixup_curves"] = {k: np.asarray(v, dtype=np.float64).tolist()
                           for k, v in geometry_curves(geometry).items()}
    return out


def plot_mixup_geometry(curves: dict, title: str = ""):
    """A matplotlib figure of the per-λ curves of the mixup geometry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = np.asarray(curves["lambdas"])
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    styles = (("same_cos", "same class: cos(h, w_y)", "-"),
              ("cross_cos_a", "cross: cos(h, w_a)", "--"),
              ("cross_cos_b", "cross: cos(h, w_b)", "--"),
              ("cross_boundary", "cross: cos(h, w_a − w_b)", ":"),
              ("cross_cos_other", "cross: max cos to a third class", "-."))
    for key, label, ls in styles:
        if key in curves:
            ax.plot(lam, np.asarray(curves[key], dtype=float), ls, marker="o", ms=3, label=label)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("λ (weight of the first image, class a)")
    ax.set_ylabel("cosine")
    ax.set_title(title or "Mixup geometry of the last-layer features")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def write_report(report: dict, folder: Path, title: str = "") -> list[Path]:
    """``collapse.json`` and, when matplotlib is installed, ``plots/mixup_geometry.png``."""
    folder = Path(folder)
    paths = [atomic_write_text(folder / "collapse.json",
                               json.dumps(report, indent=1, allow_nan=True) + "\n")]
    try:
        fig = plot_mixup_geometry(report["mixup_curves"], title)
    except ImportError:
        return paths
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / "plots" / "mixup_geometry.png", dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths + [folder / "plots" / "mixup_geometry.png"]


def wants_report(config) -> bool:
    """``collapse_report`` if set, else on for mixup/CutMix or imbalanced runs."""
    if config.collapse_report is not None:
        return bool(config.collapse_report)
    return bool(config.mixup or config.cutmix or config.imbalance)
