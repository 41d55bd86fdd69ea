"""``hafcls train``: train a method on a dataset into a run folder.

Values come from, lowest precedence first: the defaults, the run's own ``config.json`` (with
``--resume``), ``--config FILE``, then the flags given on the command line (and ``--set``).
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from hafcls.cli.choices import RegistryChoice
from hafcls.engine.config import TrainConfig, parse_assignment, read_config_file
from hafcls.errors import HafclsError
from hafcls.registry import DATASETS, METHODS, RECIPES

_EXPLICIT = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
# click parameters that are not config fields
_NOT_FIELDS = ("config", "assignments", "recipe")


def explicit_options(ctx: click.Context, params: dict) -> dict:
    """The options the user actually gave (not click defaults), by config field name."""
    return {name: value for name, value in params.items()
            if name not in _NOT_FIELDS and ctx.get_parameter_source(name) in _EXPLICIT}


def assignments_to_dict(assignments) -> dict:
    """``--set a=1 --set data_options.per_class=20`` as a nested dict."""
    out: dict = {}
    for text in assignments:
        key, value = _unsquashed(text, *parse_assignment(text))
        head, _, rest = key.replace("-", "_").partition(".")
        if rest:
            out.setdefault(head, {})
            if isinstance(out[head], dict):
                out[head][rest] = value
        else:
            out[head] = value
    return out


def _squashed(value) -> bool:
    """Whether YAML read ``{a:1,b:2}`` (no space after the colons) as keys ``'a:1'`` without
    values, at any depth."""
    if isinstance(value, dict):
        return any((isinstance(k, str) and ":" in k and v is None) or _squashed(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(_squashed(v) for v in value)
    return False


def _unsquashed(text: str, key: str, value):
    """``--set "k={train:2,val:1}"`` means ``{train: 2, val: 1}``: YAML needs a space after a
    mapping's colon, so read it again with one; refuse when that does not help."""
    import re

    import yaml

    if isinstance(value, str):  # 1e-3: a number (YAML 1.1 would keep it a string)
        from hafcls.validation import load_yaml_text

        value = load_yaml_text(text.split("=", 1)[1])
    if not _squashed(value):
        return key, value
    raw = text.split("=", 1)[1]
    try:
        again = yaml.safe_load(re.sub(r":(?=[^\s/])", ": ", raw))
    except yaml.YAMLError:
        again = value
    if _squashed(again) or not isinstance(again, type(value)):
        raise HafclsError(f"--set {text!r}: the mapping could not be read (YAML needs a space "
                          "after each colon).", f"write it as --set '{key}={{a: 1, b: 2}}'.")
    return key, again


#: options naming files or folders: a leading ~ means the home folder wherever it is written
PATH_FIELDS = ("data_dir", "output", "pretrained_file", "hierarchy")


def _expand_paths(values: dict) -> dict:
    import os

    return {k: os.path.expanduser(v) if k.replace("-", "_") in PATH_FIELDS
            and isinstance(v, str) and v.startswith("~") else v for k, v in values.items()}


def resolve_config(explicit: dict, config_file: Path | None, assignments=(),
                   recipe: str | None = None) -> TrainConfig:
    """Build the run's config from a recipe, the run folder (when resuming), the file and the
    flags, in that order of precedence (lowest first).

    Mapping options given with ``--set`` (``--set data_options.per_class=20``) and
    ``--skip-corrupt/--strict-images`` (``data_options.skip_corrupt``) merge into the mapping
    the run folder and the file give, instead of replacing it.
    """
    from hafcls.engine.runs import RunFolder

    if config_file is not None:
        config_file = Path(config_file).expanduser()
    file_values = _expand_paths(read_config_file(config_file) if config_file is not None
                                else {})
    flags = _expand_paths({**explicit})
    skip_corrupt = flags.pop("skip_corrupt", None)
    sets = _expand_paths(assignments_to_dict(assignments))
    if skip_corrupt is not None:
        data_options = sets.get("data_options")
        sets["data_options"] = {**(data_options if isinstance(data_options, dict) else {}),
                                "skip_corrupt": skip_corrupt}
    cfg = TrainConfig()
    if recipe is not None:
        cfg.update(RECIPES.get(recipe).config, source=f"the recipe {recipe!r}")
    resume = flags.get("resume", file_values.get("resume", False))
    output = flags.get("output", file_values.get("output"))
    if resume and output:
        stored = RunFolder(output).stored_config()
        if stored is not None:
            cfg.update(stored, source=f"{output}/config.json")
    if file_values:
        cfg.update(file_values, source=str(config_file))
    for key, value in sets.items():
        base = getattr(cfg, key, None)
        if isinstance(value, dict) and isinstance(base, dict):
            value = {**base, **value}
        flags[key] = value
    cfg.update(flags, source="the command line")
    return cfg


@click.command("train")
@click.option("--config", "config", type=click.Path(path_type=Path),
              help="YAML or JSON file of options (keys as below, e.g. 'batch_size: 128'); "
                   "flags given on the command line override it.")
@click.option("--recipe", type=RegistryChoice(RECIPES),
              help="Start from a published recipe (hafcls.list_recipes()); --config and flags "
                   "override it.")
@click.option("--data", type=RegistryChoice(DATASETS), help="Dataset.  [default: synthetic]")
@click.option("--data-dir", help="Dataset folder (not needed for synthetic).")
@click.option("--hierarchy", help="Shipped hierarchy name or hierarchy file (default: the "
                                  "dataset's own).")
@click.option("--download", is_flag=True, default=None,
              help="Download the dataset if it is missing (explicit opt-in).")
@click.option("--image-size", type=int, help="Input side in pixels (default: the dataset's).")
@click.option("--skip-corrupt/--strict-images", "skip_corrupt", default=None,
              help="Skip unreadable images and count them per epoch (default), or stop at the "
                   "first one naming the file (data_options.skip_corrupt).")
@click.option("--method", type=RegistryChoice(METHODS), help="Training method.")
@click.option("--model", help="timm backbone name, e.g. resnet18, resnet50, wide_resnet50_2.")
@click.option("--pretrained", is_flag=True, default=None,
              help="Start from timm's pretrained weights (downloads them).")
@click.option("--pretrained-file", help="Backbone weights from a local .safetensors/.pth file.")
@click.option("--epochs", type=int, help="Training epochs.  [default: 100]")
@click.option("--batch-size", type=int, help="Batch size per process.  [default: 64]")
@click.option("--eval-batch-size", type=int, help="Evaluation batch size (default 2 x batch).")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), help="[default: sgd]")
@click.option("--lr", type=float, help="Peak learning rate of the head.  [default: 0.1]")
@click.option("--lr-backbone", type=float,
              help="Peak LR of the backbone (default: --lr from scratch, --lr/10 pretrained).")
@click.option("--momentum", type=float, help="SGD momentum.  [default: 0.9]")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum (SGD).")
@click.option("--weight-decay", type=float, help="[default: 5e-4]")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]),
              help="Per-epoch LR schedule.  [default: cosine]")
@click.option("--warmup-epochs", type=int, help="Linear warmup epochs.  [default: 0]")
@click.option("--min-lr", type=float, help="Final LR as a fraction of the peak.  [default: 0]")
@click.option("--grad-clip", type=float, help="Clip the global gradient norm to this value.")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]),
              help="Mixed precision (fp16 needs CUDA).  [default: none]")
@click.option("--channels-last", is_flag=True, default=None, help="NHWC memory format.")
@click.option("--compile", "compile", is_flag=True, default=None,
              help="torch.compile the training step (model + loss; the first steps compile, "
                   "CPU needs a C++ compiler).  [default: off]")
@click.option("--device", help="auto, cpu, cuda or cuda:N.  [default: auto]")
@click.option("--seed", type=int, help="Seed of initialisation, data order and augmentation.")
@click.option("--deterministic", is_flag=True, default=None,
              help="torch.use_deterministic_algorithms (slower on GPU).")
@click.option("--workers", type=int, help="DataLoader workers per process.  [default: 2]")
@click.option("--threads", type=int,
              help="torch threads for the model (e.g. CPU cores minus --workers; more threads "
                   "than free cores spin-wait).  [default: torch's choice]")
@click.option("--select-metric",
              help="Validation metric choosing best.pt: top1 (default), hierdist@1, "
                   "mistake_severity, loss, ... (lower is better for distances).")
@click.option("--checkpoint-every", type=int,
              help="Also write last.pt every N steps, for mid-epoch resume.  [default: 0]")
@click.option("--progress/--no-progress", default=None, help="Progress bars.  [default: on]")
@click.option("--tensorboard", metavar="DIR",
              help="Write TensorBoard curves (losses, LRs, validation metrics, frame cosines) "
                   "to DIR (needs: pip install tensorboard).")
@click.option("--mixup", type=float, metavar="ALPHA",
              help="Mixup with Beta(ALPHA, ALPHA) (timm Mixup; e.g. 0.2).  [default: 0 = off]")
@click.option("--cutmix", type=float, metavar="ALPHA",
              help="CutMix with Beta(ALPHA, ALPHA) (e.g. 1.0).  [default: 0 = off]")
@click.option("--mixup-prob", type=float, help="Probability of mixing a batch.  [default: 1]")
@click.option("--mixup-switch-prob", type=float,
              help="Probability of CutMix instead of mixup when both are on.  [default: 0.5]")
@click.option("--mixup-mode", type=click.Choice(["batch", "pair", "elem"]),
              help="One lambda per batch, pair or sample.  [default: batch]")
@click.option("--imbalance", type=float, metavar="RATIO",
              help="Train on a long-tailed subset of the training split with n_max/n_min = "
                   "RATIO (e.g. 100); validation and test stay as they are.")
@click.option("--imbalance-profile", type=click.Choice(["exponential", "step"]),
              help="n_c = n_max*RATIO^(-c/(K-1)), or half the classes at n_max/RATIO.  "
                   "[default: exponential]")
@click.option("--imbalance-rare", type=click.Choice(["last", "first", "random"]),
              help="Which classes are rare (random: seeded by --seed).  [default: last]")
@click.option("--collapse-report/--no-collapse-report", default=None,
              help="Write collapse.json (neural/minority collapse, mixup geometry) and its plot "
                   "after training.  [default: on with --mixup/--cutmix/--imbalance]")
@click.option("-o", "--output", help="Run folder to create (or to resume).")
@click.option("--resume", is_flag=True, default=None,
              help="Continue the run in --output from checkpoints/last.pt (starts afresh if "
                   "there is none).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Any other option, value read as YAML: --set data_options.per_class=50, "
                   "--set method_options.alpha=0.3, --set model_options.drop_path_rate=0.1.")
def command(config: Path | None, assignments: tuple[str, ...], recipe: str | None,
            **params) -> None:
    """Train a model and write a run folder (config, metrics, checkpoints).

    \b
    Example:
      hafcls train --data cifar100 --data-dir ~/data --method haframe \\
          --model resnet18 --epochs 100 --output runs/cifar-haframe
    Multi-GPU: torchrun --nproc_per_node=4 $(which hafcls) train ...
    """
    from hafcls.engine.evaluate import metrics_table
    from hafcls.engine.train import train

    ctx = click.get_current_context()
    cfg = resolve_config(explicit_options(ctx, params), config, assignments, recipe)
    cfg.require_run_fields()
    result = train(cfg)
    from hafcls.engine.distributed import env_info

    if not env_info().is_main:
        return
    click.echo(f"Run folder: {result['output']}")
    best = result.get("best_epoch")
    if result.get("test"):
        click.echo(f"Test metrics of the best-validation model (epoch {best}, "
                   f"selected by {result['select_metric']}):")
        click.echo(metrics_table(result["test"]))
    elif result.get("val"):
        click.echo(f"Validation metrics at the best epoch ({best}):")
        click.echo(metrics_table(result["val"]))
