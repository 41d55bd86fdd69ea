"""``hafcls hierarchy show|build|permute``: inspect a label tree, build one from a source's own
files, or permute its classes (the random-hierarchy control)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from hafcls.cli.choices import RegistryChoice
from hafcls.registry import HIERARCHY_SOURCES


@click.group()
def hierarchy() -> None:
    """Label hierarchies: show one, or build one from WordNet, iNaturalist, FGVC-Aircraft, ..."""


@hierarchy.command("show")
@click.argument("name_or_file")
@click.option("--classes", "n_classes", type=int, default=0, show_default=True,
              help="Also list the first N classes with their paths.")
def show(name_or_file: str, n_classes: int) -> None:
    """Print a summary of a shipped hierarchy (e.g. imagenet-1k) or a hierarchy file."""
    from hafcls.hierarchy import load

    h = load(name_or_file)
    click.echo(h.summary())
    for c in h.classes[:n_classes]:
        click.echo("  " + " > ".join(h.name(n) for n in h.path(c)))


@hierarchy.command("build")
@click.argument("source", type=RegistryChoice(HIERARCHY_SOURCES))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write the hierarchy JSON.")
@click.option("--rule", type=click.Choice(["shortest", "first"]), default="shortest",
              show_default=True, help="wordnet: which hypernym becomes the parent.")
@click.option("--prune-chains", is_flag=True, help="wordnet: drop single-child internal nodes.")
@click.option("--trust", is_flag=True,
              help="nltk-pickle: you trust this file (unpickling can run code).")
@click.option("--name", default=None, help="A name recorded in the hierarchy's metadata.")
def build(source: str, path: Path, output: Path, rule: str, prune_chains: bool, trust: bool,
          name: str | None) -> None:
    """Build a hierarchy from SOURCE's own files at PATH and write it as hafcls JSON.

    SOURCE is a registered source: `hafcls hierarchy sources` lists them and what PATH means
    for each.
    """
    t0 = time.perf_counter()
    source_entry = HIERARCHY_SOURCES.get(source)
    h = source_entry(path, rule=rule, prune_chains=prune_chains, name=name, trust=trust)
    if name:
        h.meta["name"] = name
    h.to_json(output)
    click.echo(f"{h!r} written to {output} in {time.perf_counter() - t0:.1f}s")


@hierarchy.command("sources")
def sources() -> None:
    """List the hierarchy sources and what PATH means for each."""
    for name, entry in HIERARCHY_SOURCES.items():
        click.echo(f"{name:14s} PATH: {entry.path_help}")


@hierarchy.command("permute")
@click.argument("name_or_file")
@click.option("--seed", type=click.IntRange(min=0), required=True,
              help="Seed of the permutation (the same seed gives the same tree).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write the permuted hierarchy JSON.")
def permute(name_or_file: str, seed: int, output: Path) -> None:
    """Write NAME_OR_FILE with its classes permuted among the class positions: the same tree
    shape, a meaningless grouping (the random-hierarchy control; train on it with
    --hierarchy OUTPUT, or use METHOD@permuted in `hafcls compare`)."""
    from hafcls.engine.compare_control import distance_agreement
    from hafcls.hierarchy import load
    from hafcls.hierarchy.permute import permute_classes

    h = load(name_or_file)
    permuted = permute_classes(h, seed)
    permuted.to_json(output)
    agree = distance_agreement(h, permuted)
    click.echo(f"{permuted!r} written to {output}: {agree['same_distance']:.0%} of class pairs "
               f"keep their distance, Spearman {agree['spearman']:.2f} with the original.")
