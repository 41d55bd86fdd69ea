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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hafcls.engine.analysis import DEFAULT_MAX_K, analyse_run, load_geometry
from hafcls.engine.compare_control import split_entry, true_hierarchy
from hafcls.engine.compare_plan import (
    Log,
    log_to_stderr,
    parse_methods,
    parse_seeds,
    run_path,
    train_runs,
)
from hafcls.engine.compare_tables import (
    COMPARED_METRICS,
    describe_setting,
    markdown_report,
    markdown_table,
    result_row,
    summarize_rows,
    write_csv,
)
from hafcls.engine.config import TrainConfig
from hafcls.engine.figures import collect_runs, comparison_figures, plot_run, write_figures
from hafcls.errors import HafclsError
from hafcls.io import atomic_write_text

# the pieces of a comparison, importable from here as before the split
__all__ = ["COMPARED_METRICS", "Comparison", "analyse_run", "collect_runs", "compare",
           "comparison_figures", "load_geometry", "markdown_report", "markdown_table",
           "parse_methods", "parse_seeds", "plot_run", "summarize_rows", "train_runs",
           "write_csv"]


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
            log: Log | None = None, permute_seed: int = 0) -> Comparison:
    """Train every method for every seed (resumably), then write the comparison.

    Parameters
    ----------
    methods:
        Registry names (``"ce,haframe"`` or a list); ``METHOD@permuted`` adds the
        random-hierarchy control of METHOD (:mod:`hafcls.engine.compare_control`).
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
    permute_seed:
        Run ``s`` of a control trains on the tree permuted with seed ``permute_seed + s``.

    Returns a :class:`Comparison` with the rows, the summaries, the Markdown text and the paths.
    """
    from hafcls.engine import distributed as D

    log = log or log_to_stderr
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
    control = None
    if any(split_entry(m)[1] for m in methods):  # every run is then scored with this tree
        control = {"tree": true_hierarchy(config), "seed": int(permute_seed)}
    trained, skipped = train_runs(methods, seeds, config, output, train_fn=train_fn, log=log,
                                  control=control)
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
            analysis = analyse_run(path, device=device, max_k=max_k,
                                   hierarchy=control and control["tree"])
            analysis = {**analysis, "method": method}  # the entry, e.g. haframe@permuted
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
