"""``hafcls quickstart``: cross-entropy vs HAFrame side by side, on real images when it can.

With Fashion-MNIST's IDX files installed (``apt-get install dataset-fashion-mnist``;
docs/datasets.md) it trains on a class-balanced subset of the real images and tests on all 10,000
test images; without them it says how to get them and falls back to the built-in synthetic data
(:mod:`hafcls.data.synthetic`), which needs nothing. Either way it takes a few minutes on a
2-core CPU.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import click

DEFAULT_METHODS = ("ce", "haframe")
# timm's test_resnet reaches the same accuracy on the synthetic data as resnet10t (91% top-1 in
# 8 epochs, both measured) at about 3.5x the CPU throughput; pass --model resnet10t for a
# standard small ResNet
DEFAULT_MODEL = "test_resnet"
#: Per dataset: the training settings of the quickstart (data options pick the subset).
SETTINGS = {
    # 1,000 training images per class (10k), 100 validation per class, all 10k test images
    "fashion-mnist": {"epochs": 3, "lr": 0.05, "workers": 0,
                      "data_options": {"per_class": {"train": 1000, "val": 100}}},
    "synthetic": {"epochs": 8, "lr": 0.05, "workers": 1, "data_options": {}},
}
NO_REAL_DATA = ("Fashion-MNIST's files are not installed ({problem}), so this quickstart uses "
                "synthetic images. For real images: `{install}`, then run `hafcls quickstart` "
                "again (or pass --data-dir DIR holding the four IDX files).")
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


def install_command() -> str:
    """``apt-get install dataset-fashion-mnist``, with sudo when not root."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return ("" if root else "sudo ") + "apt-get install dataset-fashion-mnist"


def choose_data(data: str, data_dir: Path | None) -> tuple[str, str | None]:
    """``(dataset, note)``: fashion-mnist when its files are found (or asked for), else
    synthetic with a note saying how to get the real data."""
    from hafcls.data.fashion_mnist import locate_fashion_mnist
    from hafcls.errors import HafclsError

    if data == "synthetic":
        return "synthetic", None
    try:
        locate_fashion_mnist(data_dir)
    except HafclsError as err:
        if data == "fashion-mnist":
            raise
        return "synthetic", NO_REAL_DATA.format(problem=err.problem.rstrip("."),
                                                install=install_command())
    return "fashion-mnist", None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@click.command("quickstart")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              default=Path("runs/quickstart"), show_default=True,
              help="Folder for the runs (OUTPUT/<dataset>/<method>); an interrupted quickstart "
                   "continues where it stopped.")
@click.option("--data", "data", type=click.Choice(["auto", "fashion-mnist", "synthetic"]),
              default="auto", show_default=True,
              help="auto: Fashion-MNIST when its files are installed, else synthetic images.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              envvar="HAFCLS_FASHION_MNIST_DIR",
              help="Folder of Fashion-MNIST's IDX files (default: Debian's "
                   "/usr/share/datasets/fashion-mnist, then ~/.cache/hafcls); also "
                   "$HAFCLS_FASHION_MNIST_DIR.")
@click.option("--epochs", type=int, default=None,
              help="Default: 3 on Fashion-MNIST, 8 on synthetic data.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="timm backbone (test_resnet: a tiny ResNet, fast on a CPU).")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help="Comma-separated methods to compare.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--workers", type=int, default=None,
              help="DataLoader workers (default: 0 for Fashion-MNIST, whose batches come from "
                   "memory; 1 for synthetic data, generated while the model trains).")
@click.option("--threads", type=int, default=None,
              help="torch threads for the model (default: the CPU cores left over by the "
                   "workers, at least 1).")
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(output: Path, data: str, data_dir: Path | None, epochs: int | None, seed: int,
            model: str, methods: str, batch_size: int, lr: float, workers: int | None,
            threads: int | None, device: str, progress: bool) -> None:
    """Train cross-entropy and HAFrame on Fashion-MNIST (or synthetic data) and compare them.

    Fashion-MNIST (when installed): 1,000 training and 100 validation images per class, tested
    on all 10,000 test images, its shipped 4-level product tree. Synthetic (otherwise): 36
    classes in a 4 x 3 x 3 tree (32 px images, 200 train / 40 val / 40 test per class). Each
    method is trained from scratch, the best-validation epoch is tested, and the table shows
    top-1 accuracy, mistake severity and HierDist@1/5/20 (lower is better for the last four).
    """
    import torch

    from hafcls.engine.config import TrainConfig
    from hafcls.engine.train import train

    dataset, note = choose_data(data, data_dir)
    if note:
        click.echo(note, err=True)
    setting = SETTINGS[dataset]
    epochs = setting["epochs"] if epochs is None else epochs
    workers = setting["workers"] if workers is None else workers
    # one core per worker and the rest for the model: more threads than cores make every
    # small CPU op spin-wait (measured ~10x slower on a busy 2-core machine)
    torch.set_num_threads(threads or max(1, _cpu_count() - workers))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for name in names:
        cfg = TrainConfig.from_dict({
            "data": dataset, "data_options": setting["data_options"],
            "data_dir": None if dataset == "synthetic" or data_dir is None else str(data_dir),
            "method": name, "model": model, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "seed": seed, "workers": workers,
            "device": device, "progress": progress, "output": str(output / dataset / name),
            "resume": True,
        }, source="quickstart")
        click.echo(f"== {name} ==", err=True)
        result = train(cfg)
        results[name] = result["test"] or result["val"] or {}
    minutes = (time.perf_counter() - started) / 60
    what = {"synthetic": "Synthetic data",
            "fashion-mnist": "Fashion-MNIST (10k training images)"}[dataset]
    click.echo(f"{what}, {model}, {epochs} epochs, seed {seed}: test metrics of each "
               f"method's best-validation epoch ({minutes:.1f} min).")
    click.echo(comparison_table(results))
    if note:
        click.echo(note)
    click.echo(f"Runs in {output / dataset}/ (metrics.json, metrics.jsonl, checkpoints/best.pt); "
               f"try `hafcls evaluate {output / dataset / names[-1]} --crm`.")
