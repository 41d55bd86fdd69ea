"""The comparison's figures: similarity, mistake distances, HierDist@k and training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hafcls.engine.analysis import DEFAULT_MAX_K, analyse_run, load_geometry
from hafcls.engine.compare_tables import CRM_PREFIX
from hafcls.engine.runs import RunFolder
from hafcls.errors import HafclsError


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


