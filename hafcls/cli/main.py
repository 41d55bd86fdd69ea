"""The ``hafcls`` command: one click group, sub-commands registered from their own modules.

Every :class:`~hafcls.errors.HafclsError` (bad user input) becomes a one-paragraph message on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import click

from hafcls.errors import HafclsError


class HafclsGroup(click.Group):
    """A click group that turns user-input errors into exit code 2 with a clear message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HafclsError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)


@click.group(cls=HafclsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hafcls")
def cli() -> None:
    """Hierarchy-aware image classification: label trees, frames, training and evaluation."""


def _register() -> None:
    from hafcls.cli import hierarchy as hierarchy_cmds

    cli.add_command(hierarchy_cmds.hierarchy)
    for module in ("frame", "train", "evaluate", "predict", "quickstart", "compare", "plot"):
        try:
            mod = __import__(f"hafcls.cli.{module}", fromlist=["command"])
        except ModuleNotFoundError as err:
            if err.name != f"hafcls.cli.{module}":
                raise
            continue
        cli.add_command(mod.command)


_register()

if __name__ == "__main__":
    cli()
