"""``python -m training.make_demo_model``: the studio's demo model, trained from scratch on CPU.

Generates the demo's synthetic shapes (train and held-out split, deterministic from
``DEMO_DATA``'s seeds), trains the ``tiny`` preset with :func:`demo_config`, measures mask AP on
the held-out split with pycocotools and writes an fp16 checkpoint (``fastinst.save_checkpoint``)
whose provenance records the generator seeds, the training config and the AP.

    python -m training.make_demo_model --out app/assets/demo_model.safetensors

The app regenerates the same dataset with :func:`make_demo_dataset` (same seeds, same bytes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from fastinst import load_checkpoint, save_checkpoint

from .augment import AugmentConfig
from .evaluate import evaluate
from .losses import LossConfig
from .synthetic import SceneConfig, dataset_info, make_shapes_dataset
from .trainer import TrainConfig, train


@dataclass(frozen=True)
class DemoData:
    """The demo dataset: sizes and generator seeds of its two splits."""

    size: Tuple[int, int] = (128, 128)
    train_images: int = 2000
    train_seed: int = 2023
    val_images: int = 200
    val_seed: int = 2024


DEMO_DATA = DemoData()


def make_demo_dataset(root: str | Path, data: DemoData = DEMO_DATA) -> Tuple[Path, Path]:
    """Write ``root/train`` and ``root/val`` (COCO JSON + PNGs); returns the two JSON paths.
    A split already there is reused when its recorded generator settings are the current ones."""
    root = Path(root)
    paths = []
    for split, count, seed in (("train", data.train_images, data.train_seed), ("val", data.val_images, data.val_seed)):
        json_path = root / split / "annotations.json"
        wanted = dataset_info(count, seed, data.size, SceneConfig())
        if not (json_path.is_file() and json.loads(json_path.read_text()).get("info") == wanted):
            json_path = make_shapes_dataset(root / split, count, seed=seed, size=data.size)
        paths.append(json_path)
    return paths[0], paths[1]


def demo_config(train_json: Path, val_json: Optional[Path], output_dir: Path, *, max_iters: int = 2000,
                threads: Optional[int] = 1, size: int = DEMO_DATA.size[0], eval_period: int = 0) -> TrainConfig:
    """The from-scratch recipe for the tiny preset on small synthetic images.

    Differences from the official COCO recipe, all because the model starts from random weights
    on 128-pixel images on a CPU: lr 5e-4 and no backbone lr reduction (nothing pretrained to
    protect), batch 8, the augmentation sizes scaled by ``size / 640``, and 1,024 points per mask
    (the stride-8 masks have 256 cells, not ~8,500).
    """
    return TrainConfig(
        train_json=str(train_json), image_root=str(train_json.parent / "images"),
        val_json=str(val_json) if val_json else None, val_image_root=str(val_json.parent / "images") if val_json else None,
        preset="tiny", output_dir=str(output_dir), max_iters=max_iters, batch_size=8, lr=5e-4,
        backbone_lr_multiplier=1.0, augment=AugmentConfig().scaled(size / 640), loss=LossConfig(num_points=1024),
        num_workers=0, num_threads=threads, log_period=50, checkpoint_period=250, eval_period=eval_period,
        eval_batch_size=8, seed=0, keep_empty_images=True,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.make_demo_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="app/assets/demo_model.safetensors", help="where to write the fp16 checkpoint")
    p.add_argument("--data-dir", default="data/demo-shapes", help="where the synthetic dataset is generated")
    p.add_argument("--work-dir", default="runs/demo-model", help="training output (resume checkpoint, metrics)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations (default 2000)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch CPU threads (default 1: on a shared 2-core machine more threads run slower)")
    p.add_argument("--device", default="cpu", help="cpu (default, reproducible) or auto/cuda")
    p.add_argument("--eval-period", type=int, default=1000, help="held-out mask AP every N iterations (0: only at the end)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    train_json, val_json = make_demo_dataset(args.data_dir)
    config = demo_config(train_json, val_json, Path(args.work_dir), max_iters=args.iters, threads=args.threads,
                         eval_period=args.eval_period)
    config.device = args.device
    final = train(config)
    model, info = load_checkpoint(final)
    metrics = info.metrics or evaluate(final, val_json, val_json.parent / "images", device=args.device, progress=False)
    dataset = {"generator": "training.synthetic.make_shapes_dataset", **asdict(DEMO_DATA), "scene": asdict(SceneConfig())}
    provenance = {**info.provenance, "dataset": dataset,
                  "command": "python -m training.make_demo_model " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "minutes": round((time.perf_counter() - start) / 60, 2)}
    out = save_checkpoint(args.out, model, preset=info.preset, class_names=info.class_names, provenance=provenance,
                          metrics=metrics, half=True)
    print(json.dumps({"checkpoint": str(out), "segm/AP": metrics["segm/AP"], "minutes": provenance["minutes"],
                      "size_mb": round(out.stat().st_size / 2**20, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
