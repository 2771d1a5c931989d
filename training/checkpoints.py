"""Resume checkpoints: model, optimiser, scheduler, grad scaler, iteration and every RNG state.

Saved with ``torch.save`` of plain tensors, numbers, strings, lists and dicts only, so they load
with ``torch.load(..., weights_only=True)``; written to a temporary file and renamed into place,
so a crash while saving never leaves a truncated checkpoint behind.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from fastinst.checkpoint import atomic_write

RESUME_NAME = "last_checkpoint.pt"


def rng_state() -> Dict[str, object]:
    """Every random generator the training loop touches, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: Dict[str, object] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, object]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: object, path: Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_resume(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: Optional[torch.amp.GradScaler],
                iteration: int, config_json: str, class_names: list, rng: Optional[Dict[str, object]] = None,
                ema: Optional[torch.nn.Module] = None) -> Path:
    """Write the full training state after ``iteration`` completed iterations (``rng``: the RNG
    state to resume with, default the current one; ``ema``: the moving average of the weights)."""
    state = {
        "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "rng": rng if rng is not None else rng_state(),
        "config": config_json,
        "class_names": list(class_names),
        "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()} if ema is not None else {},
    }
    return atomic_torch_save(state, path)


def load_resume(path: Path) -> Dict[str, object]:
    """Read a resume checkpoint (``weights_only=True``: nothing executable is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)
