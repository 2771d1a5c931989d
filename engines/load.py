"""Which model a weights file holds, and a predictor for it: the one loader the studio and the CLIs use.

Our checkpoints (``.safetensors``) carry a format tag naming their model (``fastinst-studio/1``,
``fastinst-studio/queryinst/1``). Released checkpoints do not: a QueryInst file is known by its
mmdetection file name (``queryinst_r50_fpn_1x_coco_*.pth``) or by a QueryInst-only preset; any
other ``.pth`` / ``.pkl`` is FastInst's (detectron2) and needs its preset.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from fastinst.errors import CheckpointError

#: model name -> (package, display name = the package's network class, format tag of our checkpoints)
MODELS = {
    "fastinst": ("fastinst", "FastInst", "fastinst-studio/1"),
    "queryinst": ("queryinst", "QueryInst", "fastinst-studio/queryinst/1"),
}
OFFICIAL_SUFFIXES = {".pth", ".pkl"}


@dataclass
class Loaded:
    """A predictor and what it was loaded as."""

    predictor: object   # the model package's Predictor (meets engines.contract.Predictor)
    model: str          # key of MODELS
    preset: str


def display_name(model: str) -> str:
    """``"queryinst"`` -> ``"QueryInst"``."""
    return MODELS[model][1]


def presets(model: str) -> List[str]:
    """The preset names of ``model``."""
    return list(_package(model).PRESETS)


def _package(model: str):
    if model not in MODELS:
        raise CheckpointError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return importlib.import_module(MODELS[model][0])


def network_model(net: object) -> str:
    """The model name of a network object (an instance of a package's network class)."""
    for name, (package, cls_name, _) in MODELS.items():
        if isinstance(net, getattr(importlib.import_module(package), cls_name)):
            return name
    raise TypeError(f"{type(net).__name__} is none of the project's models ({', '.join(MODELS)})")


def predictor_for(net: object, class_names: Sequence[str], *, device: str = "auto", **kwargs) -> object:
    """The model package's Predictor around ``net`` (``kwargs`` as that Predictor takes, e.g. ``explain``)."""
    return _package(network_model(net)).Predictor(net, list(class_names), device=device, **kwargs)


def checkpoint_model(path: str | Path) -> str:
    """The model of one of our ``.safetensors`` checkpoints, from its format tag.

    Raises:
        CheckpointError: unreadable file, or a format tag of no known model.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tag = (f.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: not a readable checkpoint, truncated or corrupt ({exc})") from None
    for name, (_, _, fmt) in MODELS.items():
        if tag == fmt:
            return name
    raise CheckpointError(f"{path.name}: not a FastInst Studio checkpoint of any model (format {tag!r})")


def official_model(path: str | Path, preset: Optional[str]) -> str:
    """The model of a released checkpoint: QueryInst when its file name or ``preset`` says so, else FastInst."""
    from queryinst.presets import PRESETS as QUERYINST_PRESETS, preset_for_file
    from fastinst.presets import PRESETS as FASTINST_PRESETS

    if preset_for_file(Path(path).name) is not None:
        return "queryinst"
    if preset in QUERYINST_PRESETS and preset not in FASTINST_PRESETS:
        return "queryinst"
    return "fastinst"


def weights_model(path: str | Path, preset: Optional[str] = None) -> str:
    """The model a weights file holds (ours by format tag, a released one by name/preset)."""
    if Path(path).suffix.lower() in OFFICIAL_SUFFIXES:
        return official_model(path, preset)
    return checkpoint_model(path)


def load_predictor(weights: str | Path, *, model: Optional[str] = None, preset: Optional[str] = None,
                   device: str = "auto", class_names: Optional[Sequence[str]] = None, **kwargs) -> Loaded:
    """A predictor for ``weights``: our ``.safetensors`` (model, preset and classes from the file) or a
    released ``.pth`` / ``.pkl`` (COCO's 80 classes unless ``class_names``).

    Args:
        model: the model the caller expects ("fastinst", "queryinst"); None: whatever the file holds.
        preset: architecture of a released checkpoint (QueryInst's is read from its file name).
        kwargs: passed to the model's Predictor (e.g. ``explain=False``).

    Raises:
        CheckpointError: the file holds another model than ``model`` (the message names both), an
            unknown preset, a ``.pth``/``.pkl`` taken for FastInst's without ``preset``, or any loading
            fault.
    """
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    found = weights_model(path, preset)
    if model is not None and found != model:
        raise CheckpointError(f"{path.name} holds a {display_name(found)} model, not {display_name(model)}: "
                              f"pass --model {found}, or weights of a {display_name(model)} model")
    package = _package(found)
    if path.suffix.lower() not in OFFICIAL_SUFFIXES:
        predictor = package.Predictor.from_checkpoint(path, device=device, **kwargs)
        return Loaded(predictor, found, checkpoint_preset(path))
    official = importlib.import_module(f"{MODELS[found][0]}.official")
    if found == "queryinst":
        from queryinst.presets import preset_for_file
        preset = preset or preset_for_file(path.name)
    if not preset:   # what a .pth holds is not known before it is loaded: it is not named
        raise CheckpointError(f"{path.name} is not one of our checkpoints (.safetensors): if it is a released "
                              f"{display_name(found)} checkpoint, give its --preset (one of "
                              f"{', '.join(presets(found))}); weights of other models (e.g. Mask2Former) "
                              f"cannot be loaded")
    if preset not in package.PRESETS:
        raise CheckpointError(f"unknown {display_name(found)} preset {preset!r}; choose one of "
                              f"{', '.join(presets(found))}")
    net = package.build_model(preset)
    official.load_official(net, path)
    if class_names is None:
        class_names = _official_class_names(found, path)
    return Loaded(package.Predictor(net, list(class_names), device=device, **kwargs), found, preset)


def checkpoint_preset(path: str | Path) -> str:
    """The preset recorded in one of our ``.safetensors`` checkpoints (either model's)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            preset = (f.metadata() or {}).get("preset")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{Path(path).name}: not a readable checkpoint ({exc})") from None
    if not preset:
        raise CheckpointError(f"{Path(path).name}: no preset in its metadata")
    return str(preset)


def _official_class_names(model: str, path: Path) -> List[str]:
    from fastinst.cli import coco_class_names

    if model == "queryinst":
        from queryinst.official import read_official
        return read_official(path).class_names or coco_class_names()
    return coco_class_names()


def read_class_names(path: str | Path) -> List[str]:
    """A JSON list of class names (``--class-names`` of the CLIs)."""
    names = json.loads(Path(path).read_text())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: expected a JSON list of class names")
    return names
