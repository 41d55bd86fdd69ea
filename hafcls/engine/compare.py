"""Compare methods over several seeds: train (resumably), evaluate with and without CRM, tabulate
mean ± 95% t-intervals and draw the figures.

```
OUTPUT/
  runs/<method>/seed<k>/     one ordinary run folder per method and seed (see engine.runs),
    analysis/test.json       plus the test-set analysis below (a cache, redrawn when stale)
    analysis/test_geometry.npz
  results.csv                one row per run: every metric with and without CRM
  results.md                 mean ± 95% t-interval per method (hafcls.metrics.summarize)
  plots/*.png                similarity, mistake distances, HierDist@k, training curves
```

A run whose ``metrics.json`` exists is finished and is never trained again, so calling
:func:`compare` twice trains nothing the second time; a run that holds a config or checkpoint
but no ``metrics.json`` was interrupted and is resumed from ``last.pt``. A finished run trained
with other options than the ones asked for is refused (it would silently mix experiments).

The analysis re-scores the best-validation checkpoint on the test split (the validation split if
the dataset has no test split) once, streaming batch by batch, and keeps: the metrics of
:func:`hafcls.metrics.evaluate` on the method's probabilities and on CRM scores
(:func:`hafcls.inference.crm`), the histogram of top-1 distances, HierDist@k for k = 1..K (at
most ``max_k``), and the class means of the features with the target cosines S (for the
similarity figure). It is stored in ``analysis/`` and reused while the checkpoint is unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hafcls.engine.config import TrainConfig
from hafcls.engine.runs import RunFolder
from hafcls.errors import HafclsError
from hafcls.io import atomic_write, atomic_write_text

#: Metrics of the comparison table, in column order.
COMPARED_METRICS = ("top1", "mistake_severity", "hierdist@1", "hierdist@5", "hierdist@20")
METRIC_TITLES = {"top1": "top-1 (%) ↑", "mistake_severity": "mistake severity ↓",
                 "hierdist@1": "HierDist@1 ↓", "hierdist@5": "HierDist@5 ↓",
                 "hierdist@20": "HierDist@20 ↓"}
CRM_PREFIX = "crm_"
DEFAULT_MAX_K = 100
ANALYSIS_VERSION = 1
GEOMETRY_MAX_CLASSES = 2000  # K x K matrices beyond this are neither stored nor drawn

# config keys that change how a run is executed, not what it trains
RUNTIME_KEYS = frozenset({"workers", "progress", "device", "checkpoint_every", "eval_batch_size",
                          "resume", "output", "data_dir", "download", "deterministic"})

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- arguments
def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """Method names from ``"ce,haframe"`` or a list, checked against the registry."""
    from hafcls.methods import available_methods

    names = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise HafclsError("No methods to compare.", "pass e.g. --methods ce,haframe.")
    known = available_methods()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HafclsError(f"Unknown method(s): {', '.join(unknown)}.",
                          f"use some of {', '.join(known)}.")
    if len(set(names)) != len(names):
        raise HafclsError(f"A method is listed twice in {', '.join(names)}.",
                          "name each method once.")
    return names


def parse_seeds(seeds: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count (``3`` -> 0, 1, 2) or an explicit list (``"0,4,7"``)."""
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            seeds = int(text) if "," not in text else [int(s) for s in text.split(",") if s]
        except ValueError:
            raise HafclsError(f"--seeds must be a count or a comma list of seeds, got {text!r}.",
                              "pass e.g. --seeds 5 or --seeds 0,1,2.") from None
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise HafclsError(f"The number of seeds must be at least 1, got {seeds}.",
                              "pass e.g. --seeds 5 (the paper's count).")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise HafclsError(f"Seeds must be distinct non-negative integers, got {out}.",
                          "pass e.g. --seeds 0,1,2.")
    return out


def run_path(output: str | Path, method: str, seed: int) -> Path:
    """The run folder of ``method`` and ``seed`` inside a comparison folder."""
    return Path(output) / "runs" / method / f"seed{seed}"


# ---------------------------------------------------------------------- training
def method_options_for(options: Mapping, method: str) -> dict:
    """The ``method_options`` of one method in a comparison.

    Keys that name a method (``{"haframe": {"gamma": 3}}``) hold that method's own options;
    the other keys apply to every method. ``--set method_options.haframe={gamma: 3}`` thus
    changes HAFrame's γ without touching the baselines.
    """
    from hafcls.methods import available_methods

    names = set(available_methods())
    shared = {k: v for k, v in options.items() if k not in names}
    for name in sorted(names & set(options)):
        if not isinstance(options[name], Mapping):
            raise HafclsError(f"method_options.{name} must be a mapping, got {options[name]!r}.",
                              f"write e.g. --set method_options.{name}={{alpha: 0.5}}.")
    return {**shared, **options.get(method, {})}


def run_config(base: TrainConfig, method: str, seed: int, output: str | Path) -> TrainConfig:
    """``base`` with the method, seed, run folder and method options of one comparison run."""
    cfg = TrainConfig.from_dict(base.to_dict(), source="the comparison options")
    cfg.update({"method": method, "seed": seed, "output": str(run_path(output, method, seed)),
                "resume": False,
                "method_options": method_options_for(base.method_options, method)})
    cfg.require_run_fields()
    return cfg


def check_method_options(methods: Sequence[str], config: TrainConfig) -> None:
    """Fail before any training when a method does not accept its ``method_options``."""
    from hafcls.methods import get_method

    for method in methods:
        options = method_options_for(config.method_options, method)
        if not options:
            continue
        try:
            get_method(method, dataset=config.data).with_options(**options)
        except HafclsError as err:
            raise HafclsError(
                f"{err.problem} In a comparison, method_options apply to every method unless "
                "given under a method's name.",
                f"give options to one method only, e.g. --set method_options.haframe="
                f"{{alpha: 0.5}}; {err.fix}") from None


def check_same_experiment(stored: Mapping, wanted: TrainConfig, where: Path) -> None:
    """Refuse a finished run trained with other options than ``wanted`` (runtime keys aside)."""
    current = wanted.to_dict()
    for key, value in current.items():
        if key in RUNTIME_KEYS or key not in stored:
            continue
        if stored[key] != value:
            raise HafclsError(
                f"{where} was trained with {key}={stored[key]!r}, but this comparison asks for "
                f"{key}={value!r}.",
                "use another --output folder for the new setting, or delete that run folder "
                "to retrain it.")


def train_runs(methods: Sequence[str], seeds: Sequence[int], config: TrainConfig,
               output: str | Path, train_fn: Callable | None = None,
               log: Log | None = None) -> tuple[list[Path], list[Path]]:
    """Train every method x seed that has not finished yet; return ``(trained, skipped)``.

    A run folder with ``metrics.json`` is finished (skipped, after checking that it was trained
    with the same options); one with a config or checkpoint but no ``metrics.json`` is resumed.
    """
    if train_fn is None:
        from hafcls.engine.train import train as train_fn
    log = log or _stderr
    check_method_options(methods, config)
    plan = [(method, seed, run_config(config, method, seed, output))
            for method in methods for seed in seeds]
    # every finished run is checked before anything trains, so a mismatch fails at once
    for _, _, cfg in plan:
        folder = RunFolder(cfg.output)
        if folder.metrics_file.is_file():
            check_same_experiment(folder.stored_config() or {}, cfg, folder.path)
    trained, skipped = [], []
    for done, (method, seed, cfg) in enumerate(plan, start=1):
        folder = RunFolder(cfg.output)
        if folder.metrics_file.is_file():
            log(f"[{done}/{len(plan)}] {method} seed {seed}: finished earlier, skipped.")
            skipped.append(folder.path)
            continue
        resume = folder.holds_run()
        cfg.update({"resume": resume})
        log(f"[{done}/{len(plan)}] {method} seed {seed}: "
            f"{'resuming' if resume else 'training'} into {folder.path}")
        train_fn(cfg)
        trained.append(folder.path)
    return trained, skipped


# ---------------------------------------------------------------------- analysis
def _checkpoint_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"checkpoint": str(path.name), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _analysis_files(run_dir: Path, split: str) -> tuple[Path, Path]:
    folder = run_dir / "analysis"
    return folder / f"{split}.json", folder / f"{split}_geometry.npz"


def analyse_run(run_dir: str | Path, device: str = "auto", max_k: int = DEFAULT_MAX_K,
                refresh: bool = False, workers: int | None = None,
                batch_size: int | None = None) -> dict:
    """Test-set analysis of a run's best checkpoint (cached in ``run_dir/analysis``).

    Returns a dict with ``method``, ``seed``, ``split``, ``n``, ``metrics`` and ``crm_metrics``
    (:func:`hafcls.metrics.evaluate` without / with CRM re-ranking), ``mistake_histogram`` and
    ``crm_mistake_histogram`` (samples per top-1 distance, index 0 = correct),
    ``hierdist_curve`` and ``crm_hierdist_curve`` (HierDist@k for k = 1..min(K, max_k)),
    ``best_epoch`` and ``train_time_s`` (from ``metrics.json`` when present).
    """
    from hafcls.engine.runs import find_checkpoint

    run_dir = Path(run_dir)
    ckpt_path = find_checkpoint(run_dir)
    stamp = {**_checkpoint_stamp(ckpt_path), "max_k": int(max_k), "version": ANALYSIS_VERSION}
    if not refresh:
        for split in ("test", "val"):
            cached = _read_json(_analysis_files(run_dir, split)[0])
            if cached is not None and cached.get("stamp") == stamp:
                return cached
    result, geometry = _score_checkpoint(ckpt_path, device, max_k, workers, batch_size)
    result["stamp"] = stamp
    result.update(_run_summary(run_dir))
    json_path, npz_path = _analysis_files(run_dir, result["split"])
    if geometry is not None:
        atomic_write(npz_path, lambda p: _save_npz(p, geometry))
    atomic_write_text(json_path, json.dumps(result, indent=1, allow_nan=True) + "\n")
    return result


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


def _score_checkpoint(ckpt_path: Path, device: str, max_k: int, workers, batch_size):
    """Stream the evaluation split through the checkpoint's model (see :func:`analyse_run`)."""
    from hafcls.engine import distributed as D
    from hafcls.engine.builders import (
        autocast_context,
        build_data,
        make_eval_loader,
        match_backbone_transforms,
        model_from_checkpoint,
    )
    from hafcls.engine.checkpoint import load_checkpoint

    if max_k < 1:
        raise HafclsError(f"max_k must be at least 1, got {max_k}.", "use e.g. max_k=100.")
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    model, hierarchy, score = model_from_checkpoint(ckpt, path=ckpt_path)
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
    acc = _StreamingAnalysis(hierarchy, max_k, dev)
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            images, targets = batch
            images = images.to(dev)
            targets = targets.to(dev)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_context(config.amp, dev):
                logits, features = model(images, return_features=True)
            acc.update(score(logits.float()), targets, features.float())
    result = acc.result()
    result.update(method=config.method, seed=config.seed, split=split, data=config.data,
                  model=config.model, epochs=config.epochs,
                  num_classes=hierarchy.num_classes, height=hierarchy.height)
    geometry = None
    if hierarchy.num_classes <= GEOMETRY_MAX_CLASSES:
        geometry = {"class_means": acc.class_means().astype(np.float32),
                    "target": _target_similarity(model, hierarchy, config)
                    .astype(np.float32)}
    return result, geometry


def _target_similarity(model, hierarchy, config: TrainConfig) -> np.ndarray:
    """The cosines a HAFrame model was trained towards (its frame's Gram matrix), or for any
    other method the HAFrame target S of the dataset's preset γ (paper rule for s_min)."""
    head = getattr(model, "head", None)
    if getattr(head, "kind", None) == "haframe":
        w = head.class_vectors().detach().double().cpu()
        w = w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)
        return (w.T @ w).numpy()
    from hafcls.frames import target_similarity
    from hafcls.methods import get_method

    gamma = get_method("haframe", dataset=config.data).head_kwargs.get("gamma", 1.0)
    return target_similarity(hierarchy, gamma=gamma, s_min="paper")


class _StreamingAnalysis:
    """Metrics, top-1 distance histograms and HierDist@k curves, with and without CRM, plus
    per-class feature sums, accumulated batch by batch (nothing N x K is kept)."""

    def __init__(self, hierarchy, max_k: int, device: torch.device):
        from hafcls.metrics import SeverityMeter, as_distance_matrix

        self.hierarchy = hierarchy
        dist = np.asarray(as_distance_matrix(hierarchy))
        self.d_max = int(dist.max())
        self.distance = torch.from_numpy(dist.astype(np.int64)).to(device)
        self.k = hierarchy.num_classes
        self.k_max = min(int(max_k), self.k)
        self.meters = {v: SeverityMeter(hierarchy) for v in ("", CRM_PREFIX)}
        self.hist = {v: torch.zeros(self.d_max + 1, dtype=torch.int64, device=device)
                     for v in self.meters}
        self.curve = {v: torch.zeros(self.k_max, dtype=torch.float64, device=device)
                      for v in self.meters}
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(self.k, dtype=torch.float64, device=device)
        self.n = 0

    def update(self, probs: torch.Tensor, targets: torch.Tensor, features: torch.Tensor) -> None:
        from hafcls.inference import crm
        from hafcls.metrics import topk_indices

        for variant, scores in (("", probs), (CRM_PREFIX, crm(probs, self.hierarchy))):
            self.meters[variant].update(scores, targets)
            ranked = topk_indices(scores, self.k_max)
            dist = self.distance[targets[:, None], ranked]
            self.hist[variant] += torch.bincount(dist[:, 0], minlength=self.d_max + 1)
            self.curve[variant] += dist.cumsum(dim=1).sum(dim=0).double()
        if self.sums is None:
            self.sums = torch.zeros(self.k, features.shape[1], dtype=torch.float64,
                                    device=features.device)
        self.sums.index_add_(0, targets, features.double())
        self.counts += torch.bincount(targets, minlength=self.k).double()
        self.n += int(targets.numel())

    def class_means(self) -> np.ndarray:
        means = self.sums / self.counts.clamp_min(1)[:, None]
        return means.cpu().numpy()

    def result(self) -> dict:
        if self.n == 0:
            raise HafclsError("The evaluation split has no samples.",
                              "check the dataset folder and its split files.")
        ks = torch.arange(1, self.k_max + 1, dtype=torch.float64, device=self.curve[""].device)
        out: dict = {"n": self.n}
        for variant in self.meters:
            out[f"{variant}metrics"] = self.meters[variant].compute()
            out[f"{variant}mistake_histogram"] = self.hist[variant].cpu().tolist()
            out[f"{variant}hierdist_curve"] = (self.curve[variant] / (ks * self.n)).cpu().tolist()
        return out


# ---------------------------------------------------------------------- tables
def result_row(analysis: Mapping, run_dir: str | Path | None = None) -> dict:
    """One CSV row: identity of the run and every compared metric without and with CRM."""
    row = {"method": analysis["method"], "seed": analysis["seed"],
           "run": str(run_dir) if run_dir is not None else "",
           "split": analysis.get("split"), "n": analysis.get("n"),
           "best_epoch": analysis.get("best_epoch"),
           "train_time_s": analysis.get("train_time_s")}
    for prefix in ("", CRM_PREFIX):
        metrics = analysis[f"{prefix}metrics"]
        for key in (*COMPARED_METRICS, "top5"):
            row[f"{prefix}{key}"] = metrics.get(key)
    return row


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """``rows`` as CSV (header from the first row's keys; rates are fractions, not %)."""
    if not rows:
        raise HafclsError("There are no runs to write.", "train at least one run first.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                         for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def summarize_rows(rows: Sequence[Mapping], methods: Sequence[str]) -> dict:
    """``{method: {"plain": summary, "crm": summary}}`` with :func:`hafcls.metrics.summarize`."""
    from hafcls.metrics import summarize

    out = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        out[method] = {
            "plain": summarize([{k: r[k] for k in COMPARED_METRICS} for r in mine]),
            "crm": summarize([{k: r[CRM_PREFIX + k] for k in COMPARED_METRICS} for r in mine]),
        }
    return out


def _cell(entry: Mapping | None, key: str) -> str:
    if entry is None:
        return "—"
    scale, digits = (100.0, 2) if key == "top1" else (1.0, 3)
    mean = entry["mean"] * scale
    if math.isnan(mean):
        return "n/a"
    ci = entry["ci95"] * scale
    return f"{mean:.{digits}f}" if math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def markdown_table(summaries: Mapping[str, Mapping], variant: str = "plain") -> str:
    """A Markdown table: one row per method, ``mean ± ci95`` per compared metric."""
    head = ["method", "runs"] + [METRIC_TITLES[k] for k in COMPARED_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, both in summaries.items():
        summary = both[variant]
        n = summary[COMPARED_METRICS[0]]["n"]
        cells = [method, str(n)] + [_cell(summary.get(k), k) for k in COMPARED_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(summaries: Mapping[str, Mapping], setting: str) -> str:
    """The whole ``results.md``: setting, the tables without and with CRM, and how to read them."""
    return "\n".join([
        "# Method comparison", "", setting, "",
        "## Without CRM (the methods' own ranking)", "", markdown_table(summaries, "plain"), "",
        "## With CRM (test-time conditional risk minimisation on the same models)", "",
        markdown_table(summaries, "crm"), "",
        "Each cell is the mean over runs (seeds) ± the half-width of the 95% Student-t "
        "confidence interval, t(0.975, n−1)·s/√n with s the sample standard deviation; with "
        "a single run only the mean is shown. Top-1 is in percent. Mistake severity is the mean "
        "distance of the top-1 mistakes only (n/a when a run made none); HierDist@k is the mean "
        "distance of the k highest-ranked classes over all test samples (a correct class counts "
        "0), so HierDist@1 = (1 − top-1) × mistake severity. Distances are the published "
        "d(a, b) = H − depth(LCA(a, b)). Overlapping intervals mean the difference is not "
        "resolved by these seeds.", ""])


def describe_setting(analyses: Sequence[Mapping], seeds: Sequence[int],
                     config: TrainConfig | None = None) -> str:
    """One paragraph naming the dataset, model, training options, seeds and evaluation split."""
    first = analyses[0]
    epochs = first.get("epochs")
    text = (f"Dataset `{first.get('data')}` ({first.get('num_classes')} classes, hierarchy "
            f"height {first.get('height')}), backbone `{first.get('model')}`, {epochs} "
            f"epoch{'s' if epochs != 1 else ''}")
    if config is not None:
        text += (f", {config.optimizer.upper()} batch {config.batch_size}, peak LR {config.lr:g}"
                 f" (backbone {config.backbone_lr:g}), {config.schedule} schedule")
        if config.image_size:
            text += f", {config.image_size} px"
        if config.data_options:
            text += f", data options `{json.dumps(config.data_options, sort_keys=True)}`"
    return (text + f"; seeds {', '.join(map(str, seeds))}. Metrics on the {first.get('split')} "
            f"split ({first.get('n')} images) with the best-validation checkpoint of each run.")


# ---------------------------------------------------------------------- figures
def comparison_figures(analyses: Mapping[str, Sequence[Mapping]],
                       run_dirs: Mapping[str, Sequence[Path]], title: str | None = None) -> dict:
    """The four comparison figures (name -> matplotlib Figure) from per-method analyses.

    ``analyses[method]`` and ``run_dirs[method]`` are lists over seeds, in the same order.
    """
    from hafcls import plots
    from hafcls.hierarchy import Hierarchy

    figures = {}
    # (1) S beside the realised cosines of each method's first seed
    realised, target, order = {}, None, None
    for method, dirs in run_dirs.items():
        geometry = load_geometry(dirs[0]) if dirs else None
        if geometry is None:
            continue
        realised[method] = plots.class_mean_cosines(geometry["class_means"])
        if target is None or method == "haframe":
            target = geometry["target"]
        if order is None and RunFolder(dirs[0]).hierarchy_file.is_file():
            order = plots.class_order(Hierarchy.from_json(RunFolder(dirs[0]).hierarchy_file))
    if realised:
        figures["similarity"] = plots.plot_similarity(target, realised, order=order, title=title)
    figures["mistake_distances"] = plots.plot_mistake_histograms(
        {m: [a["mistake_histogram"] for a in runs] for m, runs in analyses.items()},
        {m: [a[CRM_PREFIX + "mistake_histogram"] for a in runs] for m, runs in analyses.items()},
        title=title)
    figures["hierdist_at_k"] = plots.plot_hierdist_curves(
        {m: [a["hierdist_curve"] for a in runs] for m, runs in analyses.items()},
        {m: [a[CRM_PREFIX + "hierdist_curve"] for a in runs] for m, runs in analyses.items()},
        title=title)
    figures["training_curves"] = plots.plot_training_curves(
        {m: [RunFolder(d).read_log() for d in dirs] for m, dirs in run_dirs.items()},
        title=title)
    return figures


def write_figures(figures: Mapping[str, object], folder: str | Path) -> list[Path]:
    """Save each figure as ``folder/<name>.png``."""
    from hafcls import plots

    return [plots.save_figure(fig, Path(folder) / f"{name}.png") for name, fig in figures.items()]


def plot_run(run_dir: str | Path, output: str | Path | None = None, device: str = "auto",
             max_k: int = DEFAULT_MAX_K) -> list[Path]:
    """Draw the figures of one run folder (or of a comparison folder) into ``output``.

    For a single run the figures hold that run only: S beside its realised cosines, its
    mistake-distance histogram and HierDist@k curve (without and with CRM) and its training
    curves. A comparison folder (one with ``runs/``) gets the comparison figures again.
    """
    from hafcls import plots

    plots._matplotlib()  # fail early, before any scoring, when matplotlib is missing
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HafclsError(f"No such run folder: {run_dir}.",
                          "give a folder written by `hafcls train` or `hafcls compare`.")
    output = Path(output) if output is not None else run_dir / "plots"
    if (run_dir / "runs").is_dir():
        groups = collect_runs(run_dir)
        analyses = {m: [analyse_run(d, device=device, max_k=max_k) for d in dirs]
                    for m, dirs in groups.items()}
        return write_figures(comparison_figures(analyses, groups), output)
    folder = RunFolder(run_dir)
    if not (folder.best.is_file() or folder.last.is_file()):
        raise HafclsError(f"{run_dir} holds no checkpoints/best.pt or checkpoints/last.pt.",
                          "give a run folder written by `hafcls train` (train it first).")
    analysis = analyse_run(run_dir, device=device, max_k=max_k)
    label = f"{analysis['method']} (seed {analysis['seed']})"
    return write_figures(comparison_figures({label: [analysis]}, {label: [run_dir]}), output)


def collect_runs(output: str | Path) -> dict[str, list[Path]]:
    """``{method: [run folders]}`` of the finished runs in a comparison folder."""
    root = Path(output) / "runs"
    groups: dict[str, list[Path]] = {}
    if root.is_dir():
        for method_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            dirs = sorted((p for p in method_dir.glob("seed*")
                           if RunFolder(p).metrics_file.is_file()),
                          key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 0)
            if dirs:
                groups[method_dir.name] = dirs
    if not groups:
        raise HafclsError(f"{output} holds no finished runs (runs/<method>/seed<k>/metrics.json).",
                          "run `hafcls compare` first.")
    return groups


# ---------------------------------------------------------------------- the whole job
@dataclass
class Comparison:
    """What :func:`compare` did and wrote."""

    output: Path
    methods: list[str]
    seeds: list[int]
    rows: list[dict]
    summaries: dict
    markdown: str
    trained: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def compare(methods: str | Sequence[str], seeds: int | str | Sequence[int],
            config: TrainConfig | Mapping, output: str | Path, *, plots: bool = True,
            max_k: int = DEFAULT_MAX_K, train_fn: Callable | None = None,
            log: Log | None = None) -> Comparison:
    """Train every method for every seed (resumably), then write the comparison.

    Parameters
    ----------
    methods:
        Registry names (``"ce,haframe"`` or a list).
    seeds:
        A count (``5`` -> seeds 0..4) or explicit seeds.
    config:
        The training options shared by every run (a :class:`TrainConfig` or a mapping);
        ``method``, ``seed``, ``output`` and ``resume`` are set per run.
    output:
        The comparison folder (see the module docstring for its layout).
    plots:
        Draw the figures (needs matplotlib; when it is missing a note is logged and the
        tables are still written).
    train_fn:
        The training function (default :func:`hafcls.engine.train.train`).

    Returns a :class:`Comparison` with the rows, the summaries, the Markdown text and the paths.
    """
    from hafcls.engine import distributed as D

    log = log or _stderr
    methods = parse_methods(methods)
    seeds = parse_seeds(seeds)
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config, source="the comparison options")
    if not config.model:
        raise HafclsError("No model given for the comparison.",
                          "pass --model (e.g. --model resnet18).")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise HafclsError(f"--output {output} is a file.", "give a folder path.")
    trained, skipped = train_runs(methods, seeds, config, output, train_fn=train_fn, log=log)
    if not D.env_info().is_main:  # under torchrun only rank 0 analyses and writes
        return Comparison(output, methods, seeds, [], {}, "", trained, skipped)

    device = config.device
    analyses: dict[str, list[dict]] = {}
    dirs: dict[str, list[Path]] = {}
    rows = []
    for method in methods:
        for seed in seeds:
            path = run_path(output, method, seed)
            log(f"Analysing {path} ...")
            analysis = analyse_run(path, device=device, max_k=max_k)
            analyses.setdefault(method, []).append(analysis)
            dirs.setdefault(method, []).append(path)
            rows.append(result_row(analysis, path.relative_to(output)))
    summaries = summarize_rows(rows, methods)
    all_analyses = [a for runs in analyses.values() for a in runs]
    markdown = markdown_report(summaries, describe_setting(all_analyses, seeds, config))
    files = {"csv": write_csv(rows, output / "results.csv"),
             "markdown": atomic_write_text(output / "results.md", markdown)}
    atomic_write_text(output / "summary.json",
                      json.dumps({"methods": methods, "seeds": seeds, "summaries": summaries},
                                 indent=1, allow_nan=True) + "\n")
    files["summary"] = output / "summary.json"
    if plots:
        try:
            figures = comparison_figures(analyses, dirs)
        except HafclsError as err:
            if "matplotlib" not in str(err):
                raise
            log(f"Plots skipped: {err}")
        else:
            for path in write_figures(figures, output / "plots"):
                files[path.stem] = path
    return Comparison(output, methods, seeds, rows, summaries, markdown, trained, skipped, files)
