"""``hafcls frame``: build a Hierarchy-Aware Frame for a hierarchy and save it (safetensors)."""

from __future__ import annotations

import time

import click

EIGH_HINT_CLASSES = 4000


def _parse_s_min(value: str):
    """``paper`` / ``exact`` stay strings; anything else must be a number."""
    if value in ("paper", "exact"):
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not 'paper', 'exact' or a number.", param_hint="--s-min"
        ) from None


@click.command("frame")
@click.argument("hierarchy")
@click.option("--gamma", type=float, default=1.0, show_default=True,
              help="Decay of the target cosine with class distance (> 0).")
@click.option("--s-min", "s_min", default="paper", show_default=True,
              help="'paper' (published grid rule), 'exact' (PSD boundary) or a number.")
@click.option("--method", type=click.Choice(["eigh", "tree"]), default="eigh", show_default=True,
              help="'eigh': dense eigendecomposition, d = K (the paper). 'tree': exact sparse "
                   "tree construction, much faster for large K, d = number of tree coordinates.")
@click.option("--dim", type=click.IntRange(min=1), default=None,
              help="Low-dimensional frame with this many rows (top eigenpairs); default exact.")
@click.option("--distance", type=click.Choice(["published", "lca_height"]), default="published",
              show_default=True, help="Class distance the target cosines decay with.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the rotation.")
@click.option("--similarity/--no-similarity", default=None,
              help="Build and store the K x K target cosines S. Default: only up to 8,192 "
                   "classes (S alone is 1.9 GB at 21k; the loss recomputes it from distances).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Frame file to write (safetensors).")
def command(hierarchy, gamma, s_min, method, dim, distance, seed, similarity, output):
    """Build a Hierarchy-Aware Frame for HIERARCHY (a shipped name or a file) and save it."""
    from hafcls.frames import haframe
    from hafcls.hierarchy import load

    h = load(hierarchy)
    if method == "eigh" and h.num_classes > EIGH_HINT_CLASSES:
        click.echo(f"note: dense eigh at {h.num_classes} classes is slow (O(K^3)); "
                   "--method tree gives an exact frame in seconds.", err=True)
    start = time.perf_counter()
    frame = haframe(h, gamma=gamma, s_min=_parse_s_min(s_min), method=method, dim=dim,
                    seed=seed, distance=distance,
                    with_similarity="auto" if similarity is None else similarity)
    seconds = time.perf_counter() - start
    frame.save(output)
    rule = frame.info.get("s_min_rule")
    click.echo(f"classes K:    {frame.num_classes}")
    click.echo(f"dimension d:  {frame.dim}")
    click.echo(f"s_min:        {frame.s_min:.6f} ({rule})")
    click.echo(f"gamma:        {frame.gamma:g}")
    click.echo(f"max error:    {frame.max_error:.3e}  (max |W^T W - S|)")
    if "lambda_next" in frame.info:
        label = f"lambda_{frame.dim + 1}:".ljust(14)
        click.echo(f"{label}{frame.info['lambda_next']:.4g}  (first dropped eigenvalue)")
    click.echo(f"build time:   {seconds:.2f} s ({method})")
    click.echo(f"wrote {output}")
