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
@click.option("--methods",
              help="Comma-separated methods of a comparison folder to draw, in this order "
                   "(default: all).")
def command(run_dir: Path, output: Path | None, device: str, max_k: int,
            methods: str | None) -> None:
    """Draw the figures of RUN_DIR as PNG files.

    similarity.png (target vs realised cosines), confusion.png (confusion matrix in tree order,
    the groups of the hierarchy marked), mistake_distances.png, hierdist_at_k.png (both without
    and with CRM), risk_coverage.png (backing off to ancestors, AURC in the legend) and
    training_curves.png.

    RUN_DIR is a folder written by `hafcls train` (figures of that run alone) or by
    `hafcls compare` (figures of every method). The best checkpoint is scored on the test split;
    the results are cached in the run's analysis/ folder. Needs matplotlib
    (pip install hafcls[plots]).
    """
    from hafcls.engine.figures import plot_run

    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    for path in plot_run(run_dir, output=output, device=device, max_k=max_k, methods=chosen):
        click.echo(str(path))
