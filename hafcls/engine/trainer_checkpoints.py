"""Checkpoint side of :class:`hafcls.engine.train.Trainer`: what ``last.pt`` and ``best.pt``
hold, and how a resume restores it (model, loss, optimizer, AMP scaler, best-so-far, progress
and every rank's random streams, so a resumed run continues bit for bit)."""

from __future__ import annotations

from pathlib import Path

import torch

from hafcls.engine import distributed as D
from hafcls.engine.checkpoint import (
    check_hierarchy,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hafcls.engine.train_step import EpochTotals, check_weights_finite, seed_everything


class CheckpointMixin:
    """Saving and restoring a :class:`~hafcls.engine.train.Trainer`'s state (needs its
    ``model``, ``criterion``, ``optimizer``, ``scaler``, ``folder``, ``meta``, ``info``,
    ``device``, ``hierarchy``, ``config`` and ``best_*`` attributes)."""

    def _state(self, epochs_done: int, step_in_epoch: int, totals: EpochTotals) -> dict:
        return {
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "progress": {"epochs_done": epochs_done, "step_in_epoch": step_in_epoch,
                         "best_value": self.best_value, "best_epoch": self.best_epoch,
                         "totals": totals.state()},
            "best_val": self.best_val,
            "rng": rng_state(),
        }

    def _check_weights_finite(self) -> None:
        check_weights_finite(self.model, self.folder.last, self.config.amp)

    def _save_last(self, epochs_done: int, step_in_epoch: int, totals: EpochTotals) -> None:
        self._check_weights_finite()
        rng_ranks = D.gather_to_main(rng_state())  # every rank's streams, for an exact resume
        if self.info.is_main:
            meta = dict(self.meta, epochs_done=epochs_done, step_in_epoch=step_in_epoch)
            state = self._state(epochs_done, step_in_epoch, totals)
            state["rng_ranks"] = rng_ranks
            save_checkpoint(self.folder.last, state, meta)
        D.barrier()

    def _save_best(self, epochs_done: int, val: dict) -> None:
        self._check_weights_finite()
        if self.info.is_main:
            meta = dict(self.meta, epochs_done=epochs_done, val=val)
            state = {"model": self.model.state_dict(), "criterion": self.criterion.state_dict()}
            save_checkpoint(self.folder.best, state, meta)

    def _restore(self, path: Path) -> tuple[int, int, EpochTotals]:
        ckpt = load_checkpoint(path, map_location=self.device)
        check_hierarchy(ckpt["meta"], self.hierarchy, what=f"The checkpoint {path}")
        load_weights(self.model, ckpt["model"], path, "model")
        load_weights(self.criterion, ckpt["criterion"], path, "loss")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        prog = ckpt["progress"]
        self.best_value = prog["best_value"]
        self.best_epoch = prog["best_epoch"]
        self.best_val = ckpt.get("best_val")
        totals = EpochTotals(**prog["totals"])
        ranks = ckpt.get("rng_ranks") or []
        if len(ranks) == self.info.world_size:
            set_rng_state(ranks[self.info.rank])
        else:  # another world size: rank 0's streams, offset per rank as a fresh run does
            set_rng_state(ckpt["rng"])
            if self.info.rank:
                seed_everything(int(torch.randint(0, 2**31, (1,)).item())
                                + 7919 * self.info.rank)
        return prog["epochs_done"], prog["step_in_epoch"], totals
