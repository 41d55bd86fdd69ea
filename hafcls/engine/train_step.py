"""The pieces of one training step: seeding, the model+loss module, running epoch totals, and the
helpers that judge and report an epoch."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hafcls.engine import distributed as D
from hafcls.engine.builders import forward_float32_head
from hafcls.engine.config import TrainConfig
from hafcls.engine.evaluate import format_metrics
from hafcls.errors import HafclsError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainStep(nn.Module):
    """Model and loss in one module, so that DDP also synchronises parameters the loss owns
    (e.g. learnable proxies) and one forward returns the loss and the logits."""

    def __init__(self, model: nn.Module, criterion: nn.Module, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor, targets: torch.Tensor):
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # under AMP: backbone in bf16/fp16, head and loss in float32 (exact logits, no ties)
        logits, features = forward_float32_head(self.model, images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            if targets.ndim == 2:  # B x K mixed targets of mixup/CutMix
                from hafcls.methods.mixing import mixed_loss

                loss = mixed_loss(self.criterion, logits, features, targets)
            else:
                loss = self.criterion(logits, features, targets)
        return loss, logits


@dataclass
class EpochTotals:
    """Running sums of one training epoch (saved in mid-epoch checkpoints)."""

    loss: float = 0.0
    correct: int = 0
    count: int = 0
    steps: int = 0
    seconds: float = 0.0
    skipped: int = 0          # unreadable images left out of this epoch's batches
    extra: dict = field(default_factory=dict)

    def state(self) -> dict:
        return {"loss": self.loss, "correct": self.correct, "count": self.count,
                "steps": self.steps, "seconds": self.seconds, "skipped": self.skipped}

    def reduced(self, device: torch.device) -> dict:
        t = torch.tensor([self.loss, self.correct, self.count, self.skipped],
                         dtype=torch.float64, device=device)
        D.all_reduce_sum(t)
        loss, correct, count, skipped = t.tolist()
        seconds = max(self.seconds, 1e-9)
        # images of every rank over this rank's time: the job's throughput
        return {"loss": loss / max(count, 1), "top1": correct / max(count, 1),
                "images": int(count), "skipped": int(skipped), "img_per_s": count / seconds}


def better(value: float, best: float | None, higher: bool) -> bool:
    """Whether ``value`` improves on ``best``; NaN (e.g. severity without mistakes) never wins
    over a number, a number always wins over NaN."""
    if best is None or (math.isnan(best) and not math.isnan(value)):
        return True
    if math.isnan(value):
        return False
    return value > best if higher else value < best


def nonfinite(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return "non-finite on another process"


def epoch_line(record: dict, cfg: TrainConfig) -> str:
    tr = record["train"]
    line = (f"epoch {record['epoch']}/{cfg.epochs}  lr {record['lr']:.4g}  train loss "
            f"{tr['loss']:.4f} acc {100 * tr['top1']:.2f}%  {tr['img_per_s']:.0f} img/s")
    if tr.get("skipped"):
        line += f"  (skipped {tr['skipped']} unreadable images)"
    if "val" in record:
        line += f"  | val {format_metrics(record['val'])}"
    return line


def check_weights_finite(model: nn.Module, last: Path, amp: str = "none") -> None:
    """Never write non-finite weights into a checkpoint (they could not be resumed)."""
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return
    finite = torch.stack([torch.isfinite(p).all() for _, p in named]).cpu()  # one sync
    bad = [n for (n, _), ok in zip(named, finite.tolist()) if not ok]
    if bad:
        from hafcls.engine.runs import RunFolder, stop_message

        kept, fix = stop_message(RunFolder(Path(last).parent.parent), amp)
        raise HafclsError(
            f"The model weights became non-finite (e.g. {bad[0]!r}); training stopped and "
            f"{kept}.", fix)
