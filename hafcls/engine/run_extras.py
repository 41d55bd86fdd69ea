"""What a run adds to the plain training loop when asked: mixup/CutMix batches, long-tailed
training metrics, TensorBoard curves and the collapse report.

Kept out of :mod:`hafcls.engine.train` so that the loop reads as the loop; each hook is a no-op
when its option is off.

- Mixup/CutMix (``--mixup``/``--cutmix``): timm's ``Mixup`` through
  :mod:`hafcls.losses.mixed_targets`. A method whose loss has no mixed-target form (ETF dot
  regression, HUG) is refused when the run is set up, before any step (exit code 2).
- ``--imbalance``: the training images per class, from which the evaluations report
  ``many_shot``/``medium_shot``/``few_shot`` and the collapse report ``minority_collapse``.
- ``--tensorboard DIR``: :mod:`hafcls.engine.tensorboard` (rank 0 only).
- The collapse report (:mod:`hafcls.engine.mixup_report`, rank 0), whose minority collapse is
  also copied into ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hafcls.engine.builders import train_class_counts
from hafcls.engine.config import TrainConfig


class RunExtras:
    """The optional parts of one run (see the module docstring)."""

    def __init__(self, config: TrainConfig, criterion, bundle, is_main: bool):
        from hafcls.methods.mixing import build_mixup, require_mixed_targets

        self.config = config
        self.bundle = bundle
        self.is_main = is_main
        self.num_classes = bundle.hierarchy.num_classes
        if config.mixup or config.cutmix:  # ETF / HUG refuse here, before any training step
            require_mixed_targets(criterion, config.method)
        self.mixup = build_mixup(self.num_classes, config.mixup, config.cutmix,
                                 config.mixup_prob, config.mixup_switch_prob, config.mixup_mode)
        self.train_counts = train_class_counts(bundle) if config.imbalance else None
        self.tensorboard = None

    # ------------------------------------------------------------------ training
    def mix(self, images: torch.Tensor, targets: torch.Tensor):
        """``(images, targets)`` of the step: mixed images and B x K mixed targets with mixup,
        else unchanged. Runs before autocast (timm mixes the float images in place)."""
        if self.mixup is None:
            return images, targets
        from hafcls.methods.mixing import mix_batch

        return mix_batch(self.mixup, images, targets, self.num_classes)

    # ------------------------------------------------------------------ TensorBoard
    def open_tensorboard(self, model, hierarchy, epochs_done: int) -> None:
        from hafcls.engine.tensorboard import open_tensorboard

        self.tensorboard = open_tensorboard(self.config, model, hierarchy, self.bundle.val,
                                            self.is_main, epochs_done)

    def end_epoch(self, record: dict, optimizer, model, device: torch.device) -> None:
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(record, optimizer)
            self.tensorboard.log_frame(model, int(record["epoch"]), device)

    # ------------------------------------------------------------------ the end
    def finish(self, result: dict, model, device: torch.device, folder: Path, log) -> None:
        """Collapse report (rank 0) and the final TensorBoard scalars; adds
        ``minority_collapse`` (and its source) to ``result`` for imbalanced runs."""
        from hafcls.engine.mixup_report import collapse_report, wants_report, write_report

        cfg = self.config
        if self.is_main and wants_report(cfg):
            report = collapse_report(
                model, self.bundle.train, _eval_split(self.bundle),
                self.train_counts, device, seed=cfg.seed, batch_size=cfg.eval_batch,
                imbalanced=self.train_counts is not None)
            write_report(report, folder, title=f"{cfg.method}, mixup {cfg.mixup}, "
                                               f"cutmix {cfg.cutmix}")
            for key in ("minority_collapse", "minority_collapse_source",
                        "minority_collapse_means", "minority_collapse_classifier"):
                if key in report:
                    result[key] = report[key]
            result["mixup_geometry"] = report["mixup_geometry"]
            log(f"collapse report: {folder / 'collapse.json'}")
        if self.train_counts is not None:
            result["imbalance"] = self.bundle.info.get("imbalance")
        if self.tensorboard is not None:
            self.tensorboard.log_metrics("test", result.get("test"), cfg.epochs)
            self.tensorboard.close()


def _eval_split(bundle):
    """The split whose transform is the evaluation one (test, else val)."""
    return bundle.test if bundle.test is not None else bundle.val
