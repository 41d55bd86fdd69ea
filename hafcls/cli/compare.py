"""``hafcls compare``: train several methods over several seeds and tabulate them honestly.

Takes every option of ``hafcls train`` (the same click parameters, reused from
:mod:`hafcls.cli.train`) except ``--method``, ``--seed``, ``--output`` and ``--resume``, which
the comparison sets per run. See :mod:`hafcls.engine.compare` for what is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from hafcls.cli import train as train_cli

# train options that the comparison sets per run (method, seed, run folder, resume)
_PER_RUN = ("method", "seed", "output", "resume")


@click.command("compare")
@click.option("--methods", required=True,
              help="Comma-separated registered methods (hafcls.list_methods()), e.g. "
                   "ce,haframe. METHOD@permuted adds the random-hierarchy control: METHOD "
                   "trained on the tree with its classes permuted, scored with the true tree.")
@click.option("--seeds", default="5", show_default=True,
              help="Number of seeds (N: seeds 0..N-1) or a comma list of seeds.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Comparison folder: runs/<method>/seed<k>/, results.csv, results.md, "
                   "plots/. Finished runs in it are reused, interrupted ones resumed.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw the figures (needs matplotlib: pip install hafcls[plots]).")
@click.option("--max-k", type=int, default=100, show_default=True,
              help="Largest k of the HierDist@k curve.")
@click.option("--permute-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="METHOD@permuted: seed s trains on the tree permuted with PERMUTE_SEED + s "
                   "(another random tree per seed).")
def command(methods: str, seeds: str, output: Path, plots: bool, max_k: int, permute_seed: int,
            config: Path | None, assignments: tuple[str, ...], recipe: str | None,
            **params) -> None:
    """Train each method for each seed, then write results.csv, results.md (mean ± 95%
    t-interval, with and without CRM) and plots, and print the table.

    \b
    Example (a few minutes on a CPU):
      hafcls compare --methods ce,haframe,soft-labels --seeds 3 --data synthetic \\
          --model resnet10t --epochs 5 --output runs/compare
    Calling it again trains nothing: finished runs are reused. Add haframe@permuted to
    --methods for the random-hierarchy control (docs/results-fashion-mnist.md). With
    --tensorboard DIR each run's curves go to DIR/<method>/seed<k> (tensorboard --logdir DIR).
    """
    from hafcls.engine.compare import compare

    ctx = click.get_current_context()
    cfg = train_cli.resolve_config(train_cli.explicit_options(ctx, params), config, assignments,
                                   recipe)
    result = compare(methods, seeds, cfg, output, plots=plots, max_k=max_k,
                     permute_seed=permute_seed, train_fn=_tensorboard_runs(cfg))
    if not result.markdown:  # a non-zero torchrun rank: rank 0 reports
        return
    click.echo(result.markdown)
    click.echo(f"Trained {len(result.trained)} run(s), reused {len(result.skipped)}. Files:")
    for path in result.files.values():
        click.echo(f"  {path}")


def _tensorboard_runs(cfg):
    """With ``--tensorboard DIR``: a training function that logs each run to
    ``DIR/<method>/seed<k>`` (named like the run folder; the log folder is not part of the
    runs' configs, so finished runs are reused whatever DIR is); None (the default training)
    without it."""
    root = cfg.tensorboard
    if not root:
        return None
    from hafcls.engine.tensorboard import run_log_dir, summary_writer_class

    summary_writer_class()  # a missing package fails before the first run
    cfg.update({"tensorboard": None})

    def train_fn(run_cfg):
        from hafcls.engine.train import train

        run = Path(run_cfg.output)
        with run_log_dir(Path(root) / run.parent.name / run.name):
            return train(run_cfg)

    return train_fn


command.params.extend(p for p in train_cli.command.params if p.name not in _PER_RUN)
