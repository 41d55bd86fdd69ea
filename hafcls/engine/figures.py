"""The comparison's figures: similarity, the tree-ordered confusion matrix, mistake distances,
HierDist@k, risk-coverage and training curves.

The confusion matrix and the risk-coverage curve need every test sample's decision, which the
streaming analysis (:mod:`hafcls.engine.analysis`) does not keep: :func:`decision_analysis`
scores the best checkpoint once more through :func:`hafcls.engine.evaluate.evaluate_checkpoint`
and caches the K x K counts and the curve in ``run_dir/analysis/decisions.npz``.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hafcls.engine.analysis import DEFAULT_MAX_K, analyse_run, load_geometry
from hafcls.engine.compare_tables import CRM_PREFIX
from hafcls.engine.runs import RunFolder
from hafcls.errors import HafclsError
from hafcls.io import atomic_write

DECISIONS_VERSION = 1
CURVE_POINTS = 2000  # risk-coverage points kept for drawing (the AURC uses the full curve)


def comparison_figures(analyses: Mapping[str, Sequence[Mapping]],
                       run_dirs: Mapping[str, Sequence[Path]], title: str | None = None,
                       decisions: Mapping[str, Sequence[Mapping]] | None = None) -> dict:
    """The comparison figures (name -> matplotlib Figure) from per-method analyses.

    ``analyses[method]``, ``run_dirs[method]`` and ``decisions[method]`` (optional, from
    :func:`decision_analysis`: adds the confusion matrix and risk-coverage figures) are lists
    over seeds, in the same order.
    """
    from hafcls import plots
    from hafcls.hierarchy import Hierarchy

    figures = {}
    # (1) S beside the realised cosines of each method's first seed
    realised, target, order, own_target = {}, None, None, False
    for method, dirs in run_dirs.items():
        geometry = load_geometry(dirs[0]) if dirs else None
        if geometry is None:
            continue
        realised[method] = plots.class_mean_cosines(geometry["class_means"])
        # the first model trained towards its own frame gives S (a permuted control comes after
        # its method in the plan, so its permuted S never replaces the true one)
        own = bool(geometry.get("target_is_frame", False)) and "@" not in method
        if target is None or (own and not own_target):
            target, own_target = geometry["target"], own
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
    if decisions:
        hierarchy = comparison_hierarchy(run_dirs)
        figures["confusion"] = plots.plot_confusion(
            {m: np.sum([r["confusion"] for r in runs], axis=0) for m, runs in decisions.items()},
            hierarchy, title=title)
        figures["risk_coverage"] = plots.plot_risk_coverage(
            {m: list(runs) for m, runs in decisions.items()}, title=title)
    return figures


def run_hierarchy(run_dir: str | Path):
    """The hierarchy a run was trained with (its hierarchy.json, else the checkpoint's)."""
    from hafcls.engine.checkpoint import load_checkpoint
    from hafcls.engine.runs import find_checkpoint
    from hafcls.hierarchy import Hierarchy

    file = RunFolder(run_dir).hierarchy_file
    if file.is_file():
        return Hierarchy.from_json(file)
    meta = load_checkpoint(find_checkpoint(run_dir), map_location="cpu")["meta"]
    return Hierarchy.from_dict(meta["hierarchy"])


def comparison_hierarchy(run_dirs: Mapping[str, Sequence[Path]]):
    """The true hierarchy of a comparison: the one most runs were trained with, leaving out the
    permuted trees of random-hierarchy controls (``hafcls hierarchy permute``), so every panel
    uses one class order and a control is scored with the true tree."""
    found = [run_hierarchy(d) for dirs in run_dirs.values() for d in dirs[:1]]
    true = [h for h in found if "permuted_from" not in h.meta] or found
    votes = Counter(h.fingerprint() for h in true)
    best = votes.most_common(1)[0][0]
    return next(h for h in true if h.fingerprint() == best)


def decision_analysis(run_dir: str | Path, device: str = "auto", refresh: bool = False,
                      hierarchy=None) -> dict:
    """``{"split", "confusion", "coverage", "risk", "aurc"}`` of a run's best checkpoint.

    The test split (the validation split when the dataset has none) is scored by
    :func:`~hafcls.engine.evaluate.evaluate_checkpoint`; the confusion matrix counts the argmax
    class (ties to the lower index) against the truth, the curve is
    :func:`hafcls.inference.risk_coverage` (thinned to ``CURVE_POINTS`` points for drawing; the
    AURC is that of the full curve). ``hierarchy`` scores the curve on another tree over the
    same classes (the true one for a random-hierarchy control; default: the run's own). Cached
    in ``analysis/decisions.npz`` while the checkpoint and the tree are unchanged.
    """
    from hafcls.engine.evaluate import evaluate_checkpoint
    from hafcls.engine.runs import find_checkpoint
    from hafcls.inference import risk_coverage

    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    stat = ckpt.stat()
    hierarchy = run_hierarchy(run_dir) if hierarchy is None else hierarchy
    stamp = json.dumps({"checkpoint": ckpt.name, "size": stat.st_size,
                        "mtime_ns": stat.st_mtime_ns, "version": DECISIONS_VERSION,
                        "tree": hierarchy.fingerprint()})
    cache = run_dir / "analysis" / "decisions.npz"
    if not refresh and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if str(data["stamp"]) == stamp:
                    return {"split": str(data["split"]), "confusion": data["confusion"],
                            "coverage": data["coverage"], "risk": data["risk"],
                            "aurc": float(data["aurc"])}
        except (OSError, ValueError, KeyError):
            pass  # unreadable or old: scored again
    with tempfile.TemporaryDirectory() as tmp:
        scores = Path(tmp) / "scores.npz"
        for split in ("test", "val"):
            try:
                evaluate_checkpoint(run_dir, split=split, device=device, scores_path=scores)
                break
            except HafclsError as err:
                if split == "val" or "has no test split" not in str(err):
                    raise
        with np.load(scores, allow_pickle=False) as saved:
            probs, targets = saved["probs"].astype(np.float64), saved["targets"]
            classes = saved["classes"].tolist()
    if classes != hierarchy.classes:
        raise HafclsError(f"{run_dir} was trained on other classes than the hierarchy given.",
                          "score a run with a tree over its own classes.")
    from hafcls.plots.confusion import confusion_matrix

    confusion = confusion_matrix(probs.argmax(axis=1), targets, hierarchy.num_classes)
    curve = risk_coverage(probs, targets, hierarchy)
    keep = np.unique(np.linspace(0, len(curve["risk"]) - 1, CURVE_POINTS).round().astype(int))
    result = {"split": split, "confusion": confusion, "coverage": curve["coverage"][keep],
              "risk": curve["risk"][keep], "aurc": float(curve["aurc"])}

    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            np.savez_compressed(f, stamp=np.array(stamp), **{k: np.asarray(v)
                                                             for k, v in result.items()})

    atomic_write(cache, write)
    return result


def write_figures(figures: Mapping[str, object], folder: str | Path) -> list[Path]:
    """Save each figure as ``folder/<name>.png``."""
    from hafcls import plots

    return [plots.save_figure(fig, Path(folder) / f"{name}.png") for name, fig in figures.items()]


def plot_run(run_dir: str | Path, output: str | Path | None = None, device: str = "auto",
             max_k: int = DEFAULT_MAX_K, methods: Sequence[str] | None = None) -> list[Path]:
    """Draw the figures of one run folder (or of a comparison folder) into ``output``.

    For a single run the figures hold that run only: S beside its realised cosines, its
    tree-ordered confusion matrix, its mistake-distance histogram and HierDist@k curve (without
    and with CRM), its risk-coverage curve and its training curves. A comparison folder (one
    with ``runs/``) gets the same figures with every method (or only ``methods``, in that
    order).
    """
    from hafcls import plots

    plots._matplotlib()  # fail early, before any scoring, when matplotlib is missing
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HafclsError(f"No such run folder: {run_dir}.",
                          "give a folder written by `hafcls train` or `hafcls compare`.")
    output = Path(output) if output is not None else run_dir / "plots"
    if (run_dir / "runs").is_dir():
        groups = select_methods(collect_runs(run_dir), methods)
        analyses = {m: [analyse_run(d, device=device, max_k=max_k) for d in dirs]
                    for m, dirs in groups.items()}
        tree = comparison_hierarchy(groups)
        decisions = {m: [decision_analysis(d, device=device, hierarchy=tree) for d in dirs]
                     for m, dirs in groups.items()}
        return write_figures(comparison_figures(analyses, groups, decisions=decisions), output)
    folder = RunFolder(run_dir)
    if not (folder.best.is_file() or folder.last.is_file()):
        raise HafclsError(f"{run_dir} holds no checkpoints/best.pt or checkpoints/last.pt.",
                          "give a run folder written by `hafcls train` (train it first).")
    analysis = analyse_run(run_dir, device=device, max_k=max_k)
    label = f"{analysis['method']} (seed {analysis['seed']})"
    decisions = {label: [decision_analysis(run_dir, device=device)]}
    return write_figures(comparison_figures({label: [analysis]}, {label: [run_dir]},
                                            decisions=decisions), output)


def select_methods(groups: dict[str, list[Path]], methods: Sequence[str] | None) -> dict:
    """``groups`` restricted to ``methods`` (in that order); every name must be present."""
    if not methods:
        return groups
    missing = [m for m in methods if m not in groups]
    if missing:
        raise HafclsError(f"The comparison has no finished runs of {', '.join(missing)}.",
                          f"choose among: {', '.join(groups)}.")
    return {m: groups[m] for m in methods}


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


