"""Prediction on image files: top-k classes with names, probabilities and severity, and hedging.

The checkpoint carries everything needed (hierarchy, model config, image size, normalisation),
so a run folder or a single ``.pt`` file is enough.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from hafcls.engine import distributed as D
from hafcls.engine.builders import model_from_checkpoint
from hafcls.engine.checkpoint import load_checkpoint
from hafcls.engine.runs import find_checkpoint
from hafcls.errors import HafclsError


def load_predictor(run_or_checkpoint: str | os.PathLike, device: str = "auto"):
    """``(model, hierarchy, score, transform, device)`` of a trained checkpoint."""
    from hafcls.data.transforms import build_transforms

    path = find_checkpoint(run_or_checkpoint)
    ckpt = load_checkpoint(path, map_location="cpu")
    model, hierarchy, score = model_from_checkpoint(ckpt, path=path)
    data = ckpt["meta"].get("data", {})
    size = data.get("image_size") or ckpt["meta"]["config"].get("image_size") or 224
    kwargs = {k: data[k] for k in ("mean", "std") if data.get(k)}
    transform = build_transforms(int(size), train=False, **kwargs)
    dev = D.resolve_device(device, D.DistInfo())
    model.to(dev)
    return model, hierarchy, score, transform, dev


@torch.no_grad()
def predict_images(run_or_checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike],
                   top_k: int = 5, crm: bool = False, hedge: float | None = None,
                   device: str = "auto", batch_size: int = 32) -> list[dict]:
    """Predict each image file; one dict per image::

        {"image": path,
         "top": [{"rank", "index", "id", "name", "prob", "distance"}, ...],  # best first
         "hedge": {"id", "name", "prob", "depth"}}                            # with hedge=

    ``distance`` is the hierarchical distance to the top-1 class. With ``crm=True`` classes are
    ranked by conditional risk instead of probability. A file that cannot be decoded raises
    :class:`~hafcls.errors.HafclsError` naming it.
    """
    from hafcls.data.images import CorruptImageError, load_rgb
    from hafcls.inference import crm as crm_scores
    from hafcls.inference import hedge as hedge_nodes
    from hafcls.inference import topk_with_severity

    if not images:
        raise HafclsError("No image files given.", "list one or more image paths.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise HafclsError(f"--top-k must be a positive integer, got {top_k!r}.", "use e.g. 5.")
    if hedge is not None and not 0.0 <= float(hedge) <= 1.0:
        raise HafclsError(f"--hedge must be a probability in [0, 1], got {hedge}.",
                          "use e.g. --hedge 0.8.")
    model, hierarchy, score, transform, dev = load_predictor(run_or_checkpoint, device)
    # decode every file first, so a damaged one fails before any compute
    tensors = []
    for path in images:
        try:
            tensors.append(transform(load_rgb(path)))
        except CorruptImageError as err:
            raise HafclsError(err.problem, "check the file, or leave it out.") from None
    results: list[dict] = []
    for start in range(0, len(tensors), batch_size):
        batch = torch.stack(tensors[start:start + batch_size]).to(dev)
        probs = score(model(batch)).cpu()
        ranking = crm_scores(probs, hierarchy) if crm else None
        tops = topk_with_severity(probs, hierarchy, k=top_k, scores=ranking)
        hedged = hedge_nodes(probs, hierarchy, hedge) if hedge is not None else None
        for i, top in enumerate(tops):
            entry = {"image": str(images[start + i]),
                     "top": [{"rank": r + 1, **c} for r, c in enumerate(top["top"])]}
            if hedged is not None:
                node = hedged.node_ids[i]
                entry["hedge"] = {"id": node, "name": hierarchy.name(node),
                                  "prob": float(hedged.probability[i]),
                                  "depth": int(hedged.depth[i]), "threshold": float(hedge)}
            results.append(entry)
    return results


def format_predictions(results: list[dict]) -> str:
    """Aligned text: per image, rank, probability, distance to top-1 and class name."""
    lines = []
    for entry in results:
        lines.append(entry["image"])
        width = max(len(c["name"]) for c in entry["top"])
        lines.append(f"  {'rank':>4}  {'prob':>7}  {'dist':>4}  {'class':<{width}}  id")
        for c in entry["top"]:
            lines.append(f"  {c['rank']:>4}  {100 * c['prob']:6.2f}%  {c['distance']:>4}  "
                         f"{c['name']:<{width}}  {c['id']}")
        if "hedge" in entry:
            h = entry["hedge"]
            lines.append(f"  hedged (p >= {h['threshold']:g}): {h['name']} ({h['id']}, depth "
                         f"{h['depth']}, p = {100 * h['prob']:.2f}%)")
    return "\n".join(lines)
