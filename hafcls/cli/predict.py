"""``hafcls predict``: top-k classes of image files with probabilities and severity, and hedging."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--top-k", type=int, default=5, show_default=True,
              help="How many classes to list per image.")
@click.option("--crm", is_flag=True, help="Rank classes by conditional risk (CRM).")
@click.option("--hedge", type=float, metavar="THRESHOLD",
              help="Also give the deepest tree node whose probability reaches THRESHOLD.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(checkpoint: Path, images: tuple[Path, ...], top_k: int, crm: bool,
            hedge: float | None, device: str, as_json: bool) -> None:
    """Predict IMAGE files with CHECKPOINT (a .pt file or a run folder).

    Per image: the top-k classes with names and probabilities, and each one's hierarchical
    distance to the top-1 class; with --hedge, the hedged node.
    """
    from hafcls.engine.predict import format_predictions, predict_images

    results = predict_images(checkpoint, list(images), top_k=top_k, crm=crm, hedge=hedge,
                             device=device)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_predictions(results))
