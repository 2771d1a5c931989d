"""Released mmdetection QueryInst checkpoints -> our state-dict layout.

A released file (e.g. ``queryinst_r50_fpn_1x_coco_20210907_084916-5a8f1998.pth``) is a
``torch.save`` of ``{"meta": {...}, "state_dict": {...}}`` (sometimes with ``"optimizer"``). It is
read with ``torch.load(weights_only=True)`` -- nothing in it can run code; numpy scalars in
``meta`` are allowed through torch's safe-globals list, nothing else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from fastinst.errors import CheckpointError
from fastinst.official import check_compatible

# (official regex, our replacement with {0}, {1}.. groups; {L} = group 0 + 1 for ResNet stages)
_RENAMES: List[Tuple[str, str]] = [
    (r"^backbone\.conv1\.", "backbone.stem.conv1."),
    (r"^backbone\.bn1\.", "backbone.stem.conv1.norm."),
    (r"^backbone\.layer(\d)\.(\d+)\.conv(\d)\.", "backbone.res{L}.{1}.conv{2}."),
    (r"^backbone\.layer(\d)\.(\d+)\.bn(\d)\.", "backbone.res{L}.{1}.conv{2}.norm."),
    (r"^backbone\.layer(\d)\.(\d+)\.downsample\.0\.", "backbone.res{L}.{1}.shortcut."),
    (r"^backbone\.layer(\d)\.(\d+)\.downsample\.1\.", "backbone.res{L}.{1}.shortcut.norm."),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", "fpn.lateral_convs.{0}."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", "fpn.output_convs.{0}."),
    (r"^rpn_head\.init_proposal_bboxes\.", "proposals.boxes."),
    (r"^rpn_head\.init_proposal_features\.", "proposals.features."),
    (r"^roi_head\.bbox_head\.(\d+)\.attention\.attn\.", "stages.{0}.self_attn."),
    (r"^roi_head\.bbox_head\.(\d+)\.attention_norm\.", "stages.{0}.self_attn_norm."),
    (r"^roi_head\.bbox_head\.(\d+)\.instance_interactive_conv\.", "stages.{0}.dynamic_conv."),
    (r"^roi_head\.bbox_head\.(\d+)\.instance_interactive_conv_norm\.", "stages.{0}.dynamic_conv_norm."),
    (r"^roi_head\.bbox_head\.(\d+)\.ffn\.layers\.0\.0\.", "stages.{0}.ffn.0."),
    (r"^roi_head\.bbox_head\.(\d+)\.ffn\.layers\.1\.", "stages.{0}.ffn.3."),
    (r"^roi_head\.bbox_head\.(\d+)\.(ffn_norm|cls_fcs|fc_cls|reg_fcs|fc_reg)\.", "stages.{0}.{1}."),
    (r"^roi_head\.mask_head\.(\d+)\.instance_interactive_conv\.", "mask_heads.{0}.dynamic_conv."),
    (r"^roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.conv\.", "mask_heads.{0}.convs.{1}."),
    (r"^roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.bn\.", "mask_heads.{0}.convs.{1}.norm."),
    (r"^roi_head\.mask_head\.(\d+)\.(upsample|conv_logits)\.", "mask_heads.{0}.{1}."),
]
_COMPILED = [(re.compile(p), r) for p, r in _RENAMES]

# ours -> official, the inverse of _RENAMES (first match wins; {L} = our ResNet stage - 1)
_INVERSE: List[Tuple[str, str]] = [
    (r"^backbone\.stem\.conv1\.norm\.", "backbone.bn1."),
    (r"^backbone\.stem\.conv1\.", "backbone.conv1."),
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.", "backbone.layer{L}.{1}.bn{2}."),
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.", "backbone.layer{L}.{1}.conv{2}."),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.norm\.", "backbone.layer{L}.{1}.downsample.1."),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.", "backbone.layer{L}.{1}.downsample.0."),
    (r"^fpn\.lateral_convs\.(\d+)\.", "neck.lateral_convs.{0}.conv."),
    (r"^fpn\.output_convs\.(\d+)\.", "neck.fpn_convs.{0}.conv."),
    (r"^proposals\.boxes\.", "rpn_head.init_proposal_bboxes."),
    (r"^proposals\.features\.", "rpn_head.init_proposal_features."),
    (r"^stages\.(\d+)\.self_attn_norm\.", "roi_head.bbox_head.{0}.attention_norm."),
    (r"^stages\.(\d+)\.self_attn\.", "roi_head.bbox_head.{0}.attention.attn."),
    (r"^stages\.(\d+)\.dynamic_conv_norm\.", "roi_head.bbox_head.{0}.instance_interactive_conv_norm."),
    (r"^stages\.(\d+)\.dynamic_conv\.", "roi_head.bbox_head.{0}.instance_interactive_conv."),
    (r"^stages\.(\d+)\.ffn\.0\.", "roi_head.bbox_head.{0}.ffn.layers.0.0."),
    (r"^stages\.(\d+)\.ffn\.3\.", "roi_head.bbox_head.{0}.ffn.layers.1."),
    (r"^stages\.(\d+)\.", "roi_head.bbox_head.{0}."),
    (r"^mask_heads\.(\d+)\.dynamic_conv\.", "roi_head.mask_head.{0}.instance_interactive_conv."),
    (r"^mask_heads\.(\d+)\.convs\.(\d+)\.norm\.", "roi_head.mask_head.{0}.convs.{1}.bn."),
    (r"^mask_heads\.(\d+)\.convs\.(\d+)\.", "roi_head.mask_head.{0}.convs.{1}.conv."),
    (r"^mask_heads\.(\d+)\.", "roi_head.mask_head.{0}."),
]
_COMPILED_INVERSE = [(re.compile(p), r) for p, r in _INVERSE]


def ours_to_official(key: str) -> str:
    """One of our keys -> mmdetection's (to export a model in the released layout).

    >>> ours_to_official("backbone.res2.0.shortcut.norm.weight")
    'backbone.layer1.0.downsample.1.weight'
    """
    for pattern, replacement in _COMPILED_INVERSE:
        match = pattern.match(key)
        if match:
            groups = match.groups()
            level = int(groups[0]) - 1 if key.startswith("backbone.res") else 0
            return replacement.format(*groups, L=level) + key[match.end():]
    raise KeyError(f"{key!r} is not a QueryInst key")


def official_to_ours(key: str) -> Optional[str]:
    """One mmdetection key -> ours, or ``None`` when it is not a QueryInst key.

    >>> official_to_ours("roi_head.bbox_head.5.ffn.layers.0.0.weight")
    'stages.5.ffn.0.weight'
    """
    for pattern, replacement in _COMPILED:
        match = pattern.match(key)
        if match:
            groups = match.groups()
            level = int(groups[0]) + 1 if key.startswith("backbone.layer") else 0
            return replacement.format(*groups, L=level) + key[match.end():]
    return None


def convert_state_dict(official: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Rename an mmdetection QueryInst state dict; returns ``(ours, official keys not recognised)``.
    Floating tensors become float32 (a half-precision file loads into the float32 model)."""
    out: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in official.items():
        ours = official_to_ours(key)
        if ours is None:
            unknown.append(key)
        else:
            out[ours] = value.to(torch.float32) if value.is_floating_point() else value
    return out, unknown


@dataclass
class OfficialCheckpoint:
    """What a released file holds: the state dict (our layout), keys we did not recognise, the
    class names from ``meta`` (``dataset_meta.classes`` or mmdet 2.x ``CLASSES``) and the raw meta."""

    state_dict: Dict[str, Tensor]
    unknown_keys: List[str]
    class_names: Optional[List[str]]
    meta: dict


def read_official(path: str | Path) -> OfficialCheckpoint:
    """Read a released mmdetection checkpoint safely; :class:`CheckpointError` on any problem
    (missing, truncated or corrupt file, a pickle asking for code, no ``state_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    obj = _safe_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name}: no state dict found (expected a dict with 'state_dict')")
    state = obj.get("state_dict", obj.get("model", obj))  # "model": a detectron2 file, reported as not fitting
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name}: no state dict found (expected a dict with 'state_dict')")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    ours, unknown = convert_state_dict(tensors)
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return OfficialCheckpoint(ours, unknown, _class_names(meta), meta)


@dataclass
class LoadReport:
    """What a partial load did: ``loaded`` keys, ``skipped`` keys (``key: file shape vs model shape``),
    ``missing`` model keys the file lacks, ``unexpected`` file keys the model lacks."""

    loaded: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; kept the model's own values for {len(self.skipped)} of another "
                f"shape ({', '.join(self.skipped[:4])}{', ...' if len(self.skipped) > 4 else ''}) and "
                f"{len(self.missing)} missing; ignored {len(self.unexpected)} unexpected")


def load_official(model: nn.Module, path: str | Path, *, partial: bool = False) -> LoadReport:
    """Load a released QueryInst checkpoint into ``model``.

    ``partial=False``: every key must match (names and shapes), else :class:`CheckpointError`
    listing missing keys, unexpected keys and shape mismatches (e.g. a FastInst or Mask R-CNN file).
    ``partial=True`` (fine-tuning to other classes): tensors whose name and shape match are loaded,
    the class-specific layers of another class count keep the model's initialisation; refused
    when less than half the model's tensors match (that is another model, not another class count).
    """
    ckpt = read_official(path)
    name = Path(path).name
    if partial:
        return load_matching(model, ckpt.state_dict, name, unknown_keys=ckpt.unknown_keys)
    check_compatible(model, ckpt.state_dict, name, unknown_keys=ckpt.unknown_keys)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return LoadReport(loaded=list(ckpt.state_dict))


def load_matching(model: nn.Module, state: Mapping[str, Tensor], source: str,
                  unknown_keys: Sequence[str] = ()) -> LoadReport:
    """Load the tensors of ``state`` whose names and shapes match ``model`` (see :func:`load_official`);
    ``unknown_keys`` (file keys that are not QueryInst's) are reported as unexpected."""
    target = model.state_dict()
    report = LoadReport(unexpected=list(unknown_keys))
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.skipped.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target[key].shape)}")
        else:
            target[key] = value.to(target[key].dtype)
            report.loaded.append(key)
    report.missing = [k for k in target if k not in state]
    if len(report.loaded) < len(target) / 2:
        raise CheckpointError(f"{source} does not fit this model: only {len(report.loaded)} of {len(target)} "
                              f"tensors match ({report.summary()})")
    model.load_state_dict(target, strict=True)
    return report


def _safe_load(path: Path) -> object:
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 / 1
    numpy_globals = [np.dtype, np.ndarray, core.multiarray._reconstruct, core.multiarray.scalar]
    numpy_globals += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    try:
        with torch.serialization.safe_globals(numpy_globals):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip reader), EOFError...
        text = _first_line(exc)
        if "Unsupported global" in text or "weights_only" in text.replace(" ", "_").lower():
            raise CheckpointError(f"{path.name}: refused to load, the file asks for code or classes a plain "
                                  f"weights file does not need ({text})") from None
        raise CheckpointError(f"{path.name}: not a readable checkpoint, the file is truncated or corrupt ({text})") from None


def _class_names(meta: Mapping) -> Optional[List[str]]:
    names = meta.get("dataset_meta", {}).get("classes") if isinstance(meta.get("dataset_meta"), dict) else None
    names = names if names is not None else meta.get("CLASSES")
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
