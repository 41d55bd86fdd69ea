"""Issue 17's measurements: long-tailed training and mixup on Fashion-MNIST (else synthetic).

Two experiments, 3 seeds each, every run an ordinary ``hafcls train`` run folder under OUT:

- ``imbalance``: CE vs HAFrame vs ETF (dot regression) on the exponential profile with ratio
  100 (500 -> 5 training images per class); test set balanced. Reports few/medium/many-shot
  accuracy, minority collapse (classifier vectors for CE, class means for the fixed frames;
  ``minority_collapse_means`` for all), top-1 and mistake severity.
- ``mixup``: CE and HAFrame on a balanced subset, without and with mixup; reports ECE, mistake
  severity, HierDist@5, top-1 and the mixup geometry of the collapse report.

Finished runs (``metrics.json`` present) are reused, so the script can be re-run to only
rebuild the tables. Writes OUT/results.json and OUT/results.md (mean ± 95% t-interval).

    nice -n 10 python3 scripts/run_imbalance_mixup.py --out runs/imbalance-mixup --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

DATA = {  # the dataset and its subset sizes (images per class) for each experiment
    "fashion-mnist": {"imbalance": {"train": 500, "val": 100, "test": 300},
                      "mixup": {"train": 150, "val": 50, "test": 300}},
    "synthetic": {"imbalance": {"train": 200, "val": 20, "test": 40},
                  "mixup": {"train": 100, "val": 20, "test": 40}},
}
COMMON = {"model": "test_resnet", "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4,
          "workers": 0, "progress": False}
EPOCHS = {"imbalance": 15, "mixup": 8}
MIXUP_ALPHA = 0.4
SEEDS = (0, 1, 2)


def plan(data: str) -> list[tuple[str, str, dict]]:
    """``(experiment, label, config)`` of every run."""
    runs = []
    for seed in SEEDS:
        for method in ("ce", "haframe", "etf-dr"):
            runs.append(("imbalance", method, dict(
                COMMON, data=data, method=method, seed=seed, epochs=EPOCHS["imbalance"],
                imbalance=100.0, data_options={"per_class": DATA[data]["imbalance"]})))
        for method in ("ce", "haframe"):
            for alpha in (0.0, MIXUP_ALPHA):
                label = f"{method}+mixup" if alpha else method
                runs.append(("mixup", label, dict(
                    COMMON, data=data, method=method, seed=seed, epochs=EPOCHS["mixup"],
                    mixup=alpha, collapse_report=True,
                    data_options={"per_class": DATA[data]["mixup"]})))
    return runs


def run_dir(out: Path, experiment: str, label: str, seed: int) -> Path:
    return out / experiment / label / f"seed{seed}"


def train_one(config_json: str) -> None:
    """Child process: one training run (one thread, so two jobs share two cores fairly)."""
    import torch

    from hafcls.engine.train import train

    torch.set_num_threads(1)
    train(json.loads(config_json), log=lambda m: print(m, flush=True))


def run_all(out: Path, data: str, jobs: int) -> None:
    pending = []
    for experiment, label, cfg in plan(data):
        folder = run_dir(out, experiment, label, cfg["seed"])
        if (folder / "metrics.json").is_file():
            continue
        cfg = dict(cfg, output=str(folder), resume=folder.is_dir())
        pending.append((folder, cfg))
    running: list[tuple[subprocess.Popen, Path, float]] = []
    while pending or running:
        while pending and len(running) < jobs:
            folder, cfg = pending.pop(0)
            folder.parent.mkdir(parents=True, exist_ok=True)
            log = open(folder.parent / f"{folder.name}.log", "w")
            cmd = [sys.executable, __file__, "--child", json.dumps(cfg)]
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
                            folder, time.time()))
            print(f"started {folder}", flush=True)
        time.sleep(2)
        for item in list(running):
            proc, folder, started = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"finished {folder} (exit {proc.returncode}, "
                      f"{time.time() - started:.0f} s)", flush=True)


# ---------------------------------------------------------------------- tables
IMBALANCE_COLUMNS = (("few_shot", "few-shot top-1 (%) ↑", 100),
                     ("medium_shot", "medium (%) ↑", 100), ("many_shot", "many (%) ↑", 100),
                     ("top1", "top-1 (%) ↑", 100), ("mistake_severity", "severity ↓", 1),
                     ("minority_collapse", "minority collapse", 1),
                     ("minority_collapse_means", "minority collapse (class means)", 1),
                     ("minority_collapse_classifier", "rare classes' classifier cosine", 1))
MIXUP_COLUMNS = (("ece", "ECE (%) ↓", 100), ("mistake_severity", "severity ↓", 1),
                 ("hierdist@5", "HierDist@5 ↓", 1), ("top1", "top-1 (%) ↑", 100),
                 ("mixup_same_class_cos", "same-class mix cos", 1),
                 ("mixup_cross_cos", "cross mix cos to its classes (λ=.5)", 1),
                 ("mixup_cross_boundary_abs", "cross mix abs boundary cos (λ=.5)", 1))


def run_metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    flat = dict(m.get("test") or {})
    for key in ("minority_collapse", "minority_collapse_means", "minority_collapse_classifier"):
        if key in m:
            flat[key] = m[key]
    if m.get("imbalance") and "minority_collapse_classifier" not in flat:
        flat["minority_collapse_classifier"] = classifier_collapse(folder, m)
    flat.update(m.get("mixup_geometry") or {})
    flat["wall_time_s"] = m.get("wall_time_s")
    return flat


def classifier_collapse(folder: Path, metrics: dict) -> float:
    """The rare classes' mean pairwise classifier cosine of the best model (for a fixed frame
    the value it was built with), for runs written before the report held it."""
    from hafcls.engine.builders import model_from_checkpoint
    from hafcls.engine.checkpoint import load_checkpoint
    from hafcls.metrics.minority import minority_collapse

    model, _, _ = model_from_checkpoint(load_checkpoint(folder / "checkpoints" / "best.pt"))
    return minority_collapse(model.class_vectors().detach(),
                             metrics["imbalance"]["train_counts"])


def _cell(entry: dict | None, scale: float) -> str:
    if not entry or entry.get("mean") is None or math.isnan(entry["mean"]):
        return "n/a"
    ci = entry.get("ci95")
    ci_text = "" if ci is None or math.isnan(ci) else f" ± {scale * ci:.2f}"
    return f"{scale * entry['mean']:.2f}{ci_text}"


def tables(out: Path, data: str) -> dict:
    from hafcls.metrics import summarize

    groups: dict[tuple[str, str], list[dict]] = {}
    for experiment, label, cfg in plan(data):
        m = run_metrics(run_dir(out, experiment, label, cfg["seed"]))
        if m is not None:
            groups.setdefault((experiment, label), []).append(m)
    summary = {f"{e}/{lab}": summarize(runs) for (e, lab), runs in groups.items()}
    lines = [f"Dataset: {data}; model test_resnet; seeds {list(SEEDS)}; mean ± 95% t-interval.",
             ""]
    for experiment, columns in (("imbalance", IMBALANCE_COLUMNS), ("mixup", MIXUP_COLUMNS)):
        lines += [f"### {experiment}", "",
                  "| method | runs | " + " | ".join(t for _, t, _ in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for (e, label), runs in groups.items():
            if e != experiment:
                continue
            s = summary[f"{e}/{label}"]
            lines.append(f"| {label} | {len(runs)} | "
                         + " | ".join(_cell(s.get(k), sc) for k, _, sc in columns) + " |")
        lines.append("")
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
    print(text)
    return summary


def geometry_figure(out: Path, data: str, path: Path) -> Path | None:
    """Seed-mean mixup-geometry curves, without and with mixup, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    drawn = False
    for ax, method in zip(axes, ("ce", "haframe")):
        for label, colour in ((method, "tab:blue"), (f"{method}+mixup", "tab:red")):
            curves = [json.loads((run_dir(out, "mixup", label, s) / "collapse.json")
                                 .read_text())["mixup_curves"] for s in SEEDS
                      if (run_dir(out, "mixup", label, s) / "collapse.json").is_file()]
            if not curves:
                continue
            drawn = True
            lam = np.asarray(curves[0]["lambdas"])
            for key, ls, what in (("same_cos", "-", "same-class cos(h, w_y)"),
                                  ("cross_boundary", ":", "cross cos(h, w_a − w_b)")):
                mean = np.mean([np.asarray(c[key], dtype=float) for c in curves], axis=0)
                ax.plot(lam, mean, ls, color=colour, marker="o", ms=3,
                        label=f"{label}: {what}")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{method} ({data}, mean over seeds)")
        ax.set_xlabel("λ (weight of image a)")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("cosine")
    fig.tight_layout()
    if not drawn:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/imbalance-mixup")
    parser.add_argument("--data", default=None, help="fashion-mnist (default if registered) "
                                                      "or synthetic")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tables-only", action="store_true")
    parser.add_argument("--figure", type=Path, help="also draw the mixup-geometry figure here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_one(args.child)
        return
    import hafcls

    data = args.data or ("fashion-mnist" if "fashion-mnist" in hafcls.list_datasets()
                         else "synthetic")
    out = Path(args.out)
    if not args.tables_only:
        run_all(out, data, args.jobs)
    tables(out, data)
    if args.figure is not None:
        print(geometry_figure(out, data, args.figure))


if __name__ == "__main__":
    main()
