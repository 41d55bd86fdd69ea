"""Prediction on image files: top-k classes with names, probabilities and severity, hedging,
and the decoders of :mod:`hafcls.inference` (CRM ranking, the optimal node, the hF_beta set).

Images are read, decoded and scored ``batch_size`` at a time and results are yielded as they
come, so memory stays that of one batch however many files are given.

The checkpoint carries everything needed (hierarchy, model config, image size, normalisation),
so a run folder or a single ``.pt`` file is enough.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch

from hafcls.engine import distributed as D
from hafcls.engine.builders import model_from_checkpoint
from hafcls.engine.checkpoint import load_checkpoint
from hafcls.engine.decoding import EXACT_HFBETA_MAX_NODES, check_decode
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




def predict_images(run_or_checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike],
                   top_k: int = 5, crm: bool = False, hedge: float | None = None,
                   device: str = "auto", batch_size: int = 32, decode: str | None = None,
                   beta: float = 1.0) -> list[dict]:
    """Predict each image file; one dict per image (see :func:`iter_predictions`)."""
    return list(iter_predictions(run_or_checkpoint, images, top_k=top_k, crm=crm, hedge=hedge,
                                 device=device, batch_size=batch_size, decode=decode,
                                 beta=beta))


def _check_request(images, top_k, hedge, batch_size, decode, beta, crm) -> str:
    if not images:
        raise HafclsError("No image files given.", "list one or more image paths.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise HafclsError(f"--top-k must be a positive integer, got {top_k!r}.", "use e.g. 5.")
    if hedge is not None and not 0.0 <= float(hedge) <= 1.0:
        raise HafclsError(f"--hedge must be a probability in [0, 1], got {hedge}.",
                          "use e.g. --hedge 0.8.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise HafclsError(f"batch_size must be a positive integer, got {batch_size!r}.",
                          "use e.g. 32.")
    return check_decode(("crm" if crm else "argmax") if decode is None else decode, beta)


@torch.no_grad()
def iter_predictions(run_or_checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike],
                     top_k: int = 5, crm: bool = False, hedge: float | None = None,
                     device: str = "auto", batch_size: int = 32, decode: str | None = None,
                     beta: float = 1.0) -> Iterator[dict]:
    """Yield one dict per image, decoding only ``batch_size`` images at a time::

        {"image": path,
         "top": [{"rank", "index", "id", "name", "prob", "distance"}, ...],  # best first
         "hedge": {"id", "name", "prob", "depth", "threshold"},             # with hedge=
         "decision": {...}}                                                # decode node/hfbeta

    ``distance`` is the hierarchical distance to the top-1 class. ``decode``: ``argmax``
    (by probability), ``crm`` (classes ranked by conditional risk; ``crm=True`` is the same),
    ``node`` (also the Bayes-optimal tree node under the node distance cost,
    :func:`hafcls.inference.optimal_node`) or ``hfbeta`` (also the node set maximising the
    expected hF_beta, :func:`hafcls.inference.hfbeta_decode`). Decoded nodes are named by
    ``hierarchy.nodes[i]``. A file that cannot be decoded raises
    :class:`~hafcls.errors.HafclsError` naming it, after the images before it were yielded.
    """
    from hafcls.data.images import CorruptImageError, load_rgb

    decode = _check_request(images, top_k, hedge, batch_size, decode, beta, crm)
    model, hierarchy, score, transform, dev = load_predictor(run_or_checkpoint, device)
    decider = _decider(decode, hierarchy, beta)
    for start in range(0, len(images), batch_size):
        paths = images[start:start + batch_size]
        tensors = []
        for path in paths:
            try:
                tensors.append(transform(load_rgb(path)))
            except CorruptImageError as err:
                raise HafclsError(err.problem, "check the file, or leave it out.") from None
        logits = model(torch.stack(tensors).to(dev)).float().cpu()
        yield from _batch_entries(paths, logits, score, hierarchy, top_k, decode, hedge,
                                  decider)


def _batch_entries(paths, logits, score, hierarchy, top_k, decode, hedge, decider):
    from hafcls.inference import crm as crm_scores
    from hafcls.inference import hedge as hedge_nodes
    from hafcls.inference import topk_with_severity

    probs = score(logits)
    # rank by the logits (no float32 underflow ties); CRM from float64 probabilities
    ranking = crm_scores(score(logits.double()), hierarchy) if decode == "crm" else logits
    tops = topk_with_severity(probs, hierarchy, k=top_k, scores=ranking)
    hedged = hedge_nodes(probs, hierarchy, hedge) if hedge is not None else None
    decisions = decider(score(logits.double())) if decider is not None else None
    for i, top in enumerate(tops):
        entry = {"image": str(paths[i]),
                 "top": [{"rank": r + 1, **c} for r, c in enumerate(top["top"])]}
        if hedged is not None:
            node = hedged.node_ids[i]
            entry["hedge"] = {"id": node, "name": hierarchy.name(node),
                              "prob": float(hedged.probability[i]),
                              "depth": int(hedged.depth[i]), "threshold": float(hedge)}
        if decisions is not None:
            entry["decision"] = decisions[i]
        yield entry


def _decider(decode: str, hierarchy, beta: float):
    """``probs (float64) -> [decision dict per row]`` for ``node`` / ``hfbeta``, else None."""
    from hafcls import inference
    from hafcls.metrics import node_distance_cost

    nodes = hierarchy.nodes
    depths = hierarchy.node_depths

    def describe(i: int) -> dict:
        node = nodes[i]
        return {"id": node, "name": hierarchy.name(node), "depth": int(depths[i])}

    if decode == "node":
        cost = torch.from_numpy(node_distance_cost(hierarchy))

        def node_decision(p):
            chosen = inference.optimal_node(p, hierarchy, cost.numpy())
            expected = (p * cost.index_select(0, chosen)).sum(dim=1)
            return [{"decode": "node", **describe(int(n)), "expected_cost": float(e)}
                    for n, e in zip(chosen.tolist(), expected.tolist())]

        return node_decision
    if decode == "hfbeta":
        exact = hierarchy.num_nodes <= EXACT_HFBETA_MAX_NODES

        def set_decision(p):
            sets, value = inference.hfbeta_decode(p, hierarchy, beta=beta,
                                                  count_root=not exact, return_score=True)
            return [{"decode": "hfbeta", "beta": float(beta), "expected_hf": float(v),
                     "nodes": [describe(int(n)) for n in row.nonzero().flatten().tolist()
                               if int(n) != 0 or not exact]}
                    for row, v in zip(sets, value.tolist())]

        return set_decision
    return None


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
        decision = entry.get("decision")
        if decision and decision["decode"] == "node":
            lines.append(f"  optimal node: {decision['name']} ({decision['id']}, depth "
                         f"{decision['depth']}, expected cost {decision['expected_cost']:.3f})")
        elif decision:
            names = ", ".join(f"{n['name']} ({n['id']})" for n in decision["nodes"])
            lines.append(f"  hF{decision['beta']:g} node set (expected "
                         f"{decision['expected_hf']:.3f}): {names}")
    return "\n".join(lines)
