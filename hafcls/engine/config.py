"""Training configuration: one dataclass holding every option, loaded from YAML/JSON and flags.

Precedence, lowest first: the defaults below, a config file (``--config``), then explicit flags.
Every key is checked here so that a typo or an impossible value fails before any data is loaded,
with a message naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hafcls.errors import HafclsError
from hafcls.registry import DATASETS
from hafcls.validation import Option, read_user_file

# validation metrics a run can select its best checkpoint by, and which way is better
HIGHER_IS_BETTER = {"top1": True, "top5": True, "mistake_severity": False,
                    "hierdist@1": False, "hierdist@5": False, "hierdist@20": False,
                    "loss": False}


def metric_is_higher_better(name: str) -> bool:
    """Whether a larger value of the validation metric ``name`` is better."""
    if name in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[name]
    if name.startswith("acc@depth") or name.startswith("top"):
        return True
    if name.startswith("hierdist@"):
        return False
    raise HafclsError(
        f"Unknown selection metric {name!r}.",
        f"use one of {', '.join(HIGHER_IS_BETTER)} or acc@depth<t>.",
    )


# bounds of the numeric fields, declared once (types come from the annotations below)
FIELD_OPTIONS = (
    Option("epochs", int, 1), Option("batch_size", int, 1),
    Option("eval_batch_size", int, 1, nullable=True), Option("image_size", int, 1, nullable=True),
    Option("lr", float, 0.0, None, "neither"),
    Option("lr_backbone", float, 0.0, None, "neither", nullable=True),
    Option("grad_clip", float, 0.0, None, "neither", nullable=True),
    Option("weight_decay", float, 0.0), Option("workers", int, 0),
    Option("threads", int, 1, nullable=True),
    Option("warmup_epochs", int, 0), Option("checkpoint_every", int, 0),
    Option("momentum", float, 0.0, 1.0, "left", help="0.9 in the paper"),
    Option("min_lr", float, 0.0, 1.0, help="a fraction of the peak LR"),
    Option("seed", int, 0),
    # mixup/CutMix alphas (0 = off) and timm's Mixup probabilities; imbalance ratio rho >= 1
    Option("mixup", float, 0.0), Option("cutmix", float, 0.0),
    Option("mixup_prob", float, 0.0, 1.0), Option("mixup_switch_prob", float, 0.0, 1.0),
    Option("imbalance", float, 1.0, nullable=True, help="n_max / n_min of the training split"),
)
# parameter roles that can get their own peak LR (``lr_groups``; hafcls.engine.optimization)
LR_ROLES = ("backbone", "projection", "neck", "classifier", "loss")
# transform presets a run can select (``transform_preset``; hafcls.data.transforms.PRESETS)
TRANSFORM_PRESETS = ("cifar", "fgvc", "stretch")
# fields whose values are the names of a registry (aliases accepted, stored canonical)
FIELD_REGISTRIES = {"data": DATASETS}


@dataclass
class TrainConfig:
    """Every option of a training run. Field names are the config-file keys and the CLI flags
    (``batch_size`` is ``--batch-size``)."""

    # ---- data
    data: str = "synthetic"               # a registered dataset (hafcls.list_datasets())
    data_dir: str | None = None
    hierarchy: str | None = None          # shipped name or file; default: the dataset's own
    download: bool = False
    image_size: int | None = None         # default: the dataset's native size
    data_options: dict = field(default_factory=dict)   # extra keyword arguments of build_datasets
    transform_preset: str | None = None   # a paper's pipeline: cifar, fgvc, stretch (see docs)
    # ---- model and method
    method: str | None = None             # required: ce, haframe, etf-dr, hug-mhe, ...
    model: str | None = None              # required: a timm backbone name
    pretrained: bool = False              # timm's pretrained weights (needs network)
    pretrained_file: str | None = None    # backbone weights from a local file
    model_options: dict = field(default_factory=dict)  # extra keyword arguments of models.create
    method_options: dict = field(default_factory=dict)  # overrides of the method's head/loss kwargs
    # ---- optimisation (the HAFrame recipe of docs/haframe.md by default)
    epochs: int = 100
    batch_size: int = 64                  # per process
    eval_batch_size: int | None = None    # default: 2 x batch_size
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1                       # peak LR of the head (and of a from-scratch backbone)
    lr_backbone: float | None = None      # default: lr from scratch, lr / 10 when pretrained
    lr_groups: dict = field(default_factory=dict)  # peak LR per parameter role (optimization.py)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 0.0                   # final LR of the cosine, as a fraction of the peak
    grad_clip: float | None = None        # max global gradient norm
    # ---- runtime
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False                 # torch.compile the training step (model + loss)
    device: str = "auto"                  # auto, cpu, cuda, cuda:N
    seed: int = 0
    deterministic: bool = False           # torch.use_deterministic_algorithms
    workers: int = 2                      # DataLoader workers per process
    threads: int | None = None            # torch intra-op threads (default: torch's choice)
    select_metric: str = "top1"           # validation metric choosing best.pt
    checkpoint_every: int = 0             # also write last.pt every N steps (0: per epoch only)
    progress: bool = True                 # tqdm bars (rank 0 only)
    tensorboard: str | None = None        # TensorBoard log folder (rank 0; pip install tensorboard)
    # ---- mixup / CutMix and long-tailed training (docs/mixup_and_imbalance.md)
    mixup: float = 0.0                    # mixup alpha (timm Mixup); 0 = off
    cutmix: float = 0.0                   # CutMix alpha; 0 = off
    mixup_prob: float = 1.0               # probability of mixing a batch
    mixup_switch_prob: float = 0.5        # probability of CutMix when both alphas are set
    mixup_mode: Literal["batch", "pair", "elem"] = "batch"  # one lambda per batch/pair/sample
    imbalance: float | None = None        # long-tailed training split, n_max / n_min
    imbalance_profile: Literal["exponential", "step"] = "exponential"
    imbalance_rare: Literal["last", "first", "random"] = "last"  # which classes are rare
    collapse_report: bool | None = None   # collapse.json (default: on with mixup/imbalance)
    # ---- run folder
    output: str | None = None
    resume: bool = False

    # ------------------------------------------------------------------ derived values
    @property
    def backbone_lr(self) -> float:
        """Peak LR of the backbone: ``lr_backbone`` if given, else ``lr`` from scratch and
        ``lr / 10`` for a pretrained backbone (docs/haframe.md: head 0.1, pretrained
        backbone 0.01)."""
        if self.lr_backbone is not None:
            return self.lr_backbone
        pretrained = self.pretrained or self.pretrained_file is not None
        return self.lr / 10 if pretrained else self.lr

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size

    def to_dict(self) -> dict:
        """A JSON-able dict with every field (the resolved config written to the run folder)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "the config") -> TrainConfig:
        """Build and validate a config from a mapping; unknown keys and wrong types raise."""
        cfg = cls()
        cfg.update(values, source=source)
        return cfg

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainConfig:
        return cls.from_dict(read_config_file(path), source=str(path))

    @classmethod
    def from_sources(cls, file: str | os.PathLike | None = None,
                     overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Defaults, then ``file`` (YAML or JSON), then ``overrides`` (explicit flags)."""
        cfg = cls()
        if file is not None:
            cfg.update(read_config_file(file), source=str(file))
        if overrides:
            cfg.update(overrides, source="the command line")
        return cfg

    def update(self, values: Mapping[str, Any], source: str = "the config") -> TrainConfig:
        """Set the given keys (``-`` and ``_`` interchangeable) after checking names and types."""
        if not isinstance(values, Mapping):
            raise HafclsError(
                f"{source} must be a mapping of option names to values, got "
                f"{type(values).__name__}.",
                "write one 'key: value' per line (YAML) or a JSON object.",
            )
        hints = _field_types()
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in hints:
                close = difflib.get_close_matches(key, list(hints), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise HafclsError(
                    f"Unknown option {raw_key!r} in {source}.",
                    f"{hint}valid options: {', '.join(sorted(hints))}.",
                )
            setattr(self, key, _coerce(key, value, hints[key], source))
        self.validate()
        return self

    def validate(self) -> TrainConfig:
        """Check values that have the right type but cannot work (negative epochs, ...)."""
        for option in FIELD_OPTIONS:
            option.check(getattr(self, option.name))
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise HafclsError("Option 'nesterov' needs the SGD optimizer with momentum > 0.",
                              "drop --nesterov, or use --optimizer sgd with momentum 0.9.")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise HafclsError(
                f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs "
                f"({self.epochs}).", "shorten the warmup or train longer.")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise HafclsError(f"Unknown device {self.device!r}.",
                              "use auto, cpu, cuda or cuda:N.")
        metric_is_higher_better(self.select_metric)
        _check_lr_groups(self.lr_groups)
        if self.transform_preset not in (None, *TRANSFORM_PRESETS):
            raise HafclsError(f"Unknown transform_preset {self.transform_preset!r}.",
                              f"use one of {', '.join(TRANSFORM_PRESETS)} (or leave it unset).")
        return self

    def require_run_fields(self) -> None:
        """The fields a training run cannot do without (checked when training starts, so that a
        config file may leave them to the command line)."""
        for key, flag, example in (("method", "--method", "haframe"),
                                   ("model", "--model", "resnet18"),
                                   ("output", "--output", "runs/my-run")):
            if getattr(self, key) in (None, ""):
                raise HafclsError(f"No {key} given for the training run.",
                                  f"pass {flag} (e.g. {flag} {example}) or set {key!r} in the "
                                  "config file.")


def _check_lr_groups(groups: dict) -> None:
    wrong = sorted(set(groups) - set(LR_ROLES))
    if wrong:
        raise HafclsError(f"Unknown parameter role(s) in lr_groups: {', '.join(wrong)}.",
                          f"use some of {', '.join(LR_ROLES)}.")
    for role, value in groups.items():
        Option(f"lr_groups.{role}", float, 0.0, None, "neither").check(value)


# ---------------------------------------------------------------------- files
def read_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a dict (duplicate keys refused)."""
    return read_user_file(path, "config file")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` with the value read as a YAML scalar (``--set epochs=3``)."""
    import yaml

    if "=" not in text:
        raise HafclsError(f"--set expects KEY=VALUE, got {text!r}.", "write e.g. --set epochs=3.")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


# ---------------------------------------------------------------------- typing
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Return ``value`` if it matches ``hint`` (ints accepted for floats), else raise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0], source)
    if origin is Literal:
        if value not in args:
            raise HafclsError(f"Option {key!r} in {source} must be one of "
                              f"{', '.join(map(str, args))}, got {value!r}.",
                              f"set {key} to one of the listed values.")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }.get(hint, False)
    if not ok:
        expected = {bool: "true or false", int: "an integer", float: "a number",
                    str: "a string", dict: "a mapping"}.get(hint, str(hint))
        raise HafclsError(f"Option {key!r} in {source} must be {expected}, got {value!r} "
                          f"({type(value).__name__}).", f"give {key} {expected}.")
    if key in FIELD_REGISTRIES:
        registry = FIELD_REGISTRIES[key]
        if value not in registry:
            raise HafclsError(f"Option {key!r} in {source} must be one of "
                              f"{', '.join(registry.names())}, got {value!r}.",
                              f"set {key} to one of the listed values.")
        value = registry.canonical(value)
    if hint is float:
        value = float(value)
    if hint is dict:
        try:
            json.dumps(value)
        except TypeError:
            raise HafclsError(f"Option {key!r} in {source} holds values that are not plain "
                              "numbers, strings, lists or mappings.",
                              f"write {key} with plain values only.") from None
    return value
