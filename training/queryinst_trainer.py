"""Training QueryInst: the official recipe as a :class:`training.trainer.TrainConfig` for the one loop.

Recipe (``queryinst_r50_fpn_1x_coco.py``): AdamW, lr 1e-4, weight decay 1e-4, backbone lr x0.1,
gradient norm clipped at 0.1, linear warm-up from 0.001 over 1000 iterations, lr x0.1 at 8/12 and
11/12 of training, keep-ratio resize to the test size and random horizontal flip; losses of
:mod:`queryinst.criterion` (every stage). The loop (:mod:`training.trainer`: resume, DDP,
evaluation, best model, the studio's fine-tuning worker) is FastInst's; as the official config,
every parameter is decayed (``decay_norm_and_embedding``; FastInst leaves normalisation layers and
embeddings out).
The ``tiny`` preset trains from scratch (backbone lr x1, lr 2e-4, clip 1.0, shorter warm-up; see
:func:`tiny_config`).

    python -m training.queryinst_trainer --train-json train.json --image-root images/ --val-json val.json \\
        --val-image-root val/ --preset tiny --max-iters 3000 --output-dir runs/queryinst-tiny
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .trainer import TrainConfig, train

OFFICIAL = dict(model="queryinst", lr=1e-4, weight_decay=1e-4, decay_norm_and_embedding=True,
                backbone_lr_multiplier=0.1, clip_grad_norm=0.1,
                warmup_iters=1000, warmup_factor=0.001, lr_steps=(8 / 12, 11 / 12), lr_gamma=0.1, batch_size=16)
TINY = {**OFFICIAL, "preset": "tiny", "lr": 2e-4, "backbone_lr_multiplier": 1.0, "clip_grad_norm": 1.0,
        "warmup_iters": 100, "batch_size": 8}


def official_config(**kwargs) -> TrainConfig:
    """The official QueryInst recipe (``kwargs`` override it, e.g. ``preset``, ``max_iters``)."""
    return TrainConfig(**{**OFFICIAL, **kwargs})


def tiny_config(**kwargs) -> TrainConfig:
    """The ``tiny`` preset trained from scratch on a CPU: the official recipe with the backbone at the
    full rate, lr 2e-4, gradient clip 1.0 and 100 warm-up iterations (a random-init backbone needs
    the rate, and 0.1 clipping stalls it)."""
    return TrainConfig(**{**TINY, **kwargs})


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.queryinst_trainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-json", required=True)
    p.add_argument("--image-root", required=True)
    p.add_argument("--val-json")
    p.add_argument("--val-image-root")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--init-weights", help="our QueryInst checkpoint or a released .pth (tensors of another "
                   "class count keep their initialisation)")
    p.add_argument("--max-iters", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=None, help="images per iteration (default: 8 tiny, 16 official)")
    p.add_argument("--output-dir", default="runs/queryinst")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    make = tiny_config if a.preset == "tiny" else official_config
    extra = {"batch_size": a.batch_size} if a.batch_size else {}
    config = make(train_json=a.train_json, image_root=a.image_root, val_json=a.val_json,
                  val_image_root=a.val_image_root, preset=a.preset, init_weights=a.init_weights,
                  max_iters=a.max_iters, output_dir=a.output_dir, device=a.device, seed=a.seed, **extra)
    path = train(config)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
