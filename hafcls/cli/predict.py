"""``hafcls predict``: top-k classes of image files with probabilities and severity, hedging and
the decoders of hafcls.inference; results are printed batch by batch as they are computed."""

from __future__ import annotations

import json
from pathlib import Path

import click

DECODE_HELP = ("argmax: rank by probability; crm: rank by conditional risk; node: also the "
               "Bayes-optimal tree node (node distance cost); hfbeta: also the node set "
               "maximising the expected hF_beta (--beta).")


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--top-k", type=int, default=5, show_default=True,
              help="How many classes to list per image.")
@click.option("--crm", is_flag=True, help="Rank classes by conditional risk (= --decode crm).")
@click.option("--decode", type=click.Choice(["argmax", "crm", "node", "hfbeta"],
                                            case_sensitive=False), help=DECODE_HELP)
@click.option("--beta", type=float, default=1.0, show_default=True,
              help="beta of --decode hfbeta (< 1 favours precision, > 1 recall).")
@click.option("--hedge", type=float, metavar="THRESHOLD",
              help="Also give the deepest tree node whose probability reaches THRESHOLD.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Images decoded and scored at a time.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(checkpoint: Path, images: tuple[Path, ...], top_k: int, crm: bool,
            decode: str | None, beta: float, hedge: float | None, batch_size: int, device: str,
            as_json: bool) -> None:
    """Predict IMAGE files with CHECKPOINT (a .pt file or a run folder).

    Per image: the top-k classes with names and probabilities, and each one's hierarchical
    distance to the top-1 class; with --hedge, the hedged node; with --decode node|hfbeta, the
    decoded tree node(s) with their ids.
    """
    from hafcls.engine.predict import format_predictions, iter_predictions
    from hafcls.errors import HafclsError

    if crm and decode not in (None, "crm"):
        raise HafclsError(f"--crm and --decode {decode} ask for two different rankings.",
                          "give one of them.")
    checkpoint = checkpoint.expanduser()  # a quoted "~/run" too
    images = tuple(p.expanduser() for p in images)
    results = iter_predictions(checkpoint, list(images), top_k=top_k, crm=crm, hedge=hedge,
                               device=device, batch_size=batch_size, decode=decode, beta=beta)
    first = next(results)  # a bad option or checkpoint fails before anything is printed
    if as_json:
        click.echo("[")
        click.echo(_indented(first), nl=False)
        for entry in results:
            click.echo(",")
            click.echo(_indented(entry), nl=False)
        click.echo("\n]")
    else:
        click.echo(format_predictions([first]))
        for entry in results:
            click.echo(format_predictions([entry]))


def _indented(entry: dict) -> str:
    return "\n".join("  " + line for line in json.dumps(entry, indent=2).splitlines())
