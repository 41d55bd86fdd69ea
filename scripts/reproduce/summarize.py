"""Mean and 95% Student-t interval over seeds of each recipe's test metrics.

    python3 scripts/reproduce/summarize.py runs/reproduce/cifar100

Reads ``<folder>/<recipe>/seed<k>/metrics.json`` (written by ``hafcls train``), prints a Markdown
table and writes it to ``<folder>/results.md``. Metrics are the test metrics of each run's
best-validation checkpoint; ``n`` is the number of test images scored (every one of them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

COLUMNS = ("top1", "mistake_severity", "hierdist@1", "hierdist@5", "hierdist@20")


def interval(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():.3f} ± {half:.3f}"


def main(folder: str) -> str:
    root = Path(folder)
    lines = ["| recipe | seeds | test n | " + " | ".join(COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for recipe in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = [json.loads(f.read_text()) for f in sorted(recipe.glob("seed*/metrics.json"))]
        tests = [r["test"] for r in runs if r.get("test")]
        if not tests:
            continue
        cells = [interval([t[c] for t in tests]) if c in tests[0] else "-" for c in COLUMNS]
        lines.append(f"| {recipe.name} | {len(tests)} | {tests[0].get('n', '-')} | "
                     + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (root / "results.md").write_text(table + "\n")
    return table


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "."))
