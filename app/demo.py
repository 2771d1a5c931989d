"""The demo project: the held-out split of the demo model's synthetic shapes, and the shipped
demo model (made by ``python -m training.make_demo_model``).

The images are regenerated on first start with ``training.synthetic`` exactly as the demo model's
evaluation split was (same generator, seed and size, so the same bytes): the mask AP recorded in
the checkpoint's metrics is the AP on these very images. Their ground truth is written next to
them (``annotations.json``) but not imported: the studio shows the model's predictions for a
person to review.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

DEMO_WEIGHTS = Path(__file__).resolve().parent / "assets" / "demo_model.safetensors"

Log = Callable[[str], None]


def demo_split() -> tuple[int, int, tuple[int, int]]:
    """(number of images, seed, (H, W)) of the demo model's held-out split."""
    from training.make_demo_model import DEMO_DATA
    return DEMO_DATA.val_images, DEMO_DATA.val_seed, DEMO_DATA.size


def demo_dataset(project_dir: Path, log: Log = print) -> tuple[Path, Path, bool]:
    """Generate the demo images under ``project_dir/dataset`` unless the ones there were made by
    the same generator settings; returns (image folder, ground-truth COCO JSON, regenerated)."""
    from training import synthetic

    out = Path(project_dir) / "dataset"
    gt = out / "annotations.json"
    count, seed, size = demo_split()
    if gt.is_file() and _generated_with(gt, synthetic, count, seed, size):
        return out / "images", gt, False
    log(f"generating the {count} held-out demo images ({size[1]}x{size[0]}, seed {seed}) in {out} ...")
    gt = synthetic.make_shapes_dataset(out, count, seed, size=size)
    return out / "images", gt, True


def _generated_with(gt: Path, synthetic: Any, count: int, seed: int, size: tuple[int, int]) -> bool:
    """True when the COCO file's ``info`` records the settings the demo needs (all of them, when
    the generator can describe them: its scene settings too)."""
    info = json.loads(gt.read_text()).get("info", {})
    describe = getattr(synthetic, "dataset_info", None)
    if describe is not None:
        return info == describe(count, seed, size, synthetic.SceneConfig())
    return (info.get("seed"), info.get("num_images"), info.get("size")) == (seed, count, list(size))


def demo_weights() -> Path:
    """The shipped demo checkpoint; a clear error when the file is missing from this checkout."""
    if not DEMO_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the demo model {DEMO_WEIGHTS} is missing from this checkout; pass --weights FILE "
            f"or restore app/assets from the repository")
    return DEMO_WEIGHTS
