"""Evaluation: the full metric set of a model on a split, optionally with CRM re-ranking.

Under DDP each rank scores its own shard (no padding) and the metric counters are summed over
ranks, so every sample is counted exactly once (``metrics["n"]`` equals the split's size).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import torch
from torch import nn

from hafcls.engine import distributed as D
from hafcls.engine.builders import (
    autocast_context,
    build_data,
    forward_float32_head,
    load_hierarchy,
    make_eval_loader,
    match_backbone_transforms,
    model_from_checkpoint,
)
from hafcls.engine.checkpoint import check_hierarchy, load_checkpoint
from hafcls.engine.config import TrainConfig
from hafcls.engine.runs import find_checkpoint
from hafcls.errors import HafclsError
from hafcls.methods import scores_from_logits

DEFAULT_KS = (1, 5, 20)


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, hierarchy, device: torch.device, amp: str = "none",
                   score: Callable | None = None, criterion: nn.Module | None = None,
                   crm: bool = False, channels_last: bool = False,
                   ks=DEFAULT_KS, sink: Callable | None = None, train_counts=None) -> dict:
    """Metrics of ``model`` over every batch of ``loader`` (summed over DDP ranks).

    Classes are ranked by their logits, never by float32 probabilities (softmax underflows to
    exact zeros once logit gaps pass ~90); under ``amp`` the backbone runs in bf16/fp16 and the
    head, its logits and the loss in float32. ``score(logits)`` gives the probabilities
    (default softmax; a softmax with any temperature ranks as the logits do) used for CRM,
    calibration and ``sink``; with ``crm=True`` classes are re-ranked by conditional risk
    (lowest expected distance first) computed from float64 probabilities. With ``criterion``
    the mean loss is reported as ``loss``. Unreadable images that
    the dataset skipped (``skip_corrupt``) are left out of ``n`` and counted as ``skipped``
    (present only when some were skipped). ``sink(probs, targets)``, when given, sees every
    batch's probabilities (e.g. :class:`hafcls.engine.decoding.ScoreSink`). ``ece`` is always
    reported; with ``train_counts`` (training images per class) also ``many_shot``,
    ``medium_shot`` and ``few_shot`` (:mod:`hafcls.engine.class_metrics`).
    """
    from hafcls.engine.class_metrics import ClassCounts
    from hafcls.metrics import SeverityMeter

    score = score or scores_from_logits
    meter = SeverityMeter(hierarchy, ks=ks)
    per_class = ClassCounts(hierarchy.num_classes, device)
    crm_fn = _crm_ranker(hierarchy, device) if crm else None
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    seen = 0
    try:
        for batch in loader:
            if batch is None:
                continue
            images, targets = batch
            seen += targets.numel()
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_context(amp, device):
                logits, features = forward_float32_head(model, images)
            logits = logits.float()  # float32 already, unless the model has no separate head
            if criterion is not None:
                loss = criterion(logits, features, targets)
                loss_sum += torch.stack([loss.detach().double() * targets.numel(),
                                         torch.tensor(targets.numel(), device=device,
                                                      dtype=torch.float64)])
            probs = score(logits)
            # rank on the logits (the probabilities' order without their float32 underflow);
            # CRM on float64 probabilities
            ranking = crm_fn(score(logits.double())) if crm_fn is not None else logits
            meter.update(ranking, targets)
            per_class.update(probs, targets)
            if sink is not None:
                sink(probs, targets)
    finally:
        model.train(was_training)
    meter.all_reduce()
    metrics = meter.compute()
    metrics.update(per_class.compute(train_counts))
    skipped = _count_skipped(loader, seen, device)
    if skipped:
        metrics["skipped"] = skipped
    if criterion is not None:
        D.all_reduce_sum(loss_sum)
        metrics["loss"] = float(loss_sum[0] / loss_sum[1].clamp_min(1))
    return metrics


@torch.no_grad()
def collect_logits(model: nn.Module, loader, device: torch.device, amp: str = "none",
                   channels_last: bool = False, features: bool = False):
    """Float32 logits and targets of every batch of ``loader`` (this process's shard), on the
    CPU, as :func:`evaluate_model` computes them; with ``features=True`` also the features."""
    was_training = model.training
    model.eval()
    out: list[list[torch.Tensor]] = [[], [], []]
    try:
        for batch in loader:
            if batch is None:
                continue
            images, targets = batch
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_context(amp, device):
                logits, feats = forward_float32_head(model, images)
            out[0].append(logits.float().cpu())
            out[1].append(targets.cpu())
            if features:
                out[2].append(feats.float().cpu())
    finally:
        model.train(was_training)
    return tuple(torch.cat(o) for o in out[:2 + features])


def fit_split_temperature(model: nn.Module, loader, device: torch.device, amp: str = "none",
                          channels_last: bool = False) -> dict:
    """The softmax temperature of minimum mean NLL on every sample of ``loader`` (gathered
    over DDP ranks; every rank gets the same answer), as ``{"temperature", "nll", "nll_t1",
    "n"}`` (``nll_t1``: the NLL at temperature 1)."""
    from hafcls.metrics import fit_temperature

    logits, targets = collect_logits(model, loader, device, amp, channels_last)
    gathered = D.gather_to_main((logits, targets))  # None on ranks other than 0
    fit = None
    if gathered is not None:
        z = torch.cat([g[0] for g in gathered]).double()
        y = torch.cat([g[1] for g in gathered]).long()
        if y.numel():
            t = float(fit_temperature(z, y))
            nll = [float(torch.nn.functional.cross_entropy(z / temp, y)) for temp in (t, 1.0)]
            fit = {"temperature": t, "nll": nll[0], "nll_t1": nll[1], "n": int(y.numel())}
    return D.broadcast_object(fit)


def calibrate_checkpoint(model: nn.Module, path, loader, device: torch.device,
                         amp: str = "none", channels_last: bool = False,
                         log: Callable[[str], None] | None = None):
    """Load the checkpoint at ``path`` into ``model``, fit its softmax temperature on
    ``loader`` (:func:`fit_split_temperature`) and store it in the checkpoint's metadata as the
    ``score_temperature`` that evaluation, CRM, hedging and prediction use (the fit itself as
    ``temperature_fit``, with the method's own temperature as ``default``). Returns
    ``(fit, score)`` on every rank (``(None, None)`` for an empty split); rank 0 rewrites the
    file."""
    from hafcls.engine.checkpoint import load_weights, save_checkpoint

    ckpt = load_checkpoint(path, map_location=device)
    load_weights(model, ckpt["model"], path, "model")
    fit = fit_split_temperature(model, loader, device, amp, channels_last)
    if fit is None:
        return None, None
    method = dict(ckpt["meta"].get("method", {}))
    earlier = method.get("temperature_fit") or {}  # a re-fit keeps the method's own default
    fit["default"] = float(earlier.get("default", method.get("score_temperature", 1.0)))
    if D.env_info().is_main:
        method.update(score_temperature=fit["temperature"], temperature_fit=fit)
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "meta"},
                        {**ckpt["meta"], "method": method})
    D.barrier()
    if log is not None:
        log(f"softmax temperature {fit['temperature']:.4g} fitted on the validation split "
            f"(NLL {fit['nll_t1']:.4f} at T=1 -> {fit['nll']:.4f})")
    return fit, functools.partial(scores_from_logits, temperature=fit["temperature"])


def _train_counts(bundle, config: TrainConfig):
    """Training images per class of a run trained with ``--imbalance`` (for the shot groups)."""
    from hafcls.engine.builders import train_class_counts

    return train_class_counts(bundle) if config.imbalance else None


def _count_skipped(loader, seen: int, device: torch.device) -> int:
    """Samples the loader's sampler dealt out but no batch delivered (unreadable images),
    summed over DDP ranks; 0 for loaders without a sized sampler."""
    try:
        dealt = len(loader.sampler)
    except (AttributeError, TypeError):
        dealt = seen
    count = torch.tensor([max(dealt - seen, 0)], dtype=torch.float64, device=device)
    D.all_reduce_sum(count)
    return int(count.item())


def _crm_ranker(hierarchy, device: torch.device) -> Callable:
    """Scores for CRM ranking: minus the expected distance of each candidate class."""
    from hafcls.inference import crm

    def rank(probs: torch.Tensor) -> torch.Tensor:
        return crm(probs, hierarchy)

    return rank


def evaluate_checkpoint(run_or_checkpoint: str | os.PathLike, split: str = "test",
                        data: str | None = None, data_dir: str | None = None,
                        hierarchy=None, crm: bool = False, batch_size: int | None = None,
                        workers: int | None = None, device: str = "auto",
                        amp: str | None = None, ks=DEFAULT_KS,
                        skip_corrupt: bool | None = None, decode: str | None = None,
                        beta: float = 1.0, scores_path: str | os.PathLike | None = None) -> dict:
    """Evaluate a trained model (a run folder's ``best.pt``, or any checkpoint) on a split.

    The dataset, its options and the hierarchy default to those the model was trained with;
    ``data``/``data_dir`` point at another copy, ``hierarchy`` (name, file or Hierarchy) must be
    the training one or the checkpoint is refused. ``skip_corrupt`` overrides whether
    unreadable images are skipped (and reported as ``skipped``) or stop the evaluation. Returns
    the metrics plus ``checkpoint``, ``split`` and ``crm``. ``decode`` (argmax, crm, node,
    hfbeta; ``beta`` for hfbeta) adds the decision metrics of :mod:`hafcls.engine.decoding`
    (``crm`` is ``decode="crm"``); ``scores_path`` saves the probabilities as ``.npz``.
    """
    from hafcls.engine.decoding import ScoreSink, check_decode, decision_report

    decode = check_decode("crm" if crm and decode is None else decode, beta)
    if crm and decode != "crm":
        raise HafclsError(f"--crm conflicts with --decode {decode}.",
                          "use --decode crm (or leave out --crm).")
    crm = decode == "crm"
    if split not in ("test", "val", "train"):
        raise HafclsError(f"Unknown split {split!r}.", "use test or val.")
    path = find_checkpoint(run_or_checkpoint)
    info = D.env_info()
    dev = D.resolve_device(device, info)
    joined = info.distributed and not D.is_initialized()
    D.init_distributed(dev, info)
    try:
        ckpt = load_checkpoint(path, map_location="cpu")
        given = load_hierarchy(hierarchy)
        if given is not None:
            check_hierarchy(ckpt["meta"], given, what=f"The checkpoint {path}")
        model, h, score = model_from_checkpoint(ckpt, given, path=path)
        config = TrainConfig.from_dict(ckpt["meta"]["config"], source=f"{path}'s config")
        overrides = {"resume": False}
        if data is not None and data != config.data:
            # another dataset: its own options do not apply
            overrides.update(data=data, data_options={})
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        if batch_size is not None:
            overrides["eval_batch_size"] = batch_size
        if workers is not None:
            overrides["workers"] = workers
        if skip_corrupt is not None:
            base = overrides.get("data_options", config.data_options)
            overrides["data_options"] = {**base, "skip_corrupt": bool(skip_corrupt)}
        if amp is not None:
            overrides["amp"] = amp
        elif config.amp == "fp16" and dev.type != "cuda":
            overrides["amp"] = "none"  # trained with CUDA fp16, evaluated on the CPU
        config.update(overrides, source="the evaluate options")
        bundle = build_data(config, info, hierarchy=h)
        match_backbone_transforms(bundle, model, config)
        check_hierarchy(ckpt["meta"], bundle.hierarchy,
                        what=f"The checkpoint {path} (dataset {config.data})")
        dataset = getattr(bundle, split, None)
        if dataset is None:
            raise HafclsError(f"The {config.data} dataset has no {split} split.",
                              "use --split test or --split val.")
        absent = getattr(dataset, "absent", None)
        if absent is not None:  # a copy of the data without this split's folder
            raise HafclsError(f"No {absent.name!r} folder in {absent.parent}.",
                              "use another --split, or add the folder.")
        model.to(dev)
        loader = make_eval_loader(dataset, config, info, dev)
        sink = ScoreSink()
        metrics = evaluate_model(model, loader, h, dev, amp=config.amp, score=score, crm=crm,
                                 channels_last=config.channels_last, ks=ks, sink=sink,
                                 train_counts=_train_counts(bundle, config))
        metrics.update(decision_report(sink, h, decode, beta, scores_path))
    finally:
        if joined:
            D.cleanup()
    return {**metrics, "checkpoint": str(path), "split": split, "crm": bool(crm),
            "dataset": config.data}


# ---------------------------------------------------------------------- neural collapse
def collapse_measures(model: nn.Module, loader, device: torch.device, amp: str = "none",
                      channels_last: bool = False) -> dict:
    """Neural-collapse measures (:func:`hafcls.metrics.neural_collapse`) of ``model``'s
    features over ``loader`` (one process), with NC4 against the network's own predictions
    (the argmax of its float32 logits: bias and non-linear scores included) and, for a HAFrame
    head, the angular collapse against its frame. The papers measure the training split."""
    from hafcls.metrics import neural_collapse

    logits, targets, features = collect_logits(model, loader, device, amp, channels_last,
                                               features=True)
    head = getattr(model, "head", None)
    vectors = model.class_vectors().detach().float().cpu() if hasattr(model, "class_vectors") \
        else None
    if vectors is not None and vectors.shape[0] != features.shape[1]:
        vectors = None  # the classifier acts on other vectors than these features
    similarity = None
    if getattr(head, "frame_is_target", False) and vectors is not None:
        unit = vectors.double() / vectors.double().norm(dim=0, keepdim=True).clamp_min(1e-12)
        similarity = unit.T @ unit
    return neural_collapse(features, targets, classifier=vectors, frame_similarity=similarity,
                           predictions=logits.argmax(dim=1))


def collapse_checkpoint(run_or_checkpoint: str | os.PathLike, split: str = "train",
                        device: str = "auto", batch_size: int | None = None,
                        workers: int | None = None) -> dict:
    """:func:`collapse_measures` of a trained model on a split of its dataset; by default the
    training split, as in the papers, seen through the evaluation transform (no augmentation)."""
    if split not in ("train", "val", "test"):
        raise HafclsError(f"Unknown split {split!r}.", "use train, val or test.")
    path = find_checkpoint(run_or_checkpoint)
    ckpt = load_checkpoint(path, map_location="cpu")
    model, h, _ = model_from_checkpoint(ckpt, path=path)
    config = TrainConfig.from_dict(ckpt["meta"]["config"], source=f"{path}'s config")
    overrides = {"resume": False, "eval_batch_size": batch_size, "workers": workers}
    config.update({k: v for k, v in overrides.items() if v is not None},
                  source="the collapse options")
    info = D.DistInfo()
    bundle = build_data(config, info, hierarchy=h)
    match_backbone_transforms(bundle, model, config)
    dataset = getattr(bundle, split, None)
    if dataset is None:
        raise HafclsError(f"The {config.data} dataset has no {split} split.",
                          "use another --split.")
    evaluation = bundle.test if bundle.test is not None else bundle.val
    if split == "train" and hasattr(dataset, "transform") and evaluation is not None:
        dataset.transform = evaluation.transform
    dev = D.resolve_device(device, info)
    model.to(dev)
    loader = make_eval_loader(dataset, config, info, dev)
    return {**collapse_measures(model, loader, dev, config.amp, config.channels_last),
            "split": split, "checkpoint": str(path)}


# ---------------------------------------------------------------------- formatting
def _pct(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * value:.2f}%"


def _num(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def format_metrics(m: dict) -> str:
    """One line: top-1, mistake severity and HierDist@k."""
    parts = [f"top1 {_pct(m.get('top1'))}"]
    if "mistake_severity" in m:
        parts.append(f"severity {_num(m['mistake_severity'])}")
    parts += [f"{k} {_num(v)}" for k, v in m.items() if k.startswith("hierdist@")]
    if "loss" in m:
        parts.append(f"loss {m['loss']:.4f}")
    if m.get("skipped"):
        parts.append(f"(skipped {m['skipped']} unreadable images)")
    return "  ".join(parts)


def metrics_table(m: dict) -> str:
    """Aligned two-column table of every metric (rates as percentages)."""
    rows = []
    for key, value in m.items():
        if key in ("checkpoint", "split", "crm", "dataset"):
            continue
        if key in ("top1", "top5", "full_path_acc", "node_acc") or key.startswith("acc@"):
            text = _pct(value)
        elif key in ("n", "skipped"):
            text = str(value)
        elif isinstance(value, (int, float)):
            text = _num(value)
        else:
            continue
        rows.append((key, text))
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    return "\n".join(f"{k:<{width}}  {v:>{vwidth}}" for k, v in rows)
