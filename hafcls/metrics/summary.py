"""Results over several seeds: mean ± half-width of the 95% Student-t confidence interval."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from hafcls.errors import HafclsError

# keys reported as percentages by default (the paper's tables); values stay fractions
PERCENT_PREFIXES = ("top1", "top5", "acc@", "accuracy")


def _number(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "ndim") and getattr(value, "ndim", 1) == 0 and hasattr(value, "item"):
        item = value.item()
        return float(item) if isinstance(item, numbers.Real) and not isinstance(item, bool) \
            else None
    return None


def summarize(runs: Sequence[Mapping], confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Mean, 95% t-interval half-width, std and count of every numeric metric over runs.

    Parameters
    ----------
    runs:
        One dict of metrics per seed (e.g. :func:`hafcls.metrics.evaluate` outputs). Non-numeric
        entries are skipped; a metric missing from some runs is summarised over the runs that
        have it (``n`` says how many).
    confidence:
        Confidence level of the interval (0.95 by default).

    Returns
    -------
    ``{metric: {"mean", "ci95", "std", "n"}}`` where ``std`` is the sample std (ddof = 1) and
    ``ci95 = t_{(1+confidence)/2, n-1} * std / sqrt(n)`` (scipy.stats.t). With one run, std and
    ci95 are NaN (no spread can be estimated). NaN values are not dropped: they make the
    metric's mean NaN, so that an undefined value is never hidden.
    """
    if isinstance(runs, Mapping) or not isinstance(runs, Iterable):
        raise HafclsError("summarize expects a list of per-run metric dicts.",
                          "pass e.g. [evaluate(...) for each seed].")
    runs = list(runs)
    if not runs or not all(isinstance(r, Mapping) for r in runs):
        raise HafclsError("summarize needs at least one run, each a dict of metrics.",
                          "pass e.g. [evaluate(...) for each seed].")
    if not 0 < confidence < 1:
        raise HafclsError(f"confidence must be in (0, 1), got {confidence}.",
                          "use e.g. 0.95.")
    values: dict[str, list[float]] = {}
    for run in runs:
        for key, value in run.items():
            number = _number(value)
            if number is not None:
                values.setdefault(str(key), []).append(number)
    out = {}
    for key, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        n = arr.size
        mean = float(arr.mean())
        if n > 1:
            std = float(arr.std(ddof=1))
            ci = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
        else:
            std = ci = float("nan")
        out[key] = {"mean": mean, "ci95": ci, "std": std, "n": n}
    return out


def format_mean_ci(entry: Mapping, digits: int = 2, scale: float = 1.0) -> str:
    """``"mean ± ci95"`` of one :func:`summarize` entry, values multiplied by ``scale``.

    A NaN interval (single run) prints the mean alone.
    """
    mean = entry["mean"] * scale
    ci = entry["ci95"] * scale
    if math.isnan(ci):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def format_summary(summary: Mapping[str, Mapping], digits: int = 2,
                   percent: Iterable[str] | None = None) -> dict[str, str]:
    """Every metric of a :func:`summarize` result as a ``"mean ± ci"`` string.

    Metrics named in ``percent`` (default: names starting with ``top1``, ``top5``, ``acc@`` or
    ``accuracy``) are shown in percent; the others as they are. ``n`` entries are left out.
    """
    chosen = None if percent is None else set(percent)
    out = {}
    for key, entry in summary.items():
        if key == "n":
            continue
        pct = key in chosen if chosen is not None else key.startswith(PERCENT_PREFIXES)
        out[key] = format_mean_ci(entry, digits, 100.0 if pct else 1.0)
    return out
