"""The demo project: synthetic shapes the demo model has never seen, and the shipped demo model.

The images are regenerated on first start with ``training.synthetic`` (every image is a pure
function of seed and index, so nothing but the code needs to ship). Their ground truth is written
next to them (``annotations.json``) but not imported: the studio shows the model's predictions for
a person to review; the ground truth is what the demo's accuracy is measured against.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

DEMO_WEIGHTS = Path(__file__).resolve().parent / "assets" / "demo_model.safetensors"
DEMO_SEED = 20230           # held out: the demo model is trained on other seeds
DEMO_NUM_IMAGES = 24
DEMO_SIZE = (480, 640)      # (H, W)

Log = Callable[[str], None]


def demo_dataset(project_dir: Path, log: Log = print) -> tuple[Path, Path]:
    """Generate the demo images (once) under ``project_dir/dataset``; returns (image folder,
    ground-truth COCO JSON)."""
    from training.synthetic import make_shapes_dataset

    out = Path(project_dir) / "dataset"
    gt = out / "annotations.json"
    if not gt.is_file():
        log(f"generating {DEMO_NUM_IMAGES} demo images ({DEMO_SIZE[1]}x{DEMO_SIZE[0]}, seed {DEMO_SEED}) "
            f"in {out} ...")
        gt = make_shapes_dataset(out, DEMO_NUM_IMAGES, DEMO_SEED, size=DEMO_SIZE)
    return out / "images", gt


def demo_weights() -> Path:
    """The shipped demo checkpoint; a clear error when the file is missing from this checkout."""
    if not DEMO_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the demo model {DEMO_WEIGHTS} is missing from this checkout; pass --weights FILE "
            f"or restore app/assets from the repository")
    return DEMO_WEIGHTS
