"""Runtime options that change how a run executes, not what it trains.

--compile: the engine compiles its training step (model + loss) and nothing else; weights,
checkpoints and metrics are those of the eager run. --threads: the model's torch threads.

The test traces with dynamo's "eager" backend (real graph capture, no C++ code generation), so it
runs in seconds and the numbers must match the eager run exactly; inductor itself is timed by
scripts/bench_train_loop.py --compile.
"""

import functools
import importlib

import pytest
import torch

from hafcls.engine.checkpoint import load_checkpoint
from hafcls.engine.config import TrainConfig
from hafcls.engine.train import train
from hafcls.errors import HafclsError

train_module = importlib.import_module("hafcls.engine.train")

TINY = dict(data="synthetic", image_size=16,
            data_options={"branching": [2, 2], "per_class": {"train": 10, "val": 3, "test": 3}},
            method="haframe", model="test_resnet", epochs=1, batch_size=8, workers=0,
            progress=False, lr=0.05, seed=3)


def test_compiled_step_trains_the_same_weights(tmp_path, monkeypatch):
    compiled = []
    real = torch.compile

    def record(module, **kwargs):
        compiled.append(type(module).__name__)
        return real(module, backend="eager", **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dict(TINY, output=str(tmp_path / "eager")))
        monkeypatch.setattr(train_module.torch, "compile", functools.partial(record))
        result = train(dict(TINY, output=str(tmp_path / "compiled"), compile=True))
    finally:
        torch.set_num_threads(before)
        torch._dynamo.reset()
    assert compiled == ["TrainStep"]  # the model + loss step, once per run
    eager = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["model"]
    comp = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")["model"]
    assert eager.keys() == comp.keys()  # plain names: no "_orig_mod." from the wrapper
    for key in eager:
        if torch.is_tensor(eager[key]):
            torch.testing.assert_close(comp[key], eager[key], rtol=1e-6, atol=1e-7, msg=key)
    assert 0.0 <= result["test"]["top1"] <= 1.0


def test_threads_option_sets_torch_threads_and_is_checked(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train(dict(TINY, output=str(tmp_path / "run"), threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(HafclsError, match="threads"):
        TrainConfig().update({"threads": 0})


def test_analysis_under_bf16_ranks_the_float32_head_like_the_engine(tmp_path, monkeypatch):
    # under AMP evaluation scores float32 head logits; the comparison's analysis must score the
    # same logits (bf16 logits tie and reorder the ranking). The run trains in float32 (bf16
    # backward on this CPU gives sporadic NaN gradients, which the engine refuses) and its best
    # checkpoint is then marked as a bf16 run, as if it had trained under AMP.
    from hafcls.engine import analysis, builders
    from hafcls.engine.checkpoint import save_checkpoint
    from hafcls.engine.evaluate import evaluate_checkpoint

    run = tmp_path / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dict(TINY, output=str(run)))
        best = run / "checkpoints" / "best.pt"
        state = load_checkpoint(best)
        meta = state.pop("meta")
        meta["config"]["amp"] = "bf16"
        save_checkpoint(best, state, meta)
        calls = []
        real = builders.forward_float32_head

        def counted(model, images):
            calls.append(torch.is_autocast_enabled("cpu"))
            return real(model, images)

        monkeypatch.setattr(builders, "forward_float32_head", counted)
        result = analysis.analyse_run(run, device="cpu", workers=0)
        engine = evaluate_checkpoint(run, device="cpu", workers=0)
    finally:
        torch.set_num_threads(before)
    assert calls and all(calls)  # every batch of both, inside the bf16 autocast region
    for key in ("top1", "hierdist@1", "hierdist@5", "hops"):
        assert result["metrics"][key] == pytest.approx(engine[key]), key
