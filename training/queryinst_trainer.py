"""Training QueryInst with the official recipe, on the project's COCO data and evaluation.

Recipe (``queryinst_r50_fpn_1x_coco.py``): AdamW, lr 1e-4, weight decay 1e-4 on every parameter,
backbone lr x0.1, gradient norm clipped at 0.1, linear warm-up from 0.001 over 1000 iterations,
lr x0.1 at 8/12 and 11/12 of training, random horizontal flip; losses of :mod:`queryinst.criterion`.
The ``tiny`` preset trains from scratch (backbone lr x1, shorter warm-up; see :func:`tiny_config`).

    python -m training.queryinst_trainer --train-json train.json --image-root images/ --val-json val.json \\
        --val-image-root val/ --preset tiny --max-iters 3000 --output-dir runs/queryinst-tiny
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from fastinst.predictor import resolve_device
from queryinst.checkpoint import load_checkpoint, save_checkpoint
from queryinst.criterion import QueryInstCriterion, boxes_from_masks
from queryinst.model import QueryInst
from queryinst.official import load_matching
from queryinst.presets import build_model
from queryinst.transforms import keep_ratio_size

from .augment import resize
from .data import CocoInstances
from .evaluate import evaluate_model
from .optim import lr_factor


@dataclass
class TrainConfig:
    """One training run. ``steps`` default to 8/12 and 11/12 of ``max_iters`` (the 1x schedule)."""

    train_json: str
    image_root: str
    output_dir: str = "runs/queryinst"
    val_json: Optional[str] = None
    val_image_root: Optional[str] = None
    preset: str = "tiny"
    init_weights: Optional[str] = None  # one of our QueryInst checkpoints; class layers of another count are re-initialised
    max_iters: int = 3000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    backbone_lr_multiplier: float = 0.1
    clip_grad_norm: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    steps: Tuple[int, ...] = ()
    device: str = "auto"
    seed: int = 0
    eval_period: int = 0  # 0: only at the end


def tiny_config(**kwargs) -> TrainConfig:
    """The settings of the ``tiny`` preset trained from scratch on a CPU: the official recipe with the
    backbone at the full rate, lr 2e-4, gradient clip 1.0 and 100 warm-up iterations (a random-init
    backbone needs the rate, and 0.1 clipping stalls it)."""
    base = dict(preset="tiny", lr=2e-4, backbone_lr_multiplier=1.0, clip_grad_norm=1.0, warmup_iters=100)
    return TrainConfig(**{**base, **kwargs})


def build_optimizer(model: QueryInst, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the backbone group at ``lr * backbone_lr_multiplier``; weight decay everywhere
    (mmdetection ``paramwise_cfg`` of the QueryInst configs)."""
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [{"params": backbone, "lr": config.lr * config.backbone_lr_multiplier}, {"params": rest, "lr": config.lr}]
    for g in groups:
        g["initial_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def prepare(sample: dict, model: QueryInst, rng: np.random.Generator) -> Tuple[torch.Tensor, dict]:
    """Random flip + the keep-ratio resize of the test pipeline -> (image (3,h,w) uint8, target)."""
    image, masks = sample["image"], sample["masks"]
    if rng.random() < 0.5:
        image, masks = image.flip(-1), masks.flip(-1)
    spec = model.input_spec
    shape = keep_ratio_size(image.shape[1], image.shape[2], spec.min_size, spec.max_size)
    image, masks = resize(image, masks, shape)
    keep = masks.flatten(1).any(1) if masks.shape[0] else torch.zeros(0, dtype=torch.bool)
    masks = masks[keep]
    return image, {"labels": sample["labels"][keep], "masks": masks, "boxes": boxes_from_masks(masks)}


def train(config: TrainConfig, progress: Optional[Callable[[int, int, Dict[str, float]], None]] = None,
          should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Train; write ``model_final.safetensors`` (with the held-out metrics) in ``output_dir``; return its path."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    data = CocoInstances(config.train_json, config.image_root, keep_empty=True)
    model = build_model(config.preset, num_classes=len(data.class_names))
    if config.init_weights:
        source, _ = load_checkpoint(config.init_weights)
        load_matching(model, source.state_dict(), Path(config.init_weights).name)
    model.to(device).train()
    optimizer = build_optimizer(model, config)
    steps = config.steps or (config.max_iters * 8 // 12, config.max_iters * 11 // 12)
    criterion = QueryInstCriterion()
    rng = np.random.default_rng(config.seed)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history: List[Dict[str, float]] = []
    start = time.time()
    bar = tqdm(range(config.max_iters), desc="train queryinst", unit="it")
    for it in bar:
        if should_stop():
            break
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * lr_factor(it, steps, 0.1, config.warmup_iters, config.warmup_factor)
        picks = rng.integers(0, len(data), size=config.batch_size)
        images, targets = zip(*(prepare(data.load(int(i)), model, rng) for i in picks))
        batch, sizes = model.preprocess(list(images))
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        out = model(batch, sizes, mask_stages="none")
        losses = criterion(model, out, list(targets), sizes)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.clip_grad_norm)
        optimizer.step()
        record = {"iteration": it + 1, "total": losses["total"].item()}
        history.append(record)
        bar.set_postfix(loss=f"{record['total']:.3f}")
        if progress:
            progress(it + 1, config.max_iters, record)
        if config.eval_period and config.val_json and (it + 1) % config.eval_period == 0 and it + 1 < config.max_iters:
            metrics = evaluate_model(model, data.class_names, config.val_json, config.val_image_root or config.image_root,
                                     progress=False)
            bar.write(f"iteration {it + 1}: mask AP {metrics['segm/AP']:.1f}")
            model.train()
    metrics: Dict[str, object] = {}
    if config.val_json:
        metrics = evaluate_model(model, data.class_names, config.val_json, config.val_image_root or config.image_root,
                                 progress=False)
    provenance = {"config": {k: v for k, v in asdict(config).items()}, "train_seconds": round(time.time() - start, 1),
                  "iterations": len(history), "final_loss": history[-1]["total"] if history else None}
    path = save_checkpoint(out_dir / "model_final.safetensors", model.cpu().eval(), preset=config.preset,
                           class_names=data.class_names, provenance=provenance, metrics=metrics)
    (out_dir / "history.json").write_text(json.dumps(history))
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.queryinst_trainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-json", required=True)
    p.add_argument("--image-root", required=True)
    p.add_argument("--val-json")
    p.add_argument("--val-image-root")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--init-weights")
    p.add_argument("--max-iters", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output-dir", default="runs/queryinst")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    make = tiny_config if a.preset == "tiny" else TrainConfig
    config = make(train_json=a.train_json, image_root=a.image_root, val_json=a.val_json, val_image_root=a.val_image_root,
                  preset=a.preset, init_weights=a.init_weights, max_iters=a.max_iters, batch_size=a.batch_size,
                  output_dir=a.output_dir, device=a.device, seed=a.seed)
    path = train(config)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
