"""The comparison's plan: which methods and seeds, each run's config, and training the runs that
have not finished (finished runs are checked to be the same experiment, interrupted ones resumed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hafcls.engine.config import TrainConfig
from hafcls.engine.runs import RESUMABLE_CHANGES, RunFolder
from hafcls.errors import HafclsError

# config keys that change how a run is executed, not what it trains: those a resume may change,
# except the epoch count, which a comparison fixes
RUNTIME_KEYS = RESUMABLE_CHANGES - {"epochs"}

Log = Callable[[str], None]


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- arguments
def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """Method names from ``"ce,haframe"`` or a list, checked against the registry.

    ``METHOD@permuted`` is the random-hierarchy control of METHOD (see
    :mod:`hafcls.engine.compare_control`)."""
    from hafcls.engine.compare_control import split_entry
    from hafcls.methods import available_methods

    names = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise HafclsError("No methods to compare.", "pass e.g. --methods ce,haframe.")
    known = available_methods()
    unknown = [n for n in names if split_entry(n)[0] not in known]
    if unknown:
        raise HafclsError(f"Unknown method(s): {', '.join(unknown)}.",
                          f"use some of {', '.join(known)}.")
    if len(set(names)) != len(names):
        raise HafclsError(f"A method is listed twice in {', '.join(names)}.",
                          "name each method once.")
    return names


def parse_seeds(seeds: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count (``3`` -> 0, 1, 2) or an explicit list (``"0,4,7"``)."""
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            seeds = int(text) if "," not in text else [int(s) for s in text.split(",") if s]
        except ValueError:
            raise HafclsError(f"--seeds must be a count or a comma list of seeds, got {text!r}.",
                              "pass e.g. --seeds 5 or --seeds 0,1,2.") from None
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise HafclsError(f"The number of seeds must be at least 1, got {seeds}.",
                              "pass e.g. --seeds 5 (the paper's count).")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise HafclsError(f"Seeds must be distinct non-negative integers, got {out}.",
                          "pass e.g. --seeds 0,1,2.")
    return out


def run_path(output: str | Path, method: str, seed: int) -> Path:
    """The run folder of ``method`` and ``seed`` inside a comparison folder."""
    return Path(output) / "runs" / method / f"seed{seed}"


# ---------------------------------------------------------------------- training
def method_options_for(options: Mapping, method: str) -> dict:
    """The ``method_options`` of one method in a comparison.

    Keys that name a method (``{"haframe": {"gamma": 3}}``) hold that method's own options;
    the other keys apply to every method. ``--set method_options.haframe={gamma: 3}`` thus
    changes HAFrame's γ without touching the baselines.
    """
    from hafcls.methods import available_methods

    names = set(available_methods())
    shared = {k: v for k, v in options.items() if k not in names}
    for name in sorted(names & set(options)):
        if not isinstance(options[name], Mapping):
            raise HafclsError(f"method_options.{name} must be a mapping, got {options[name]!r}.",
                              f"write e.g. --set method_options.{name}={{alpha: 0.5}}.")
    return {**shared, **options.get(method, {})}


def run_config(base: TrainConfig, method: str, seed: int, output: str | Path,
               control: dict | None = None) -> TrainConfig:
    """``base`` with the method, seed, run folder and method options of one comparison run.

    ``method`` may be a ``METHOD@permuted`` control entry: then ``control`` holds ``tree`` (the
    true hierarchy) and ``seed`` (the base permutation seed), and the run trains METHOD on the
    permuted tree written under ``output/control``."""
    from hafcls.engine.compare_control import control_hierarchy_file, split_entry

    name, is_control = split_entry(method)
    cfg = TrainConfig.from_dict(base.to_dict(), source="the comparison options")
    cfg.update({"method": name, "seed": seed, "output": str(run_path(output, method, seed)),
                "resume": False,
                "method_options": method_options_for(base.method_options, name)})
    if is_control:
        if control is None:
            raise HafclsError(f"{method} needs the comparison's tree to permute.",
                              "call compare(), which passes it.")
        tree_file = control_hierarchy_file(output, control["tree"], control["seed"], seed)
        cfg.update({"hierarchy": str(tree_file)})
    cfg.require_run_fields()
    return cfg


def check_method_options(methods: Sequence[str], config: TrainConfig) -> None:
    """Fail before any training when a method does not accept its ``method_options``."""
    from hafcls.engine.compare_control import split_entry
    from hafcls.methods import get_method

    for method in (split_entry(m)[0] for m in methods):
        options = method_options_for(config.method_options, method)
        if not options:
            continue
        try:
            get_method(method, dataset=config.data).with_options(**options)
        except HafclsError as err:
            raise HafclsError(
                f"{err.problem} In a comparison, method_options apply to every method unless "
                "given under a method's name.",
                f"give options to one method only, e.g. --set method_options.haframe="
                f"{{alpha: 0.5}}; {err.fix}") from None


def check_same_experiment(stored: Mapping, wanted: TrainConfig, where: Path) -> None:
    """Refuse a finished run trained with other options than ``wanted`` (runtime keys aside)."""
    current = wanted.to_dict()
    for key, value in current.items():
        if key in RUNTIME_KEYS or key not in stored:
            continue
        if stored[key] != value:
            raise HafclsError(
                f"{where} was trained with {key}={stored[key]!r}, but this comparison asks for "
                f"{key}={value!r}.",
                "use another --output folder for the new setting, or delete that run folder "
                "to retrain it.")


def train_runs(methods: Sequence[str], seeds: Sequence[int], config: TrainConfig,
               output: str | Path, train_fn: Callable | None = None,
               log: Log | None = None,
               control: dict | None = None) -> tuple[list[Path], list[Path]]:
    """Train every method x seed that has not finished yet; return ``(trained, skipped)``.

    A run folder with ``metrics.json`` is finished (skipped, after checking that it was trained
    with the same options); one with a config or checkpoint but no ``metrics.json`` is resumed.
    """
    if train_fn is None:
        from hafcls.engine.train import train as train_fn
    log = log or log_to_stderr
    check_method_options(methods, config)
    plan = [(method, seed, run_config(config, method, seed, output, control))
            for method in methods for seed in seeds]
    # every finished run is checked before anything trains, so a mismatch fails at once
    for _, _, cfg in plan:
        folder = RunFolder(cfg.output)
        if folder.metrics_file.is_file():
            check_same_experiment(folder.stored_config() or {}, cfg, folder.path)
    trained, skipped = [], []
    for done, (method, seed, cfg) in enumerate(plan, start=1):
        folder = RunFolder(cfg.output)
        if folder.metrics_file.is_file():
            log(f"[{done}/{len(plan)}] {method} seed {seed}: finished earlier, skipped.")
            skipped.append(folder.path)
            continue
        resume = folder.holds_run()
        cfg.update({"resume": resume})
        log(f"[{done}/{len(plan)}] {method} seed {seed}: "
            f"{'resuming' if resume else 'training'} into {folder.path}")
        train_fn(cfg)
        trained.append(folder.path)
    return trained, skipped


