"""Mean ± 95% t-interval over seeds, against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.metrics import format_mean_ci, format_summary, summarize

# Student t quantile 0.975 with 2 degrees of freedom, in closed form: the CDF is
# 1/2 + t / (2 sqrt(2 + t²)), so t / sqrt(2 + t²) = 0.95 and t² = 2 * 0.9025 / (1 - 0.9025)
T_975_DF2 = math.sqrt(2 * 0.9025 / (1 - 0.9025))  # 4.30265..., tables: 4.303
T_975_DF4 = 2.776445105  # with 4 degrees of freedom (tables: 2.776)


def test_three_runs_hand_computed():
    out = summarize([{"top1": 1.0}, {"top1": 2.0}, {"top1": 3.0}])
    entry = out["top1"]
    assert entry["mean"] == 2.0
    assert entry["std"] == 1.0  # sample std (ddof = 1)
    assert entry["n"] == 3
    assert entry["ci95"] == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-12)
    assert entry["ci95"] == pytest.approx(2.484138, abs=1e-6)


def test_five_seeds_like_the_paper():
    top1 = [0.7771, 0.7760, 0.7785, 0.7790, 0.7749]
    out = summarize([{"top1": v, "n": 10000} for v in top1])
    std = float(np.std(top1, ddof=1))
    assert out["top1"]["mean"] == pytest.approx(sum(top1) / 5, rel=1e-15)
    assert out["top1"]["ci95"] == pytest.approx(T_975_DF4 * std / math.sqrt(5), rel=1e-9)
    assert out["n"]["ci95"] == 0.0
    assert format_summary(out)["top1"] == "77.71 ± 0.21"
    assert "n" not in format_summary(out)


def test_mixed_inputs_and_missing_keys():
    runs = [
        {"top1": np.float32(0.5), "hierdist@1": torch.tensor(2.0), "name": "ce", "crm": True},
        {"top1": 0.7},
    ]
    out = summarize(runs)
    assert set(out) == {"top1", "hierdist@1"}  # strings and booleans are not metrics
    assert out["top1"]["n"] == 2 and out["hierdist@1"]["n"] == 1
    assert math.isnan(out["hierdist@1"]["ci95"]) and math.isnan(out["hierdist@1"]["std"])
    assert format_mean_ci(out["hierdist@1"]) == "2.00"


def test_nan_values_propagate():
    out = summarize([{"mistake_severity": float("nan")}, {"mistake_severity": 2.0}])
    assert math.isnan(out["mistake_severity"]["mean"])


def test_formatting():
    entry = {"mean": 0.7771, "ci95": 0.0012, "std": 0.001, "n": 5}
    assert format_mean_ci(entry) == "0.78 ± 0.00"
    assert format_mean_ci(entry, digits=3, scale=100) == "77.710 ± 0.120"
    summary = {"top1": entry, "hierdist@5": {"mean": 1.114, "ci95": 0.02, "std": 0.0, "n": 5}}
    assert format_summary(summary) == {"top1": "77.71 ± 0.12", "hierdist@5": "1.11 ± 0.02"}
    assert format_summary(summary, percent=()) == {"top1": "0.78 ± 0.00",
                                                   "hierdist@5": "1.11 ± 0.02"}


def test_validation():
    with pytest.raises(HafclsError, match="at least one run"):
        summarize([])
    with pytest.raises(HafclsError, match="list of per-run"):
        summarize({"top1": 0.5})
    with pytest.raises(HafclsError, match="confidence"):
        summarize([{"top1": 0.5}], confidence=1.5)
