"""Our own checkpoints: safetensors weights + JSON metadata (preset, class names, provenance, metrics).

Nothing executable is stored or loaded: safetensors holds raw tensors and a string->string header.
Tensors may be stored in fp16 (``half=True``) to keep shipped files small; they load as fp32.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .model import FastInst
from .official import check_compatible
from .presets import build_model

FORMAT = "fastinst-studio/1"


@dataclass
class CheckpointInfo:
    """Metadata stored with the weights."""

    preset: str
    class_names: List[str]
    provenance: Dict[str, object] = field(default_factory=dict)
    metrics: Dict[str, object] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: FastInst, *, preset: str, class_names: List[str],
                    provenance: Dict[str, object] | None = None, metrics: Dict[str, object] | None = None,
                    half: bool = False) -> Path:
    """Write ``model``'s weights and metadata atomically to ``path`` (``.safetensors``)."""
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    metadata = {
        "format": FORMAT,
        "preset": preset,
        "class_names": json.dumps(list(class_names)),
        "provenance": json.dumps(provenance or {}, default=str),
        "metrics": json.dumps(metrics or {}, default=str),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``: readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_info(path: str | Path) -> CheckpointInfo:
    """Read only the metadata of a checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(path).name}: not a FastInst Studio checkpoint ({exc})") from None
    return _info_from_metadata(meta, Path(path).name)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Tuple[FastInst, CheckpointInfo]:
    """Build the model named in the file's metadata and load its weights (strict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    info = read_info(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: truncated or corrupt weights ({exc})") from None
    model = build_model(info.preset, num_classes=len(info.class_names))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    check_compatible(model, state, path.name)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), info


def _info_from_metadata(meta: Dict[str, str], name: str) -> CheckpointInfo:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not a FastInst Studio checkpoint (format {meta.get('format')!r}); "
                              "official detectron2 files load with --official / fastinst.official.load_official")
    try:
        return CheckpointInfo(preset=meta["preset"], class_names=json.loads(meta["class_names"]),
                              provenance=json.loads(meta.get("provenance", "{}")),
                              metrics=json.loads(meta.get("metrics", "{}")))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{name}: damaged metadata ({exc})") from None
