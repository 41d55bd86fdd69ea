"""``hafcls evaluate``: the full metric set of a trained model on a split, optionally with CRM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from hafcls.cli.choices import RegistryChoice
from hafcls.registry import DATASETS

DECODES = ("argmax", "crm", "node", "hfbeta")  # hafcls.engine.decoding.DECODES (torch-free here)


@click.command("evaluate")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--data", type=RegistryChoice(DATASETS),
              help="Dataset (default: the one the model was trained on).")
@click.option("--data-dir", help="Dataset folder (default: the training run's).")
@click.option("--hierarchy", help="Hierarchy to check against (must be the training one).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--crm", is_flag=True, help="Re-rank classes by conditional risk (same as "
              "--decode crm).")
@click.option("--decode", type=click.Choice(DECODES, case_sensitive=False),
              help="The decision to score: argmax (default), crm (min expected distance), "
                   "node (the min expected-cost node under the hedging cost, internal nodes "
                   "allowed) or hfbeta (the node set maximising the expected hF_beta).")
@click.option("--beta", type=float, default=1.0, show_default=True,
              help="beta of hF_beta for --decode hfbeta (< 1 favours precision, > 1 recall).")
@click.option("--save-scores", type=click.Path(path_type=Path),
              help="Also save the class probabilities and targets to this .npz file.")
@click.option("--batch-size", type=int, help="Evaluation batch size.")
@click.option("--workers", type=int, help="DataLoader workers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]),
              help="Mixed precision (default: the training run's).")
@click.option("--skip-corrupt/--strict-images", "skip_corrupt", default=None,
              help="Skip unreadable images and report how many (the training run's choice "
                   "by default, skipping unless it was strict), or stop at the first one.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the metrics as JSON to this file ('-' for stdout only).")
def command(run_or_checkpoint: Path, data, data_dir, hierarchy, split, crm, decode, beta,
            save_scores, batch_size, workers, device, amp, skip_corrupt, json_path) -> None:
    """Evaluate RUN_OR_CHECKPOINT (a run folder's best.pt, or a .pt file) on a split.

    Prints top-1/top-5 accuracy, mistake severity, HierDist@1/5/20, HOPS, accuracy per depth,
    full-path accuracy, ECE (overall and per depth), the risk-coverage area (aurc), and for the
    decision of --decode: hierarchical P/R/F, expected and realised cost, severity-ECE.
    """
    from hafcls.engine.decoding import check_decode
    from hafcls.engine.distributed import env_info
    from hafcls.engine.evaluate import evaluate_checkpoint, metrics_table
    from hafcls.engine.runs import json_safe
    from hafcls.io import atomic_write_text

    if crm and decode is None:
        decode = "crm"
    decode = check_decode(decode, beta)  # a bad --beta exits 2 before any work
    if json_path is not None and str(json_path) != "-":
        check_output_file(json_path)  # before the evaluation, which may take hours
    if save_scores is not None:
        check_output_file(save_scores, "--save-scores")
    metrics = evaluate_checkpoint(run_or_checkpoint, split=split, data=data, data_dir=data_dir,
                                  hierarchy=hierarchy, crm=crm, decode=decode, beta=beta,
                                  scores_path=save_scores, batch_size=batch_size,
                                  workers=workers, device=device, amp=amp,
                                  skip_corrupt=skip_corrupt)
    if not env_info().is_main:
        return
    text = json.dumps(json_safe(metrics), indent=2)
    if json_path is not None and str(json_path) == "-":
        click.echo(text)
        return
    label = {"argmax": "", "crm": " (CRM)", "node": " (decode: optimal node)",
             "hfbeta": f" (decode: hF_beta, beta={beta:g})"}[metrics.get("decode", "argmax")]
    click.echo(f"{metrics['checkpoint']} on {metrics['dataset']} {split}{label}:")
    click.echo(metrics_table(metrics))
    if json_path is not None:
        atomic_write_text(json_path, text + "\n")
        click.echo(f"Wrote {json_path}")


def check_output_file(path: Path, option: str = "--json") -> None:
    """Refuse an output path that cannot be written (a folder, a file in the way of its folder,
    a folder without write permission) before any work is done."""
    from hafcls.errors import HafclsError

    if path.is_dir():
        raise HafclsError(f"{path} is a folder.", f"give a file name for {option}.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HafclsError(f"Cannot create the folder {path.parent}: the file {parent} is in the "
                          "way.", f"choose another {option} path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HafclsError(f"No permission to write in {parent}.",
                          f"choose a {option} path in a folder you can write to.")
