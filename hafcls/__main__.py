"""``python -m hafcls`` is the ``hafcls`` command."""

from hafcls.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="hafcls")
