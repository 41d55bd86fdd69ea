"""Decisions matched to the metric at evaluation time (docs/ranking-and-decoding.md).

``hafcls evaluate --decode argmax|crm|node|hfbeta`` scores every sample once, keeps the class
probabilities of the split (N x K, float32, on the CPU: the calibration bins, the equal-mass
severity bins and the risk-coverage sweep need all samples at once), and reports on top of the
ranking metrics of :func:`hafcls.engine.evaluate.evaluate_model`:

- for every decode: full-path accuracy, ECE (15 bins), ECE per depth, the risk-coverage area
  (``aurc``), and hierarchical precision / recall / F of the decision (root excluded, micro:
  ``hP``, ``hR``, ``hF``; and the per-sample mean ``hF_macro``);
- ``argmax`` / ``crm`` / ``node`` (one node per sample): the mean expected cost
  ``E_p[C(ŷ, Y)]`` and the mean realised cost ``C(ŷ, y)`` under
  :func:`hafcls.metrics.node_distance_cost` (the published distance extended to internal
  nodes), and the severity-ECE of that decision;
- ``node``: the Bayes-optimal node (:func:`hafcls.inference.optimal_node`) under
  :func:`hafcls.metrics.hedging_cost` (a wrong node costs 1, a correct one 0.6·(1 − coverage));
  under the distance cost the optimal node would always be a class, i.e. CRM. Its expected and
  realised cost and severity-ECE are under that hedging cost; plus ``node_acc`` (the node is the
  true class or one of its ancestors) and its mean depth;
- ``hfbeta``: the node set maximising the expected hF_β (:func:`hafcls.inference.hfbeta_decode`;
  exact with the root excluded, as it is scored, up to ``EXACT_HFBETA_MAX_NODES`` nodes, the
  paper's root-counting decoder beyond) and ``hF_beta`` of those sets (root excluded; micro,
  and ``hF_beta_macro``, the per-sample mean the decoder maximises in expectation). A node
  set has no single cost row, so its severity-ECE is that of the argmax class.

Every number comes from the library functions of :mod:`hafcls.metrics` and
:mod:`hafcls.inference` called on the collected probabilities; nothing is re-implemented here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from hafcls.engine import distributed as D
from hafcls.errors import HafclsError

DECODES = ("argmax", "crm", "node", "hfbeta")
_TINY = torch.finfo(torch.float64).tiny  # log(0) guard: softmax(log p) must give p back
#: Trees up to this many nodes get the exact hF_β-optimal set with the root left out, as
#: hierarchical_prf scores it (O(nodes²) per sample); larger ones the paper's root-counting
#: decoder, whose probability bound keeps it fast.
EXACT_HFBETA_MAX_NODES = 256


def check_decode(decode: str | None, beta: float = 1.0) -> str:
    """The decode name (``None`` means ``argmax``) after checking it and ``beta``."""
    decode = "argmax" if decode is None else str(decode).lower()
    if decode not in DECODES:
        raise HafclsError(f"Unknown decode {decode!r}.",
                          f"use one of: {', '.join(DECODES)}.")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) \
            or not math.isfinite(beta) or beta <= 0:
        raise HafclsError(f"beta must be a finite number > 0, got {beta!r}.",
                          "pass e.g. --beta 1 (beta < 1 favours precision, > 1 recall).")
    return decode


class ScoreSink:
    """Collects each batch's probabilities and targets on the CPU (call it per batch)."""

    def __init__(self) -> None:
        self.probs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def __call__(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        self.probs.append(probs.detach().float().cpu())
        self.targets.append(targets.detach().long().cpu())

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All ranks' probabilities and targets on the main rank (None on the others)."""
        k = self.probs[0].shape[1] if self.probs else 0
        mine = (torch.cat(self.probs) if self.probs else torch.zeros(0, k),
                torch.cat(self.targets) if self.targets else torch.zeros(0, dtype=torch.long))
        parts = D.gather_to_main(mine)
        if parts is None:
            return None
        parts = [p for p in parts if p[0].numel()]
        if not parts:
            raise HafclsError("The evaluation split has no samples.",
                              "check the dataset folder and its split files.")
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _on_true_path(nodes: torch.Tensor, targets: torch.Tensor, hierarchy) -> torch.Tensor:
    """Whether each node is the true class or one of its ancestors."""
    anc = torch.from_numpy(hierarchy.ancestor_matrix)
    depth = torch.from_numpy(hierarchy.node_depths).index_select(0, nodes)
    depth = depth.clamp_max(anc.shape[1] - 1)
    return anc.index_select(0, targets).gather(1, depth[:, None])[:, 0] == nodes


def decision_metrics(probs, targets, hierarchy, decode: str = "argmax",
                     beta: float = 1.0) -> dict:
    """The metrics of the module docstring for N x K ``probs`` (rows summing to 1)."""
    from hafcls import inference
    from hafcls import metrics as M

    decode = check_decode(decode, beta)
    p = torch.as_tensor(probs).double()
    p = p / p.sum(dim=1, keepdim=True)
    y = torch.as_tensor(targets).long()
    scores = torch.log(p.clamp_min(_TINY))  # the metrics take logits / log-probabilities
    out: dict = {"decode": decode}
    out["full_path_acc"] = M.full_path_accuracy(scores, y, hierarchy)
    out["ece"] = M.ece(scores, y)
    out.update(M.per_level_ece(scores, y, hierarchy))
    cost = M.node_distance_cost(hierarchy)
    class_nodes = torch.from_numpy(hierarchy.class_nodes)
    if decode == "hfbeta":
        # exact (root excluded, as scored) on small trees; the paper's bounded decoder beyond
        exact = hierarchy.num_nodes <= EXACT_HFBETA_MAX_NODES
        sets = inference.hfbeta_decode(p, hierarchy, beta=beta, count_root=not exact)
        decision = sets
        out["severity_ece"] = M.severity_ece(scores, y, hierarchy, cost=cost)
        out["set_size"] = float(sets.sum(dim=1).double().mean())
    else:
        if decode == "node":
            # under the distance cost the optimal node is always a class (= CRM): back off
            # under the hedging cost, where a correct coarse node is cheaper than a wrong class
            cost = M.hedging_cost(hierarchy)
            node = inference.optimal_node(p, hierarchy, cost)
        else:
            ranking = inference.crm(p, hierarchy) if decode == "crm" else p
            node = class_nodes.index_select(0, M.topk_indices(ranking, 1)[:, 0].cpu())
        rows = torch.from_numpy(cost).index_select(0, node)
        out["expected_cost"] = float((rows * p).sum(dim=1).mean())
        out["cost"] = float(rows.gather(1, y[:, None]).mean())
        out["severity_ece"] = M.severity_ece(scores, y, hierarchy, decisions=node, cost=cost)
        if decode == "node":
            out["node_acc"] = float(_on_true_path(node, y, hierarchy).double().mean())
            depths = torch.from_numpy(hierarchy.node_depths).index_select(0, node)
            out["node_depth"] = float(depths.double().mean())
        decision = node
    from hafcls.metrics.hierarchical import prf_average, prf_counts

    counts = prf_counts(y, decision, hierarchy)  # one N x nodes closure for micro and macro
    prf = prf_average(*counts, "micro", beta)
    macro = prf_average(*counts, "macro", beta)
    out.update(hP=prf["precision"], hR=prf["recall"], hF=prf["f1"], hF_macro=macro["f1"])
    if decode == "hfbeta":  # the decoder maximises the expected per-sample (macro) hF_β
        out.update(beta=float(beta), hF_beta=prf["f_beta"], hF_beta_macro=macro["f_beta"])
    out["aurc"] = float(inference.risk_coverage(p, y, hierarchy)["aurc"])
    return out


def save_scores(path: str | os.PathLike, probs: torch.Tensor, targets: torch.Tensor,
                hierarchy) -> Path:
    """Write ``probs`` (N x K float32), ``targets`` and the class ids to an ``.npz`` file."""
    from hafcls.io import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, probs=probs.float().numpy(), targets=targets.numpy(),
                                classes=np.array(hierarchy.classes))

    return atomic_write(path, write)


def decision_report(sink: ScoreSink, hierarchy, decode: str, beta: float,
                    scores_path: str | os.PathLike | None = None) -> dict:
    """:func:`decision_metrics` of the collected scores, the same dict on every rank."""
    gathered = sink.gathered()
    result = None
    if gathered is not None:
        probs, targets = gathered
        if scores_path is not None:
            save_scores(scores_path, probs, targets, hierarchy)
        result = decision_metrics(probs, targets, hierarchy, decode, beta)
    return D.broadcast_object(result)
