"""``hafcls evaluate``: the full metric set of a trained model on a split, optionally with CRM."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hafcls.engine.config import DATASETS


@click.command("evaluate")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=click.Choice(DATASETS),
              help="Dataset (default: the one the model was trained on).")
@click.option("--data-dir", help="Dataset folder (default: the training run's).")
@click.option("--hierarchy", help="Hierarchy to check against (must be the training one).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--crm", is_flag=True, help="Re-rank classes by conditional risk (CRM).")
@click.option("--batch-size", type=int, help="Evaluation batch size.")
@click.option("--workers", type=int, help="DataLoader workers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]),
              help="Mixed precision (default: the training run's).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the metrics as JSON to this file ('-' for stdout only).")
def command(run_or_checkpoint: Path, data, data_dir, hierarchy, split, crm, batch_size, workers,
            device, amp, json_path) -> None:
    """Evaluate RUN_OR_CHECKPOINT (a run folder's best.pt, or a .pt file) on a split.

    Prints top-1/top-5 accuracy, mistake severity, HierDist@1/5/20 and accuracy per depth.
    """
    from hafcls.engine.distributed import env_info
    from hafcls.engine.evaluate import evaluate_checkpoint, metrics_table
    from hafcls.engine.runs import json_safe
    from hafcls.io import atomic_write_text

    metrics = evaluate_checkpoint(run_or_checkpoint, split=split, data=data, data_dir=data_dir,
                                  hierarchy=hierarchy, crm=crm, batch_size=batch_size,
                                  workers=workers, device=device, amp=amp)
    if not env_info().is_main:
        return
    text = json.dumps(json_safe(metrics), indent=2)
    if json_path is not None and str(json_path) == "-":
        click.echo(text)
        return
    click.echo(f"{metrics['checkpoint']} on {metrics['dataset']} {split}"
               + (" (CRM)" if crm else "") + ":")
    click.echo(metrics_table(metrics))
    if json_path is not None:
        atomic_write_text(json_path, text + "\n")
        click.echo(f"Wrote {json_path}")
