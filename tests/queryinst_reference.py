"""Access to ../shared/reference/queryinst: the official QueryInst (mmdetection 3.3.0) test vectors.

The weight filler generates 172.8 M values (2-5 minutes on 2 cores), so the filled state dict is
cached as safetensors under ``$QUERYINST_REFERENCE_CACHE`` (default ``~/.cache/fastinst-studio``),
keyed by the SHA-256 of the manifest. The 300-proposal config differs from the 100-proposal one
only in the two ``rpn_head`` embeddings (the reference README), so only those are filled again.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict

import torch

from reference import require_folder



def _find_reference() -> Path:
    """``$QUERYINST_REFERENCE``, else ``shared/reference/queryinst`` beside the checkout (or one level up,
    for a git worktree in a subfolder)."""
    if "QUERYINST_REFERENCE" in os.environ:
        return Path(os.environ["QUERYINST_REFERENCE"])
    here = Path(__file__).resolve()
    candidates = [here.parents[i] / "shared" / "reference" / "queryinst" for i in (2, 3)]
    return next((c for c in candidates if c.is_dir()), candidates[0])


REFERENCE_DIR = _find_reference()
CACHE_DIR = Path(os.environ.get("QUERYINST_REFERENCE_CACHE", Path.home() / ".cache" / "fastinst-studio"))

# official config name -> our preset
CONFIGS = {
    "queryinst_r50_fpn_1x_coco": "R50-1x",
    "queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco": "R50-300-3x",
}
BASE_CONFIG = "queryinst_r50_fpn_1x_coco"


def require_reference() -> Path:
    """The QueryInst reference folder (see :func:`reference.require_folder`)."""
    return require_folder(REFERENCE_DIR, "weights_queryinst.py", "QueryInst reference vectors")


@lru_cache(maxsize=None)
def manifest(config: str) -> dict:
    return json.loads((require_reference() / f"{config}.manifest.json").read_text())


def _filler():
    directory = str(require_reference())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    import weights_queryinst  # noqa: E402 - lives in the shared folder

    return weights_queryinst


def _fill_cached(config: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256((require_reference() / f"{config}.manifest.json").read_bytes()).hexdigest()[:16]
    path = CACHE_DIR / f"{config}.{digest}.safetensors"
    if path.is_file():
        return load_file(path)
    state = _filler().fill_state_dict(manifest(config))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    return state


def official_state_dict(config: str) -> Dict[str, torch.Tensor]:
    """The deterministic synthetic weights of ``config`` in the official mmdetection key layout."""
    base = _fill_cached(BASE_CONFIG)
    entries = manifest(config)["state_dict"]
    if config == BASE_CONFIG:
        return {e["key"]: base[e["key"]] for e in entries}
    shared = {e["key"]: e["fingerprint"] for e in manifest(BASE_CONFIG)["state_dict"]}
    own = [e for e in entries if shared.get(e["key"]) != e["fingerprint"]]
    assert all(e["key"].startswith("rpn_head.") for e in own), "manifests differ beyond rpn_head"
    filled = _filler().fill_state_dict(own)
    return {e["key"]: filled[e["key"]] if e["key"] in filled else base[e["key"]] for e in entries}


def case(config: str, index: int) -> dict:
    return torch.load(require_reference() / f"{config}.case{index}.pt", weights_only=True)


def case_utils():
    """The reference's own ``case_utils`` module (model_input, unpack_masks, ambiguous_mask)."""
    directory = str(require_reference())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    import case_utils as cu  # noqa: E402

    return cu
