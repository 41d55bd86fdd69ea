"""``hafcls hierarchy show|build``: inspect a label tree, or build one from a source's own files."""

from __future__ import annotations

import time
from pathlib import Path

import click

from hafcls.errors import HafclsError

SOURCES = ("wordnet", "inaturalist", "fgvc-aircraft", "cifar100", "isa", "nltk-pickle")


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


def _read_ids(path: Path) -> list[str]:
    from hafcls.hierarchy.tree import read_text

    ids = [line.split()[0] for line in read_text(path).splitlines() if line.strip()]
    if not ids:
        raise HafclsError(f"{path} lists no WordNet ids.", "write one id (n01440764) per line.")
    return ids


@hierarchy.command("build")
@click.argument("source", type=click.Choice(SOURCES))
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

    \b
    wordnet        PATH: text file, one ImageNet id (n01440764) per line = the classes in order
    inaturalist    PATH: train2019.json / categories.json of the competition
    fgvc-aircraft  PATH: the fgvc-aircraft-2013b folder (or its data/)
    cifar100       PATH: the folder holding cifar-100-python/
    isa            PATH: text file, one 'parent child' pair per line
    nltk-pickle    PATH: a pickled nltk.Tree (needs --trust)
    """
    from hafcls import hierarchy as hz

    t0 = time.perf_counter()
    if source == "wordnet":
        h = hz.wordnet(_read_ids(path), rule=rule, prune_chains=prune_chains, name=name)
    elif source == "inaturalist":
        h = hz.inaturalist(path)
    elif source == "fgvc-aircraft":
        h = hz.fgvc_aircraft(path)
    elif source == "cifar100":
        h = hz.cifar100(path)
    elif source == "isa":
        h = hz.Hierarchy.from_isa_file(path)
    else:
        h = hz.from_nltk_tree_pickle(path, trust=trust)
    if name:
        h.meta["name"] = name
    h.to_json(output)
    click.echo(f"{h!r} written to {output} in {time.perf_counter() - t0:.1f}s")
