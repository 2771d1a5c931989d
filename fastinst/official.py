"""Official FastInst / detectron2 checkpoints -> our state-dict layout.

Released files are detectron2 checkpoints: a ``.pth`` written by ``torch.save`` holding a dict with
a ``"model"`` state dict (and sometimes ``"iteration"``, ``"optimizer"``...), or a model-zoo ``.pkl``
(backbones: a pickle of ``{"model": {name: numpy array}}``, detectron2 naming, often with
``__author__``/``matching_heuristics`` entries). Neither is unpickled with the plain unpickler:
``.pth`` goes through ``torch.load(weights_only=True)`` and ``.pkl`` through a restricted
unpickler that only rebuilds numpy arrays.
"""
from __future__ import annotations

import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .errors import CheckpointError

# (official regex, our replacement); first match wins; None drops the key.
_RENAMES: List[Tuple[str, str | None]] = [
    (r"^(sem_seg_head\.predictor\.)?criterion\..*", None),
    (r"^sem_seg_head\.pixel_decoder\.adapter_(\d)\.", "pixel_decoder.adapters.{k}."),
    (r"^sem_seg_head\.pixel_decoder\.layer_(\d)\.", "pixel_decoder.layers.{k}."),
    (r"^sem_seg_head\.pixel_decoder\.ppm\.", "pixel_decoder.ppm."),
    (r"^sem_seg_head\.predictor\.meta_pos_embed$", "decoder.pos_embed"),
    (r"^sem_seg_head\.predictor\.empty_query_features\.", "decoder.aux_query_features."),
    (r"^sem_seg_head\.predictor\.empty_query_pos_embed\.", "decoder.aux_query_pos."),
    (r"^sem_seg_head\.predictor\.query_proposal\.conv_proposal_cls_logits\.", "decoder.query_proposal.cls_head."),
    (r"^sem_seg_head\.predictor\.transformer_mask_cross_attention_layers\.(\d+)\.multihead_attn\.",
     "decoder.layers.{0}.pixel_cross_attn.attn."),
    (r"^sem_seg_head\.predictor\.transformer_mask_cross_attention_layers\.(\d+)\.", "decoder.layers.{0}.pixel_cross_attn."),
    (r"^sem_seg_head\.predictor\.transformer_mask_ffn_layers\.(\d+)\.", "decoder.layers.{0}.pixel_ffn."),
    (r"^sem_seg_head\.predictor\.transformer_query_cross_attention_layers\.(\d+)\.multihead_attn\.",
     "decoder.layers.{0}.query_cross_attn.attn."),
    (r"^sem_seg_head\.predictor\.transformer_query_cross_attention_layers\.(\d+)\.", "decoder.layers.{0}.query_cross_attn."),
    (r"^sem_seg_head\.predictor\.transformer_query_self_attention_layers\.(\d+)\.self_attn\.",
     "decoder.layers.{0}.query_self_attn.attn."),
    (r"^sem_seg_head\.predictor\.transformer_query_self_attention_layers\.(\d+)\.", "decoder.layers.{0}.query_self_attn."),
    (r"^sem_seg_head\.predictor\.transformer_query_ffn_layers\.(\d+)\.", "decoder.layers.{0}.query_ffn."),
    (r"^sem_seg_head\.predictor\.decoder_query_norm_layers\.(\d+)\.", "decoder.heads.{0}.query_norm."),
    (r"^sem_seg_head\.predictor\.class_embed_layers\.(\d+)\.", "decoder.heads.{0}.class_mlp."),
    (r"^sem_seg_head\.predictor\.mask_embed_layers\.(\d+)\.", "decoder.heads.{0}.mask_mlp."),
    (r"^sem_seg_head\.predictor\.mask_features_layers\.(\d+)\.", "decoder.heads.{0}.pixel_proj."),
    (r"^backbone\.", "backbone."),
]
_COMPILED = [(re.compile(p), r) for p, r in _RENAMES]


def official_to_ours(key: str) -> str | None:
    """Map one official key to ours (``None``: a training-only buffer that we drop).

    >>> official_to_ours("sem_seg_head.predictor.class_embed_layers.1.layers.2.weight")
    'decoder.heads.1.class_mlp.layers.2.weight'
    """
    for pattern, replacement in _COMPILED:
        match = pattern.match(key)
        if not match:
            continue
        if replacement is None:
            return None
        groups = match.groups()
        head = replacement.format(*groups, k=int(groups[0]) - 1 if groups else 0)
        return head + key[match.end():]
    raise CheckpointError(f"unexpected key {key!r}: this is not a FastInst checkpoint")


def convert_state_dict(official: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Rename an official FastInst state dict to our layout (criterion buffers dropped)."""
    out: Dict[str, Tensor] = {}
    for key, value in official.items():
        ours = official_to_ours(key)
        if ours is not None:
            out[ours] = value
    return out


def check_compatible(model: nn.Module, state: Mapping[str, Tensor], source: str,
                     unknown_keys: Sequence[str] = ()) -> None:
    """Raise :class:`CheckpointError` naming missing/unexpected keys and disagreeing shapes;
    ``unknown_keys`` (file keys a converter could not map) are listed first among the unexpected."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = list(unknown_keys) + [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{source} does not fit this model"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError("; ".join(parts))


def read_official_file(path: str | Path) -> Dict[str, Tensor]:
    """Read the ``"model"`` dict of a detectron2 ``.pth`` or ``.pkl`` file safely, as tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    raw = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        try:
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError/RuntimeError subclasses
            raise CheckpointError(f"{path.name}: not a loadable weights file ({_first_line(exc)})") from None
    else:
        obj = _restricted_pickle_load(raw, path.name)
    model = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(model, dict) or not model:
        raise CheckpointError(f"{path.name}: no state dict found (expected a dict with a 'model' entry)")
    tensors: Dict[str, Tensor] = {}
    for key, value in model.items():
        if isinstance(value, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, Tensor):
            tensors[key] = value
        # detectron2 .pkl files carry a few non-array entries; they are not weights.
    return tensors


def load_official(model: nn.Module, path: str | Path) -> None:
    """Load a released FastInst checkpoint into ``model`` (strict; clear error on any mismatch)."""
    state = convert_state_dict(read_official_file(path))
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    check_compatible(model, state, Path(path).name)
    model.load_state_dict(state, strict=True)


@dataclass
class PartialLoadReport:
    """What :func:`load_official_partial` did. Shapes are ``(checkpoint, model)`` tuples."""

    loaded: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        """The report for a person: one line per skipped tensor, then the counts."""
        out = [f"skipped {name}: checkpoint {tuple(a)} vs model {tuple(b)}" for name, a, b in self.skipped]
        out.append(f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} (shape differs), "
                   f"{len(self.missing)} missing from the file (kept as initialised), "
                   f"{len(self.unexpected)} in the file but not in the model (ignored)")
        return out


def load_official_partial(model: nn.Module, path: str | Path) -> PartialLoadReport:
    """Load every tensor of a released checkpoint whose name and shape fit ``model``; the rest of the
    model keeps its initialisation. The usual case: fine-tuning a COCO model (80 classes) on a
    project with other classes, where the class-dependent tensors (the IA head's and every
    prediction head's last classification layer, first dim K+1) are skipped.

    Raises:
        CheckpointError: unreadable file, a file of another model (a key we cannot map), or no
            tensor that fits.
    """
    raw = read_official_file(path)
    state = convert_state_dict(raw)
    expected = model.state_dict()
    report = PartialLoadReport()
    num_classes = getattr(model, "num_classes", None)
    for key, value in raw.items():  # criterion buffers are not model weights; the criterion rebuilds them
        if official_to_ours(key) is None and num_classes is not None and value.shape[:1] != (num_classes + 1,):
            report.skipped.append((key, tuple(value.shape), (num_classes + 1,)))
    fitting: Dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.skipped.append((key, tuple(value.shape), tuple(expected[key].shape)))
        else:
            fitting[key] = value.to(expected[key].dtype)
            report.loaded.append(key)
    report.missing = [k for k in expected if k not in state]
    if not fitting:
        raise CheckpointError(f"{Path(path).name}: no tensor fits this model ({len(report.skipped)} differ in shape, "
                              f"{len(report.unexpected)} unknown)")
    model.load_state_dict(fitting, strict=False)
    return report


def load_backbone_pkl(model: nn.Module, path: str | Path) -> Tuple[List[str], List[str]]:
    """Load ImageNet backbone weights into ``model.backbone``: a detectron2 model-zoo ``.pkl``
    (e.g. ``R-50.pkl``, or the timm-converted R50-vd file), or a torchvision ResNet ``.pth``. Returns ``(loaded keys, skipped file keys)``; shape mismatches raise."""
    state = read_official_file(path)
    if any(k.startswith("layer1.") for k in state) and not any(k.startswith("layer1.0.conv2_offset") for k in state) \
            and any(k.startswith("bn1.") for k in state) and "conv1.weight" in state:
        state = torchvision_resnet_to_detectron2(state)  # a torchvision checkpoint saved as-is
    target = model.backbone.state_dict()
    loaded, skipped = [], []
    for key, value in state.items():
        name = key[len("backbone."):] if key.startswith("backbone.") else key
        if name not in target:
            skipped.append(key)
            continue
        if tuple(value.shape) != tuple(target[name].shape):
            raise CheckpointError(f"{Path(path).name}: {key} has shape {tuple(value.shape)}, "
                                  f"the backbone expects {tuple(target[name].shape)}")
        target[name] = value.to(target[name].dtype)
        loaded.append(name)
    if not loaded:
        raise CheckpointError(f"{Path(path).name}: no key matches this backbone")
    model.backbone.load_state_dict(target)
    return loaded, skipped


def torchvision_resnet_to_detectron2(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Rename a torchvision ImageNet ResNet state dict (``resnet50(weights=...).state_dict()``) to
    detectron2's layout, as the official ``tools/convert-torchvision-to-d2.py`` does; drops ``fc``
    and ``num_batches_tracked``."""
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        name = re.sub(r"^layer(\d)", lambda m: f"res{int(m[1]) + 1}", key)
        name = re.sub(r"^conv1\.", "stem.conv1.", name)
        name = re.sub(r"^bn1\.", "stem.conv1.norm.", name)
        name = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", name)
        name = name.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        out[name] = value
    return out


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle asks for a class or function outside the allow-list."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refusing to load {module}.{name}")


def _restricted_pickle_load(raw: bytes, name: str) -> object:
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise CheckpointError(f"{name}: refused to load, the file is not a plain weights pickle ({exc})") from None
    except Exception as exc:
        raise CheckpointError(f"{name}: not a readable checkpoint, the file is truncated or corrupt "
                              f"({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

