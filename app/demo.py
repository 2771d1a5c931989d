"""The demo project: the held-out split of the demo model's synthetic shapes, and the shipped
demo model (made by ``python -m training.make_demo_model``).

The images are regenerated on first start with ``training.synthetic`` exactly as the demo model's
evaluation split was (same generator, seed and size, so the same bytes): the mask AP recorded in
the checkpoint's metrics is the AP on these very images. Their ground truth is written next to
them (``annotations.json``) but not imported: the studio shows the model's predictions for a
person to review.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

DEMO_WEIGHTS = Path(__file__).resolve().parent / "assets" / "demo_model.safetensors"

Log = Callable[[str], None]


def demo_split() -> tuple[int, int, tuple[int, int]]:
    """(number of images, seed, (H, W)) of the demo model's held-out split."""
    from training.make_demo_model import DEMO_DATA
    return DEMO_DATA.val_images, DEMO_DATA.val_seed, DEMO_DATA.size


def demo_dataset(project_dir: Path, log: Log = print) -> tuple[Path, Path]:
    """Generate the demo images (once) under ``project_dir/dataset``; returns (image folder,
    ground-truth COCO JSON)."""
    from training.synthetic import make_shapes_dataset

    out = Path(project_dir) / "dataset"
    gt = out / "annotations.json"
    if not gt.is_file():
        count, seed, size = demo_split()
        log(f"generating the {count} held-out demo images ({size[1]}x{size[0]}, seed {seed}) in {out} ...")
        gt = make_shapes_dataset(out, count, seed, size=size)
    return out / "images", gt


def demo_weights() -> Path:
    """The shipped demo checkpoint; a clear error when the file is missing from this checkout."""
    if not DEMO_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the demo model {DEMO_WEIGHTS} is missing from this checkout; pass --weights FILE "
            f"or restore app/assets from the repository")
    return DEMO_WEIGHTS
