"""Access to ../shared/reference: the official FastInst test vectors (see its README)."""
from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict

import pytest
import torch

REFERENCE_DIR = Path(os.environ.get("FASTINST_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))

# official config name -> our preset
CONFIGS = {
    "fastinst_R50_ppm-fpn_x1_576": "D1-R50-576",
    "fastinst_R50_ppm-fpn_x3_640": "D3-R50-640",
    "fastinst_R50-vd-dcn_ppm-fpn_x3_640": "D3-R50d-DCN-640",
}


def require_folder(directory: Path, marker: str, what: str = "reference vectors") -> Path:
    """``directory`` when it holds ``marker``; skipped locally when absent, an error in CI."""
    if not (directory / marker).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{what} not found at {directory}")
        pytest.skip(f"{what} not found at {directory}")
    return directory


def require_reference() -> Path:
    """The FastInst reference folder (see :func:`require_folder`)."""
    return require_folder(REFERENCE_DIR, "weights.py")


@lru_cache(maxsize=None)
def manifest(config: str) -> dict:
    return json.loads((require_reference() / f"{config}.manifest.json").read_text())


def official_state_dict(config: str) -> Dict[str, torch.Tensor]:
    """The deterministic synthetic weights of ``config`` in the official key layout."""
    directory = str(require_reference())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    from weights import fill_state_dict  # noqa: E402 - lives in the shared folder

    return fill_state_dict(manifest(config))


def case(config: str, index: int) -> dict:
    return torch.load(require_reference() / f"{config}.case{index}.pt", weights_only=True)
