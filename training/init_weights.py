"""Starting a training run from one of our checkpoints or a released official one, possibly with other classes.

When the class list is unchanged the weights load strictly. Otherwise every tensor whose shape
does not depend on the number of classes is copied, and the class-dependent ones (the IA head's
and every prediction head's last layer) get their rows copied by class name: a class the old
model knew keeps what it learned, a new class starts from scratch, the no-object row is kept.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import torch
from safetensors.torch import load_file

from fastinst import FastInst, build_model
from fastinst.checkpoint import read_info
from fastinst.official import load_official_partial


def class_dependent_keys(preset: str, num_classes: int) -> Set[str]:
    """State-dict keys whose shape changes with the number of classes (found by building the
    preset with ``num_classes`` and ``num_classes + 1`` classes)."""
    a = {k: v.shape for k, v in build_model(preset, num_classes).state_dict().items()}
    b = {k: v.shape for k, v in build_model(preset, num_classes + 1).state_dict().items()}
    return {k for k in a if a[k] != b.get(k)}


def remap_rows(old: torch.Tensor, new: torch.Tensor, old_names: Sequence[str], new_names: Sequence[str]) -> torch.Tensor:
    """Rows ``0..K-1`` of a class-output tensor follow the class names; the last row is no-object."""
    out = new.clone()
    index = {n: i for i, n in enumerate(old_names)}
    for j, name in enumerate(new_names):
        if name in index:
            out[j] = old[index[name]]
    out[-1] = old[-1]
    return out


def load_initial_weights(model: FastInst, path: str | Path, preset: str, class_names: Sequence[str]) -> Tuple[str, List[str]]:
    """Load ``path`` into ``model`` (built for ``class_names``): our checkpoint (``.safetensors``), or a
    released official one (``.pth``/``.pkl``, e.g. a COCO model for a project with other classes).

    Returns ``(how, notes)``: ``how`` is ``"strict"``, ``"by-name"`` (ours, other classes) or
    ``"partial"`` (official: every tensor whose shape fits; ``notes`` lists each skipped tensor with
    both shapes, then the counts).

    Raises:
        fastinst.CheckpointError: unreadable file, or a file of another model.
        ValueError: our checkpoint of another preset.
    """
    if Path(path).suffix.lower() in (".pth", ".pkl"):
        report = load_official_partial(model, path)
        notes = report.lines()
        if report.skipped or report.missing:
            warnings.warn(f"{Path(path).name} loaded partially: " + notes[-1], stacklevel=2)
        return "partial", notes
    info = read_info(path)
    if info.preset != preset:
        raise ValueError(f"{Path(path).name} is a {info.preset!r} checkpoint but the run uses preset {preset!r}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    if list(info.class_names) == list(class_names):
        model.load_state_dict(state, strict=True)
        return "strict", []
    keys = class_dependent_keys(preset, len(class_names))
    current = model.state_dict()
    merged: Dict[str, torch.Tensor] = {}
    for key, value in current.items():
        if key in keys:
            merged[key] = remap_rows(state[key], value, info.class_names, class_names)
        else:
            merged[key] = state[key]
    model.load_state_dict(merged, strict=True)
    kept = [n for n in class_names if n in info.class_names]
    new = [n for n in class_names if n not in info.class_names]
    notes = [f"classes kept from the checkpoint: {kept}", f"new classes (heads start fresh): {new}"]
    warnings.warn(f"class list differs from {Path(path).name}: " + "; ".join(notes), stacklevel=2)
    return "by-name", notes
