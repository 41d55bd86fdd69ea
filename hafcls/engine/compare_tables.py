"""The comparison's tables: one CSV row per run, mean ± 95% t-interval per method (Markdown)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from hafcls.engine.config import TrainConfig
from hafcls.errors import HafclsError
from hafcls.io import atomic_write_text

#: Metrics of the comparison table, in column order.
COMPARED_METRICS = ("top1", "mistake_severity", "hierdist@1", "hierdist@5", "hierdist@20",
                    "hops@20", "hops", "hf1", "ece")
METRIC_TITLES = {"top1": "top-1 (%) ↑", "mistake_severity": "mistake severity ↓",
                 "hierdist@1": "HierDist@1 ↓", "hierdist@5": "HierDist@5 ↓",
                 "hierdist@20": "HierDist@20 ↓", "hops@20": "HOPS@20 ↑", "hops": "HOPS ↑",
                 "hf1": "hF1 (hedged, %) ↑", "ece": "ECE (%) ↓"}
#: Metrics shown in percent (the others as they are).
PERCENT_METRICS = frozenset({"top1", "hf1", "ece"})
#: Metrics of the probabilities' own decision, which CRM does not change (one table only).
PLAIN_ONLY_METRICS = frozenset({"hf1"})
CRM_PREFIX = "crm_"


def table_metrics(variant: str) -> tuple[str, ...]:
    """The columns of the ``"plain"`` or ``"crm"`` table."""
    if variant == "plain":
        return COMPARED_METRICS
    return tuple(k for k in COMPARED_METRICS if k not in PLAIN_ONLY_METRICS)


def result_row(analysis: Mapping, run_dir: str | Path | None = None) -> dict:
    """One CSV row: identity of the run and every compared metric without and with CRM."""
    row = {"method": analysis["method"], "seed": analysis["seed"],
           "run": str(run_dir) if run_dir is not None else "",
           "split": analysis.get("split"), "n": analysis.get("n"),
           "best_epoch": analysis.get("best_epoch"),
           "train_time_s": analysis.get("train_time_s")}
    for prefix in ("", CRM_PREFIX):
        metrics = analysis[f"{prefix}metrics"]
        keys = table_metrics("plain" if not prefix else "crm")
        for key in (*keys, "top5"):
            row[f"{prefix}{key}"] = metrics.get(key)
    return row


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """``rows`` as CSV (header from the first row's keys; rates are fractions, not %)."""
    if not rows:
        raise HafclsError("There are no runs to write.", "train at least one run first.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                         for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def summarize_rows(rows: Sequence[Mapping], methods: Sequence[str]) -> dict:
    """``{method: {"plain": summary, "crm": summary}}`` with :func:`hafcls.metrics.summarize`."""
    from hafcls.metrics import summarize

    out = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        out[method] = {
            "plain": summarize([{k: _num(r.get(k)) for k in table_metrics("plain")}
                                for r in mine]),
            "crm": summarize([{k: _num(r.get(CRM_PREFIX + k)) for k in table_metrics("crm")}
                              for r in mine]),
        }
    return out


def _num(value) -> float:
    """A metric value, NaN when an older analysis lacks it (shown as n/a)."""
    return float("nan") if value is None else value


def _cell(entry: Mapping | None, key: str) -> str:
    if entry is None:
        return "—"
    scale, digits = (100.0, 2) if key in PERCENT_METRICS else (1.0, 3)
    mean = entry["mean"] * scale
    if math.isnan(mean):
        return "n/a"
    ci = entry["ci95"] * scale
    return f"{mean:.{digits}f}" if math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def markdown_table(summaries: Mapping[str, Mapping], variant: str = "plain") -> str:
    """A Markdown table: one row per method, ``mean ± ci95`` per compared metric."""
    keys = table_metrics(variant)
    head = ["method", "runs"] + [METRIC_TITLES[k] for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, both in summaries.items():
        summary = both[variant]
        n = summary[keys[0]]["n"]
        cells = [method, str(n)] + [_cell(summary.get(k), k) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(summaries: Mapping[str, Mapping], setting: str) -> str:
    """The whole ``results.md``: setting, the tables without and with CRM, and how to read them."""
    return "\n".join([
        "# Method comparison", "", setting, "",
        "## Without CRM (the methods' own ranking)", "", markdown_table(summaries, "plain"), "",
        "## With CRM (test-time conditional risk minimisation on the same models)", "",
        markdown_table(summaries, "crm"), "",
        "Each cell is the mean over runs (seeds) ± the half-width of the 95% Student-t "
        "confidence interval, t(0.975, n−1)·s/√n with s the sample standard deviation; with "
        "a single run only the mean is shown. Top-1 is in percent. Mistake severity is the mean "
        "distance of the top-1 mistakes only (n/a when a run made none); HierDist@k is the mean "
        "distance of the k highest-ranked classes over all test samples (a correct class counts "
        "0), so HierDist@1 = (1 − top-1) × mistake severity. Distances are the published "
        "d(a, b) = H − depth(LCA(a, b)). HOPS@20 and HOPS (Hier-COS) score the order of the "
        "top 20 and of the whole ranking against the ideal order by distance (1 = ideal). hF1 is "
        "the micro hierarchical F1 (root excluded) of the node set maximising the expected hF1 "
        "under the method's probabilities (a decision that may back off to a coarser node; CRM "
        "does not change the probabilities, so it has no CRM column). ECE is the 15-bin "
        "expected calibration error of the top-1 decision, with the model's probability of the "
        "chosen class as confidence. Overlapping intervals mean the difference is not "
        "resolved by these seeds.", ""])


def describe_setting(analyses: Sequence[Mapping], seeds: Sequence[int],
                     config: TrainConfig | None = None) -> str:
    """One paragraph naming the dataset, model, training options, seeds and evaluation split."""
    first = analyses[0]
    epochs = first.get("epochs")
    text = (f"Dataset `{first.get('data')}` ({first.get('num_classes')} classes, hierarchy "
            f"height {first.get('height')}), backbone `{first.get('model')}`, {epochs} "
            f"epoch{'s' if epochs != 1 else ''}")
    if config is not None:
        text += (f", {config.optimizer.upper()} batch {config.batch_size}, peak LR {config.lr:g}"
                 f" (backbone {config.backbone_lr:g}), {config.schedule} schedule")
        if config.image_size:
            text += f", {config.image_size} px"
        if config.data_options:
            text += f", data options `{json.dumps(config.data_options, sort_keys=True)}`"
    return (text + f"; seeds {', '.join(map(str, seeds))}. Metrics on the {first.get('split')} "
            f"split ({first.get('n')} images) with the best-validation checkpoint of each run.")


