"""Shared CLI test helpers: run the hafcls CLI in-process and train a tiny run from a config."""

import yaml
from click.testing import CliRunner

from hafcls.cli.main import cli


def invoke(*args):
    """``hafcls ARGS`` in-process; exceptions propagate so a crash shows its traceback."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def train_run(root, config: dict, *extra):
    """Train ``config`` (TrainConfig keys) into ``root/run`` with ``hafcls train``.

    ``extra`` are flags placed after ``--config`` (they override the file). Returns the run
    folder and the click result; a failed run fails the calling fixture with the CLI output.
    Thread count: the session-wide ``one_torch_thread`` fixture in conftest.py already pins it.
    """
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = root / "run"
    result = invoke("train", "--config", path, *extra, "--output", out)
    assert result.exit_code == 0, result.output
    return out, result
