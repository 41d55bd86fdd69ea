"""``hafcls plot RUN_DIR``: draw the figures of a training run or of a comparison folder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Folder for the PNG files.  [default: RUN_DIR/plots]")
@click.option("--device", default="auto", show_default=True,
              help="Where to re-score the best checkpoint (auto, cpu, cuda, cuda:N).")
@click.option("--max-k", type=int, default=100, show_default=True,
              help="Largest k of the HierDist@k curve.")
def command(run_dir: Path, output: Path | None, device: str, max_k: int) -> None:
    """Draw target vs realised cosines, mistake distances, HierDist@k and training curves.

    RUN_DIR is a folder written by `hafcls train` (figures of that run alone) or by
    `hafcls compare` (figures of every method). The best checkpoint is scored on the test split
    once; the result is cached in the run's analysis/ folder. Needs matplotlib
    (pip install hafcls[plots]).
    """
    from hafcls.engine.compare import plot_run

    for path in plot_run(run_dir, output=output, device=device, max_k=max_k):
        click.echo(str(path))
