"""``hafcls quickstart``: cross-entropy vs HAFrame on the built-in synthetic data, side by side.

Needs no download and runs on a laptop CPU in a few minutes. The synthetic images are built so
that visual similarity follows the label tree (see :mod:`hafcls.data.synthetic`), so the gap in
mistake severity between the two methods shows up even on this toy problem.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import click

DEFAULT_METHODS = ("ce", "haframe")
# timm's test_resnet reaches the same accuracy here as resnet10t (91% top-1 in 8 epochs, both
# measured) at about 3.5x the CPU throughput; pass --model resnet10t for a standard small ResNet
DEFAULT_MODEL = "test_resnet"
DEFAULT_EPOCHS = 8
COLUMNS = (("top1", "top-1", True), ("mistake_severity", "mistake severity", False),
           ("hierdist@1", "HierDist@1", False), ("hierdist@5", "HierDist@5", False),
           ("hierdist@20", "HierDist@20", False))


def comparison_table(results: dict[str, dict]) -> str:
    """Aligned text table: one row per method, test metrics of its best-validation model."""
    header = ["method"] + [title for _, title, _ in COLUMNS]
    rows = [header]
    for method, metrics in results.items():
        row = [method]
        for key, _, pct in COLUMNS:
            value = metrics.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row.append("nan")
            else:
                row.append(f"{100 * value:.2f}%" if pct else f"{value:.3f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@click.command("quickstart")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              default=Path("runs/quickstart"), show_default=True,
              help="Folder for the runs (one subfolder per method); an interrupted quickstart "
                   "continues where it stopped.")
@click.option("--epochs", type=int, default=DEFAULT_EPOCHS, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="timm backbone (test_resnet: a tiny ResNet, fast on a CPU).")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help="Comma-separated methods to compare.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True,
              help="DataLoader workers generating the images while the model trains.")
@click.option("--threads", type=int, default=None,
              help="torch threads for the model (default: the CPU cores left over by the "
                   "workers, at least 1).")
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(output: Path, epochs: int, seed: int, model: str, methods: str, batch_size: int,
            lr: float, workers: int, threads: int | None, device: str, progress: bool) -> None:
    """Train cross-entropy and HAFrame on synthetic data and compare them.

    The synthetic dataset has 36 classes in a 4 x 3 x 3 tree (32 px images, 200 train / 40 val /
    40 test per class). Each method is trained from scratch, the best-validation epoch is
    tested, and the table shows top-1 accuracy, mistake severity and HierDist@1/5/20 (lower is
    better for the last four).
    """
    import torch

    from hafcls.engine.config import TrainConfig
    from hafcls.engine.train import train

    # one core per worker and the rest for the model: more threads than cores make every
    # small CPU op spin-wait (measured ~10x slower on a busy 2-core machine)
    torch.set_num_threads(threads or max(1, _cpu_count() - workers))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for name in names:
        cfg = TrainConfig.from_dict({
            "data": "synthetic", "method": name, "model": model, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "seed": seed, "workers": workers,
            "device": device, "progress": progress, "output": str(output / name),
            "resume": True,
        }, source="quickstart")
        click.echo(f"== {name} ==", err=True)
        result = train(cfg)
        results[name] = result["test"] or result["val"] or {}
    minutes = (time.perf_counter() - started) / 60
    click.echo(f"Synthetic data, {model}, {epochs} epochs, seed {seed}: test metrics of each "
               f"method's best-validation epoch ({minutes:.1f} min).")
    click.echo(comparison_table(results))
    click.echo(f"Runs in {output}/ (metrics.json, metrics.jsonl, checkpoints/best.pt); try "
               f"`hafcls evaluate {output / names[-1]} --crm`.")
