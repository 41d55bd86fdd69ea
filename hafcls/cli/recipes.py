"""``hafcls recipes``: list the shipped training recipes, or show one in full."""

from __future__ import annotations

import click


@click.command("recipes")
@click.argument("name", required=False)
def command(name: str | None) -> None:
    """List the published recipes (``hafcls train --recipe NAME``), or show the settings of one.

    \b
    Example:
      hafcls recipes
      hafcls recipes haframe-cifar100
      hafcls train --recipe haframe-cifar100 --data-dir ~/data --seed 0 -o runs/cifar-s0
    """
    import yaml

    from hafcls.registry import RECIPES

    if name is None:
        names = RECIPES.names()
        width = max(len(n) for n in names)
        for recipe_name in names:
            click.echo(f"{recipe_name:<{width}}  {RECIPES.get(recipe_name).description}")
        return
    recipe = RECIPES.get(name)  # an unknown name raises HafclsError listing the known ones
    click.echo(f"{recipe.name}: {recipe.description}\n")
    click.echo(f"Source: {recipe.source}\n")
    click.echo(yaml.safe_dump(recipe.config, sort_keys=False, default_flow_style=False).rstrip())
