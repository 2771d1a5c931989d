"""Helpers for the studio's tests (no tests here): a real project on a temporary SQLite store with
real synthetic images and a real model, served by a real Gradio server on a free port."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from app.config import StudioConfig
from app.demo import DEMO_WEIGHTS
from app.project import Project
from app.startup import open_project

CLASSES = ["circle", "square", "triangle"]

# Outputs of every studio event as the gradio_client sees them (the State is not sent).
CLIENT_OUTPUTS = ["image_picker", "review_state", "instance_picker", "status", "project_info", "explain_help",
                  "activation", "inspect_image", "instance_table", "instance_info", "explain_heatmap", "explain_info",
                  "explain_layers", "correct_image", "correct_table", "place", "model_picker", "ask_text",
                  "class_picker"]


def model_weights(folder: Path) -> Path:
    """The shipped demo checkpoint when this checkout has it, else a freshly initialised tiny
    FastInst saved with the real checkpoint code (predictions are then arbitrary but real)."""
    if DEMO_WEIGHTS.is_file():
        return DEMO_WEIGHTS
    import torch
    from fastinst import build_model, save_checkpoint
    path = folder / "tiny_init.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(path, build_model("tiny", num_classes=len(CLASSES)), preset="tiny", class_names=CLASSES)
    return path


def make_project(folder: Path, num_images: int = 3, size: tuple[int, int] = (240, 320), seed: int = 7) -> Project:
    """A studio project over ``num_images`` synthetic shape images in ``folder``."""
    from training.synthetic import make_shapes_dataset
    make_shapes_dataset(folder / "shapes", num_images, seed, size=size)
    config = StudioConfig(images=folder / "shapes" / "images", weights=model_weights(folder),
                          data_dir=folder / "studio-data", device="cpu", cache_size=8)
    return open_project(config, log=lambda message: None)


def crowded_project(folder: Path, count: int, predicted: int, objects: int, size: tuple[int, int]) -> Project:
    """A project of ``count`` synthetic images of ``size`` (H, W) with ``objects`` shapes each;
    the first ``predicted`` get their ground-truth masks stored as the current model's proposals
    (scores drawn uniformly from 0.05-1 with a fixed seed), the others are not predicted."""
    import json
    import numpy as np
    from pycocotools import mask as mask_utils
    from training.synthetic import SceneConfig, make_shapes_dataset
    scene = SceneConfig(min_objects=objects, max_objects=objects, min_radius=0.03, max_radius=0.07,
                        min_visible=0.3)
    gt = json.loads(make_shapes_dataset(folder / "shapes", count, 5, size=size, config=scene).read_text())
    project = open_project(StudioConfig(images=folder / "shapes" / "images", weights=model_weights(folder),
                                        data_dir=folder / "data", device="cpu"), log=lambda m: None)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    files = {im["id"]: Path(im["file_name"]).name for im in gt["images"]}
    rng = np.random.default_rng(0)
    for entry in project.images()[:predicted]:
        gid = next(k for k, f in files.items() if f == Path(entry.file_name).name)
        anns = [a for a in gt["annotations"] if a["image_id"] == gid]
        masks = []
        for a in anns:
            seg = a["segmentation"]
            rle = mask_utils.frPyObjects(seg, *size) if isinstance(seg, list) else seg
            rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
            masks.append(mask_utils.decode(rle).astype(bool))
        cats = [project.category_id(names[a["category_id"]]) for a in anns]
        scores = rng.uniform(0.05, 1.0, len(anns)).round(3).tolist()
        project.store.replace_predictions(entry.id, np.stack(masks), cats, scores, project.model.version,
                                          entry.revision)
    return project


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(project: Project) -> Iterator[str]:
    """Serve the studio for ``project`` on 127.0.0.1; yields its URL, closes it afterwards."""
    from app.ui import start
    demo = start(project, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield demo.local_url
    finally:
        demo.close()


def canvas_image(value: str) -> Path:
    """The image file an annotation canvas value (``app.canvas.value``) draws."""
    import json
    return Path(json.loads(value)["image"].removeprefix("gradio_api/file="))


def as_dict(result: tuple) -> dict:
    """A client result tuple keyed by output name."""
    return dict(zip(CLIENT_OUTPUTS, result))
