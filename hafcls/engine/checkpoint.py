"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only.

A checkpoint is a dict of tensors, state dicts and plain values, plus one JSON string ``meta``
that holds everything needed to rebuild the model without the original files: the resolved
training config, the model's own config, the hierarchy (and its fingerprint), image size and
normalisation. Keeping metadata as JSON text means the restricted unpickler never has to trust a
custom class.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hafcls.errors import HafclsError
from hafcls.io import atomic_write

FORMAT = "hafcls-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], meta: dict) -> Path:
    """Write ``state`` (state dicts, tensors, plain values) and ``meta`` (JSON-able) to ``path``.

    The file is written to a temporary name and renamed into place, so a kill during the write
    leaves the previous checkpoint intact.
    """
    payload = dict(state)
    payload["format"] = FORMAT
    payload["version"] = FORMAT_VERSION
    payload["meta"] = json.dumps(meta)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; ``result["meta"]`` is a dict.

    A missing, truncated or foreign file raises :class:`HafclsError`.
    """
    path = Path(path)
    if not path.is_file():
        raise HafclsError(f"No such checkpoint: {path}.",
                          "give the path of a .pt file written by `hafcls train`, or its run "
                          "folder.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError, KeyError, AttributeError, IndexError) as err:
        raise HafclsError(
            f"{path} is not a readable checkpoint (truncated, corrupt or not a safe torch "
            f"file: {type(err).__name__}).",
            "use another checkpoint (e.g. best.pt or last.pt of the run), or retrain.",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HafclsError(f"{path} is not a hafcls checkpoint.",
                          "give a checkpoint written by `hafcls train`.")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise HafclsError(f"{path} was written by a newer hafcls (checkpoint format "
                          f"{payload['version']}).", "upgrade hafcls.")
    try:
        payload["meta"] = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise HafclsError(f"{path} has no readable metadata.",
                          "use another checkpoint of the run, or retrain.") from None
    return payload


def check_hierarchy(meta: dict, hierarchy, what: str = "This checkpoint") -> None:
    """Refuse to use a checkpoint with a hierarchy other than the one it was trained on."""
    expected = meta.get("hierarchy_fingerprint")
    got = hierarchy.fingerprint()
    if expected is not None and expected != got:
        raise HafclsError(
            f"{what} was trained on a different hierarchy (fingerprint {expected}, "
            f"{meta.get('num_classes', '?')} classes) than the one given (fingerprint {got}, "
            f"{hierarchy.num_classes} classes).",
            "evaluate with the dataset and hierarchy the model was trained on (leave "
            "--hierarchy unset to use the one stored in the run), or retrain.",
        )


def load_weights(module: torch.nn.Module, state: dict, path: str | os.PathLike,
                 what: str = "model") -> None:
    """``module.load_state_dict(state)``, with weights that do not fit reported as a
    :class:`HafclsError` naming the checkpoint and how many tensors are missing, unexpected or
    mis-shaped (instead of torch's multi-line RuntimeError)."""
    if not isinstance(state, dict):
        raise HafclsError(f"The {what} weights in {path} are not a state dict.",
                          "use the checkpoint as written by `hafcls train` (best.pt / last.pt "
                          "of its run), or retrain.")
    try:
        module.load_state_dict(state)
    except RuntimeError:
        own = module.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        misshaped = [k for k in own if k in state and hasattr(state[k], "shape")
                     and tuple(state[k].shape) != tuple(own[k].shape)]
        example = (missing or unexpected or misshaped or ["?"])[0]
        raise HafclsError(
            f"The weights in {path} do not fit the {what} it describes ({len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(misshaped)} mis-shaped tensors, e.g. "
            f"{example!r}).",
            "use the checkpoint as written by `hafcls train` (best.pt / last.pt of its run), "
            "or retrain.",
        ) from None


# ---------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """Every RNG a training step can consume (python, numpy, torch CPU and CUDA) as tensors and
    plain values, so that it survives ``weights_only`` loading."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNGs saved by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
