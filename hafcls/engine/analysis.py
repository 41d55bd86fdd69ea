"""Test-set analysis of a run's best checkpoint, cached in ``run_dir/analysis``.

The analysis re-scores the best-validation checkpoint on the test split (the validation split if
the dataset has no test split) once, streaming batch by batch, and keeps: the metrics of
:func:`hafcls.metrics.evaluate` on the method's probabilities and on CRM scores
(:func:`hafcls.inference.crm`), the histogram of top-1 distances, HierDist@k for k = 1..K (at
most ``max_k``, from the same :class:`hafcls.metrics.SeverityMeter`), and the class means of the
features with the target cosines S (for the similarity figure). It is reused while the
checkpoint is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hafcls.engine.compare_tables import CRM_PREFIX
from hafcls.engine.config import TrainConfig
from hafcls.engine.runs import RunFolder
from hafcls.errors import HafclsError
from hafcls.io import atomic_write, atomic_write_text
from hafcls.methods.haframe import similarity_target

DEFAULT_MAX_K = 100
ANALYSIS_VERSION = 2  # 2: hops@k, hops, ECE and hF1 of the hF1-optimal node set
GEOMETRY_MAX_CLASSES = 2000  # K x K matrices beyond this are neither stored nor drawn


def _checkpoint_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"checkpoint": str(path.name), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _analysis_files(run_dir: Path, split: str) -> tuple[Path, Path]:
    folder = run_dir / "analysis"
    return folder / f"{split}.json", folder / f"{split}_geometry.npz"


def analyse_run(run_dir: str | Path, device: str = "auto", max_k: int = DEFAULT_MAX_K,
                refresh: bool = False, workers: int | None = None,
                batch_size: int | None = None, hierarchy=None) -> dict:
    """Test-set analysis of a run's best checkpoint (cached in ``run_dir/analysis``).

    Returns a dict with ``method``, ``seed``, ``split``, ``n``, ``metrics`` and ``crm_metrics``
    (:func:`hafcls.metrics.evaluate` without / with CRM re-ranking), ``mistake_histogram`` and
    ``crm_mistake_histogram`` (samples per top-1 distance, index 0 = correct),
    ``hierdist_curve`` and ``crm_hierdist_curve`` (HierDist@k for k = 1..min(K, max_k)),
    ``best_epoch`` and ``train_time_s`` (from ``metrics.json`` when present).

    ``hierarchy`` is the tree every test-time step uses: the metrics, CRM and the hedged
    decoding. It must hold the run's classes in the same order. By default it is the run's own
    tree, except for a run trained on a permuted tree (the random-hierarchy control), which is
    scored with the tree its permutation was drawn from.
    """
    from hafcls.engine.runs import find_checkpoint

    run_dir = Path(run_dir)
    ckpt_path = find_checkpoint(run_dir)
    if hierarchy is None:  # a random-hierarchy control is scored with the tree it permutes
        hierarchy = _control_source(run_dir)
    stamp = {**_checkpoint_stamp(ckpt_path), "max_k": int(max_k), "version": ANALYSIS_VERSION,
             "hierarchy": None if hierarchy is None else hierarchy.fingerprint()}
    if not refresh:
        for split in ("test", "val"):
            cached = _read_json(_analysis_files(run_dir, split)[0])
            if cached is not None and cached.get("stamp") == stamp:
                return cached
    result, geometry = _score_checkpoint(ckpt_path, device, max_k, workers, batch_size,
                                         hierarchy)
    result["stamp"] = stamp
    result.update(_run_summary(run_dir))
    json_path, npz_path = _analysis_files(run_dir, result["split"])
    if geometry is not None:
        atomic_write(npz_path, lambda p: _save_npz(p, geometry))
    atomic_write_text(json_path, json.dumps(result, indent=1, allow_nan=True) + "\n")
    return result


def _control_source(run_dir: Path):
    """The true tree of a run trained on a permuted one (``METHOD@permuted``), else None."""
    from hafcls.engine.compare_control import unpermuted
    from hafcls.hierarchy import Hierarchy

    path = RunFolder(run_dir).hierarchy_file
    if not path.is_file():
        return None
    return unpermuted(Hierarchy.from_json(path))


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable (then recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _save_npz(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _run_summary(run_dir: Path) -> dict:
    """Best epoch and wall time from the engine's ``metrics.json`` (None when absent)."""
    folder = RunFolder(run_dir)
    out = {"best_epoch": None, "train_time_s": None, "engine_test": None}
    if folder.metrics_file.is_file():
        try:
            data = json.loads(folder.metrics_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return out
        out.update(best_epoch=data.get("best_epoch"), train_time_s=data.get("wall_time_s"),
                   engine_test=data.get("test"))
    return out


def load_geometry(run_dir: str | Path, split: str | None = None) -> dict | None:
    """``{"target": S, "class_means": K x d}`` saved by :func:`analyse_run`, or None."""
    run_dir = Path(run_dir)
    for name in ((split,) if split else ("test", "val")):
        _, npz_path = _analysis_files(run_dir, name)
        if npz_path.is_file():
            with np.load(npz_path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
    return None


def _score_checkpoint(ckpt_path: Path, device: str, max_k: int, workers, batch_size,
                      eval_tree=None):
    """Stream the evaluation split through the checkpoint's model (see :func:`analyse_run`)."""
    from hafcls.engine import distributed as D
    from hafcls.engine.builders import (
        autocast_context,
        build_data,
        forward_float32_head,
        make_eval_loader,
        match_backbone_transforms,
        model_from_checkpoint,
    )
    from hafcls.engine.checkpoint import load_checkpoint

    if max_k < 1:
        raise HafclsError(f"max_k must be at least 1, got {max_k}.", "use e.g. max_k=100.")
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    model, hierarchy, score = model_from_checkpoint(ckpt, path=ckpt_path)
    if eval_tree is None:
        eval_tree = hierarchy
    elif list(eval_tree.classes) != list(hierarchy.classes):
        raise HafclsError(f"The evaluation tree's classes differ from those {ckpt_path} was "
                          "trained on (or their order does).",
                          "evaluate with a tree over the same classes in the same order.")
    config = TrainConfig.from_dict(ckpt["meta"]["config"], source=f"{ckpt_path}'s config")
    overrides = {"resume": False, "device": device}
    if workers is not None:
        overrides["workers"] = workers
    if batch_size is not None:
        overrides["eval_batch_size"] = batch_size
    config.update(overrides, source="the analysis options")
    info = D.DistInfo()  # one process scores the whole split
    dev = D.resolve_device(config.device, info)
    bundle = build_data(config, info, hierarchy=hierarchy)
    match_backbone_transforms(bundle, model, config)
    split = "test" if getattr(bundle, "test", None) is not None else "val"
    dataset = getattr(bundle, split)
    if dataset is None:
        raise HafclsError(f"The {config.data} dataset has neither a test nor a validation split.",
                          "give a dataset with a test split to compare methods on.")
    model.to(dev)
    loader = make_eval_loader(dataset, config, info, dev)
    acc = _StreamingAnalysis(eval_tree, max_k, dev)
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            images, targets = batch
            images = images.to(dev)
            targets = targets.to(dev)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # the head in float32 under AMP, as in training and evaluation: the same rankings
            with autocast_context(config.amp, dev):
                logits, features = forward_float32_head(model, images)
            acc.update(score(logits.float()), targets, features.float())
    result = acc.result()
    result.update(method=config.method, seed=config.seed, split=split, data=config.data,
                  model=config.model, epochs=config.epochs,
                  num_classes=eval_tree.num_classes, height=eval_tree.height,
                  trained_on=hierarchy.meta.get("name"))
    geometry = None
    if hierarchy.num_classes <= GEOMETRY_MAX_CLASSES:
        geometry = {"class_means": acc.class_means().astype(np.float32),
                    "target": similarity_target(model, hierarchy, config.data)
                    .astype(np.float32),
                    # the model's own frame is its target (else the dataset preset's S)
                    "target_is_frame": np.bool_(getattr(getattr(model, "head", None),
                                                        "frame_is_target", False))}
    return result, geometry


class _StreamingAnalysis:
    """Metrics, top-1 distance histograms and HierDist@k curves, with and without CRM, plus
    per-class feature sums, accumulated batch by batch (nothing N x K is kept).

    One :class:`~hafcls.metrics.SeverityMeter` per variant computes both the metrics and the
    HierDist@k curve (its ``ks`` extended to 1..k_max), so HierDist@k has one implementation."""

    def __init__(self, hierarchy, max_k: int, device: torch.device):
        from hafcls.metrics import SeverityMeter, as_distance_matrix
        from hafcls.metrics.severity import DEFAULT_KS

        self.hierarchy = hierarchy
        dist = np.asarray(as_distance_matrix(hierarchy))
        self.d_max = int(dist.max())
        self.distance = torch.from_numpy(dist.astype(np.int64)).to(device)
        self.k = hierarchy.num_classes
        self.k_max = min(int(max_k), self.k)
        self.reported = {f"{m}@{k}" for k in DEFAULT_KS for m in ("hierdist", "hops")}
        ks = sorted({*DEFAULT_KS, *range(1, self.k_max + 1)})
        self.meters = {v: SeverityMeter(hierarchy, ks=ks) for v in ("", CRM_PREFIX)}
        self.hist = {v: torch.zeros(self.d_max + 1, dtype=torch.int64, device=device)
                     for v in self.meters}
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(self.k, dtype=torch.float64, device=device)
        self.n = 0
        # per sample: the confidence and correctness of each variant's top-1 (ECE), the true
        # class and the hF1-optimal node set (hF1); O(N) or O(N x nodes) booleans in all
        self.confidence: dict[str, list] = {v: [] for v in self.meters}
        self.correct: dict[str, list] = {v: [] for v in self.meters}
        self.targets: list = []
        self.node_sets: list = []

    def update(self, probs: torch.Tensor, targets: torch.Tensor, features: torch.Tensor) -> None:
        from hafcls.inference import crm
        from hafcls.metrics import topk_indices

        for variant, scores in (("", probs), (CRM_PREFIX, crm(probs, self.hierarchy))):
            self.meters[variant].update(scores, targets)
            top1 = topk_indices(scores, 1)[:, 0]
            # ECE of the decision made: the model's probability of the chosen class
            self.confidence[variant].append(probs.gather(1, top1[:, None])[:, 0].double().cpu())
            self.correct[variant].append((top1 == targets).cpu())
            self.hist[variant] += torch.bincount(self.distance[targets, top1],
                                                 minlength=self.d_max + 1)
        if self.sums is None:
            self.sums = torch.zeros(self.k, features.shape[1], dtype=torch.float64,
                                    device=features.device)
        self.sums.index_add_(0, targets, features.double())
        self.counts += torch.bincount(targets, minlength=self.k).double()
        self.n += int(targets.numel())
        self.targets.append(targets.cpu())
        self.node_sets.append(hf1_optimal_sets(probs, self.hierarchy))

    def class_means(self) -> np.ndarray:
        means = self.sums / self.counts.clamp_min(1)[:, None]
        return means.cpu().numpy()

    def result(self) -> dict:
        if self.n == 0:
            raise HafclsError("The evaluation split has no samples.",
                              "check the dataset folder and its split files.")
        out: dict = {"n": self.n}
        for variant, meter in self.meters.items():
            metrics = meter.compute()
            out[f"{variant}metrics"] = {
                key: value for key, value in metrics.items()
                if not key.startswith("hierdist@") or key in self.reported}
            out[f"{variant}mistake_histogram"] = self.hist[variant].cpu().tolist()
            out[f"{variant}hierdist_curve"] = [metrics[f"hierdist@{k}"]
                                               for k in range(1, self.k_max + 1)]
            out[f"{variant}metrics"]["ece"] = _ece(torch.cat(self.confidence[variant]),
                                                   torch.cat(self.correct[variant]))
        out["metrics"]["hf1"] = hierarchical_f1(torch.cat(self.targets),
                                                np.concatenate(self.node_sets), self.hierarchy)
        return out


def hf1_optimal_sets(probs: torch.Tensor, hierarchy) -> np.ndarray:
    """N x nodes boolean node sets maximising the expected hF1 (the hedged decision)."""
    from hafcls.engine.decoding import EXACT_HFBETA_MAX_NODES
    from hafcls.inference import hfbeta_decode

    # exact (root excluded) on small trees, the paper's bounded decoder beyond, as evaluate
    exact = hierarchy.num_nodes <= EXACT_HFBETA_MAX_NODES
    p = probs.detach().double().cpu()
    p = p / p.sum(1, keepdim=True)
    sets = hfbeta_decode(p, hierarchy, beta=1.0, count_root=not exact)
    return np.asarray(sets, dtype=bool)


def hierarchical_f1(targets: torch.Tensor, node_sets: np.ndarray, hierarchy) -> float:
    """Micro hF1 (root excluded) of the decoded node sets against the true classes."""
    from hafcls.metrics import hierarchical_prf

    return float(hierarchical_prf(targets.numpy(), node_sets, hierarchy)["f1"])


def _ece(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """15-bin ECE of top-1 decisions (hafcls.metrics.calibration's binning)."""
    from hafcls.metrics import binned_calibration_error

    return float(binned_calibration_error(confidence, correct.double(), 15))
