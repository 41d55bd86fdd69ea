"""The run folder: everything a training run leaves behind, in one place.

```
OUTPUT/
  config.json          the resolved TrainConfig (every option, defaults included)
  hierarchy.json       the label tree, so evaluate/predict work without the original files
  metrics.jsonl        one JSON line per finished epoch (train loss/accuracy, validation metrics)
  metrics.json         written at the end: best epoch, its validation metrics, test metrics
  checkpoints/last.pt  the latest state (model, optimizer, schedule, scaler, RNG), for --resume
  checkpoints/best.pt  the model at the best validation epoch (by --select-metric)
  .lock                held (fcntl.flock) by the one process writing the folder
```

Every file is written atomically (temp file, then rename); only rank 0 writes, and only while it
holds the folder's lock: a second ``hafcls train`` into the same folder is refused, naming the
process that writes it. The kernel releases a flock when its process dies (even by SIGKILL), so
a lock file left by a crashed run is stale and simply taken over.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from hafcls.engine.config import TrainConfig
from hafcls.errors import HafclsError
from hafcls.io import atomic_write_text

# options that may change when a run is resumed: they do not change what is being trained
RESUMABLE_CHANGES = frozenset({
    "epochs", "workers", "progress", "device", "checkpoint_every", "eval_batch_size", "resume",
    "output", "data_dir", "download", "deterministic", "compile", "threads",
})
# data_options that may change on resume (how unreadable images are handled)
RESUMABLE_DATA_OPTIONS = frozenset({"skip_corrupt"})


# the files a run writes, at the top of its folder and in checkpoints/
RUN_FILES = ("config.json", "hierarchy.json", "metrics.jsonl", "metrics.json")
CHECKPOINT_FILES = ("last.pt", "best.pt")
LOCK_NAME = ".lock"


def _is_own_temp(name: str, own: tuple[str, ...]) -> bool:
    """Whether ``name`` is a temporary file of :func:`hafcls.io.atomic_write` for one of
    ``own`` (``.NAME.XXXXXXXX.tmp``)."""
    return name.endswith(".tmp") and any(name.startswith(f".{o}.") for o in own)


def json_safe(obj):
    """NaN/inf become None so that files are strict JSON (e.g. severity without mistakes)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class RunFolder:
    """Paths and atomic writers of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __del__(self):
        try:
            self.unlock()
        except Exception:  # noqa: BLE001 -- interpreter shutdown: the kernel releases it anyway
            pass

    config_file = property(lambda self: self.path / "config.json")
    hierarchy_file = property(lambda self: self.path / "hierarchy.json")
    log_file = property(lambda self: self.path / "metrics.jsonl")
    metrics_file = property(lambda self: self.path / "metrics.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.pt")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")

    lock_file = property(lambda self: self.path / LOCK_NAME)

    # ------------------------------------------------------------------ the writer's lock
    def lock(self) -> None:
        """Take the folder's writer lock (creating the folder), or raise naming its holder.

        ``fcntl.flock`` on ``.lock``: the kernel drops it when the holder exits or is killed,
        so a leftover file whose lock is not held is stale and taken over here."""
        import fcntl

        if getattr(self, "_lock_fd", None) is not None:
            return
        if self.path.exists() and not self.path.is_dir():
            raise HafclsError(f"--output {self.path} is a file.", "give a folder path.")
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise HafclsError(f"No permission to write in {self.path}.",
                              "choose an --output folder you can write to.") from None
        except OSError as err:  # read-only file system, a file in the way, ...
            raise HafclsError(f"Cannot write in {self.path} ({err.strerror}).",
                              "choose an --output folder on a writable disk.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._lock_holder(fd)
            os.close(fd)
            raise HafclsError(
                f"{self.path} is being written by another hafcls process ({holder}).",
                "wait for it to finish or stop it, or choose another --output folder; two "
                "runs writing one folder would mix their metrics and checkpoints.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._lock_fd = fd

    @staticmethod
    def _lock_holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            info = {}
        if not info:
            return "its details are not written yet"
        return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                f"{info.get('command')}")

    def unlock(self) -> None:
        """Release the writer lock. The file stays (removing it could let two processes lock
        two different files of the same name), unless it is all the folder holds: a run that
        failed its checks before writing anything leaves no folder behind."""
        import fcntl

        fd = getattr(self, "_lock_fd", None)
        if fd is None:
            return
        self._lock_fd = None
        try:
            os.ftruncate(fd, 0)
            if [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
                self.lock_file.unlink()
                if getattr(self, "_created", False):
                    self.path.rmdir()
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holds_run(self) -> bool:
        """Whether a run already wrote here (a config or a checkpoint)."""
        return self.config_file.exists() or self.last.exists() or self.best.exists()

    def holds_checkpoint(self) -> bool:
        return self.last.exists() or self.best.exists()

    def check_fresh(self) -> None:
        """Refuse to overwrite an existing run unless resuming, and refuse a folder holding
        other files (the user's own would be mixed with, or replaced by, the run's)."""
        if self.path.exists() and not self.path.is_dir():
            raise HafclsError(f"--output {self.path} is a file.", "give a folder path.")
        if self.holds_checkpoint():
            raise HafclsError(
                f"{self.path} already holds a training run.",
                "pass --resume to continue it, or choose another --output folder.",
            )
        if self.holds_run():
            # a run that stopped before its first checkpoint: nothing to lose, but say so
            raise HafclsError(
                f"{self.path} holds a training run that stopped before its first checkpoint.",
                "pass --resume to start it again (options may change, nothing was trained "
                "yet), or choose another --output folder.",
            )
        if self.path.is_dir():
            # a killed first write leaves only our own temp file: that is not the user's
            names = sorted(p.name for p in self.path.iterdir()
                           if not _is_own_temp(p.name, RUN_FILES) and p.name != LOCK_NAME)
            if names:
                more = f", ... ({len(names)} in all)" if len(names) > 3 else ""
                raise HafclsError(
                    f"{self.path} exists and holds other files ({', '.join(names[:3])}{more}).",
                    "choose a new or empty --output folder.",
                )

    def remove_stale_temp_files(self) -> int:
        """Delete temporary files of writes that a killed process left half-done; return the
        bytes freed. Only one process writes a run folder, so any such file found at start-up
        belongs to a dead one."""
        freed = 0
        for folder, names in ((self.path, RUN_FILES), (self.checkpoint_dir, CHECKPOINT_FILES)):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_file() and _is_own_temp(entry.name, names):
                    try:
                        size = entry.stat().st_size
                        entry.unlink()
                    except FileNotFoundError:
                        continue
                    freed += size
        return freed

    def stored_config(self) -> dict | None:
        """The config a previous run saved here, or None. When ``config.json`` is lost but
        ``last.pt`` exists, the config stored in the checkpoint (what was trained) is used."""
        if not self.config_file.is_file():
            if self.last.is_file():
                from hafcls.engine.checkpoint import load_checkpoint

                config = load_checkpoint(self.last)["meta"].get("config")
                return dict(config) if isinstance(config, dict) else None
            return None
        try:
            data = json.loads(self.config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise HafclsError(f"{self.config_file} is not valid JSON.",
                              "restore it, or start a new run in another folder.") from None
        if not isinstance(data, dict):
            raise HafclsError(f"{self.config_file} does not hold a mapping.",
                              "restore it, or start a new run in another folder.")
        return data

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_text(self.config_file, json.dumps(config.to_dict(), indent=2) + "\n")

    def write_hierarchy(self, hierarchy) -> None:
        hierarchy.to_json(self.hierarchy_file)

    # ------------------------------------------------------------------ metrics
    def read_log(self) -> list[dict]:
        if not self.log_file.is_file():
            return []
        lines = self.log_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def append_log(self, record: dict) -> None:
        """Add one epoch's line; the file is rewritten atomically (it is small)."""
        records = [r for r in self.read_log() if r.get("epoch") != record.get("epoch")]
        records.append(record)
        self._write_log(records)

    def truncate_log(self, epochs_done: int) -> None:
        """Drop lines of epochs after ``epochs_done`` (written before a kill, now redone)."""
        records = self.read_log()
        kept = [r for r in records if r.get("epoch", 0) <= epochs_done]
        if len(kept) != len(records):
            self._write_log(kept)

    def _write_log(self, records: list[dict]) -> None:
        text = "".join(json.dumps(json_safe(r)) + "\n" for r in records)
        atomic_write_text(self.log_file, text)

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.metrics_file, json.dumps(json_safe(metrics), indent=2) + "\n")


def stop_message(folder: RunFolder, amp: str) -> tuple[str, str]:
    """What a run stopped for divergence kept, and the fix (no bf16 advice to a bf16 run, no
    checkpoint named that does not exist)."""
    if folder.last.is_file():
        kept = f"the last good checkpoint ({folder.last}) was kept"
        again = "resume with --resume after fixing"
    else:
        kept = "no checkpoint had been written yet"
        again = "start the run again after fixing (pass --resume to reuse the folder)"
    precision = {"fp16": ", or use --amp bf16 or --amp none", "bf16": ", or use --amp none"}
    fix = (f"lower --lr, add gradient clipping (--grad-clip 1.0){precision.get(amp, '')}; "
           f"{again}.")
    return kept, fix


def check_resume_config(stored: dict, config: TrainConfig) -> None:
    """Refuse to resume with options that change what is trained (method, LR, data, ...)."""
    current = config.to_dict()
    for key, old in stored.items():
        if key in RESUMABLE_CHANGES or key not in current:
            continue
        if key == "data_options" and isinstance(old, dict):
            # how unreadable images are handled does not change what is trained
            old = {k: v for k, v in old.items() if k not in RESUMABLE_DATA_OPTIONS}
            current[key] = {k: v for k, v in current[key].items()
                            if k not in RESUMABLE_DATA_OPTIONS}
        if current[key] != old:
            raise HafclsError(
                f"Cannot resume with {key}={current[key]!r}: the run was started with "
                f"{key}={old!r}.",
                f"leave {key} out when resuming (the run's own config is used), or start a new "
                "run in another --output folder.",
            )


def find_checkpoint(run_or_checkpoint: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file, or the ``best.pt`` (else ``last.pt``) of a run folder."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        folder = RunFolder(path)
        order = [folder.best, folder.last] if prefer == "best" else [folder.last, folder.best]
        for candidate in order:
            if candidate.is_file():
                return candidate
        raise HafclsError(f"{path} holds no checkpoints/best.pt or checkpoints/last.pt.",
                          "give a run folder written by `hafcls train`, or a .pt file.")
    if not path.exists():
        raise HafclsError(f"No such run folder or checkpoint: {path}.", "check the path.")
    return path


def prepare_run_folder(folder: RunFolder, config: TrainConfig, info, log) -> Path | None:
    """Check the run folder before training; return ``last.pt`` when resuming from it.

    Rank 0 decides, every rank gets the same answer (or the same error)."""
    from hafcls.engine.distributed import broadcast_object
    from hafcls.engine.preflight import check_run_options

    check_run_options(config)  # every rank: the same config gives the same answer
    decision: tuple[str | None, str | None] = (None, None)
    if info.is_main:
        try:
            if folder.lock_file.is_file():  # a live writer is named before anything else
                folder.lock()
            stored = folder.stored_config()
            if config.resume and folder.last.is_file():
                if stored is not None:
                    check_resume_config(stored, config)
                decision = (str(folder.last), None)
            elif config.resume and stored is not None:
                log(f"No checkpoint to resume in {folder.path}: starting afresh.")
            else:
                folder.check_fresh()
            folder.lock()
        except HafclsError as err:
            folder.unlock()
            decision = (None, f"{err.problem}\x00{err.fix or ''}")
        else:
            freed = folder.remove_stale_temp_files()
            if freed:
                log(f"Removed {freed / 2**20:.1f} MiB of temporary files left by an "
                         "interrupted write.")
    decision = broadcast_object(decision)
    if decision[1] is not None:
        problem, fix = decision[1].split("\x00")
        raise HafclsError(problem, fix or None)
    return Path(decision[0]) if decision[0] else None
