"""The ``hafcls`` command: one click group whose sub-commands live in their own modules.

Sub-commands load on first use, so ``hafcls hierarchy show`` does not pay for importing torch.
Every :class:`~hafcls.errors.HafclsError` (bad user input) becomes a one-paragraph message on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from hafcls.errors import HafclsError

# command name -> "module:attribute"
COMMANDS = {
    "hierarchy": "hafcls.cli.hierarchy:hierarchy",
    "frame": "hafcls.cli.frame:command",
    "train": "hafcls.cli.train:command",
    "evaluate": "hafcls.cli.evaluate:command",
    "predict": "hafcls.cli.predict:command",
    "quickstart": "hafcls.cli.quickstart:command",
    "compare": "hafcls.cli.compare:command",
    "plot": "hafcls.cli.plot:command",
    "recipes": "hafcls.cli.recipes:command",
}


class HafclsGroup(click.Group):
    """Lazily loaded sub-commands; user-input errors exit with code 2 and a clear message."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            module, attr = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

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


if __name__ == "__main__":
    cli()
