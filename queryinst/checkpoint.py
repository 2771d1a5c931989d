"""Our own QueryInst checkpoints: safetensors weights + JSON metadata, like FastInst's
(:mod:`fastinst.checkpoint`), with their own format tag so neither loader mistakes the other's file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fastinst.checkpoint import CheckpointInfo, atomic_write
from fastinst.errors import CheckpointError
from fastinst.official import check_compatible

from .model import QueryInst
from .presets import build_model

FORMAT = "fastinst-studio/queryinst/1"


def save_checkpoint(path: str | Path, model: QueryInst, *, preset: str, class_names: List[str],
                    provenance: Dict[str, object] | None = None, metrics: Dict[str, object] | None = None) -> Path:
    """Write ``model``'s weights and metadata atomically to ``path`` (``.safetensors``)."""
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "model": "queryinst", "preset": preset, "class_names": json.dumps(list(class_names)),
                "provenance": json.dumps(provenance or {}, default=str), "metrics": json.dumps(metrics or {}, default=str)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Tuple[QueryInst, CheckpointInfo]:
    """Build the preset named in the file and load its weights strictly; :class:`CheckpointError`
    for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: not a readable QueryInst checkpoint, truncated or corrupt ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a QueryInst checkpoint (format {meta.get('format')!r})")
    info = CheckpointInfo(preset=meta["preset"], class_names=json.loads(meta["class_names"]),
                          provenance=json.loads(meta.get("provenance", "{}")), metrics=json.loads(meta.get("metrics", "{}")))
    model = build_model(info.preset, num_classes=len(info.class_names))
    check_compatible(model, state, path.name)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), info
