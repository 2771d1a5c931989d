"""The ``python -m training.train`` command line: train FastInst on a COCO-format dataset.

One process:     python -m training.train --train-json a.json --image-root imgs/ --output-dir runs/x
Several GPUs:    torchrun --nproc_per_node=8 -m training.train ... (NCCL; gloo on CPU)
Several nodes:   torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \
                     -m training.train ...
Running the same command again with the same --output-dir resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from annotations.errors import AnnotationError
from fastinst import PRESETS, FastInstError

from .augment import AugmentConfig
from .losses import LossConfig
from .trainer import TrainConfig, train

AUG, LOSS = AugmentConfig(), LossConfig()


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--train-json", required=True, help="COCO instance annotation file to train on (polygons or RLE)")
    g.add_argument("--image-root", required=True, help="folder that the train JSON's file_name entries are relative to")
    g.add_argument("--val-json", default=None, help="COCO annotation file for mask-AP evaluation (optional)")
    g.add_argument("--val-image-root", default=None, help="image folder of --val-json (default: --image-root)")
    g.add_argument("--keep-empty-images", action=argparse.BooleanOptionalAction, default=True,
                   help="train on images without (non-crowd) objects as negatives (default: yes; the official COCO "
                        "recipe drops them: use --no-keep-empty-images to reproduce it)")
    g.add_argument("--num-workers", type=int, default=2, help="data-loading worker processes per training process (default 2)")
    g.add_argument("--strict", action="store_true", help="refuse a COCO file with any fault instead of repairing what "
                   "can be repaired (every repair and refusal is printed either way)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="architecture preset (default tiny)")
    g.add_argument("--init-weights", default=None,
                   help="start from this checkpoint of ours (.safetensors); classes are matched by name")


def add_schedule_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation (official defaults)")
    g.add_argument("--max-iters", type=int, default=None, help="iterations to train (default: from --epochs)")
    g.add_argument("--epochs", type=float, default=50.0,
                   help="passes over the training images when --max-iters is not given (official: 50)")
    g.add_argument("--batch-size", type=int, default=16, help="images per iteration over all processes (official 16)")
    g.add_argument("--lr", type=float, default=1e-4, help="AdamW base learning rate (official 1e-4)")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay; none on norms/embeddings (0.05)")
    g.add_argument("--backbone-lr-multiplier", type=float, default=0.1,
                   help="backbone learning rate factor (official 0.1 for an ImageNet-initialised backbone)")
    g.add_argument("--lr-steps", type=float, nargs="*", default=list(TrainConfig.lr_steps),
                   help="fractions of max-iters where the rate is multiplied by --lr-gamma (official 0.8889 0.9630)")
    g.add_argument("--lr-gamma", type=float, default=0.1, help="learning-rate factor at each step (0.1)")
    g.add_argument("--warmup-iters", type=int, default=10, help="linear warm-up iterations (official 10, with factor 1.0)")
    g.add_argument("--warmup-factor", type=float, default=1.0, help="starting factor of the warm-up (1.0 = no warm-up)")
    g.add_argument("--clip-grad-norm", type=float, default=None, help="clip the global gradient norm to this value (off)")
    g.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision: auto = bf16 on GPUs that support it, else fp16; off on CPU")


def add_augment_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("augmentation (default: the official recipe, scaled to the preset's test size: "
                             "unchanged for the 576/640 presets, x min_size/640 for smaller ones)")
    g.add_argument("--aug-min-sizes", type=int, nargs="+", default=None,
                   help=f"shortest-edge sizes drawn for the final resize (official {' '.join(map(str, AUG.min_sizes))})")
    g.add_argument("--aug-max-size", type=int, default=None, help=f"longest-edge cap of that resize (official {AUG.max_size})")
    g.add_argument("--aug-crop-prob", type=float, default=None, help=f"probability of the crop branch (official {AUG.crop_prob})")
    g.add_argument("--aug-crop-resize-sizes", type=int, nargs="+", default=None,
                   help="shortest-edge sizes before cropping (official 400 500 600)")
    g.add_argument("--aug-crop-range", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="crop height and width are each drawn from this range (official 384 600)")
    g.add_argument("--aug-flip-prob", type=float, default=None, help=f"horizontal flip probability (official {AUG.flip_prob})")
    g.add_argument("--aug-scale", type=float, default=None,
                   help="multiply every augmentation size by this (e.g. 0.2 for 128-pixel images); "
                        "giving any --aug-* option turns the automatic scaling off")


def add_loss_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("losses and matching (official defaults)")
    g.add_argument("--class-weight", type=float, default=LOSS.class_weight, help="class CE weight and matching cost (2)")
    g.add_argument("--mask-weight", type=float, default=LOSS.mask_weight, help="point-sampled mask BCE weight and cost (5)")
    g.add_argument("--dice-weight", type=float, default=LOSS.dice_weight, help="dice weight and cost (5)")
    g.add_argument("--proposal-weight", type=float, default=LOSS.proposal_weight, help="IA-head proposal CE weight (20)")
    g.add_argument("--location-weight", type=float, default=LOSS.location_weight,
                   help="matching cost of a query located outside the object (1000)")
    g.add_argument("--no-object-weight", type=float, default=LOSS.no_object_weight, help="CE weight of the no-object class (0.1)")
    g.add_argument("--num-points", type=int, default=LOSS.num_points, help="points per mask for the mask losses (12544)")
    g.add_argument("--oversample-ratio", type=float, default=LOSS.oversample_ratio, help="candidate points per point (3)")
    g.add_argument("--importance-ratio", type=float, default=LOSS.importance_ratio,
                   help="share of points picked where the prediction is uncertain (0.75)")
    g.add_argument("--deep-supervision", action=argparse.BooleanOptionalAction, default=True,
                   help="supervise every decoder layer and the guided pass (default yes)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--output-dir", default="runs/train", help="checkpoints, metrics.jsonl and the final model go here")
    g.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu or cuda")
    g.add_argument("--seed", type=int, default=42, help="seed of weights, data order and augmentation (42)")
    g.add_argument("--checkpoint-period", type=int, default=1000, help="save a resume checkpoint every N iterations")
    g.add_argument("--eval-period", type=int, default=0, help="evaluate on --val-json every N iterations (0: only at the end)")
    g.add_argument("--eval-batch-size", type=int, default=4, help="images per forward pass during evaluation")
    g.add_argument("--log-period", type=int, default=20, help="write a metrics.jsonl line every N iterations")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch per process (default: PyTorch's)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUTPUT_DIR/last_checkpoint.pt when it exists (default yes)")
    g.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True, help="show a tqdm bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for add in (add_data_args, add_model_args, add_schedule_args, add_augment_args, add_loss_args, add_run_args):
        add(p)
    return p


def augment_from_args(a: argparse.Namespace) -> Optional[AugmentConfig]:
    """None (automatic) unless some --aug-* option was given; then the official recipe with the
    given fields replaced, scaled by --aug-scale."""
    given = {"min_sizes": a.aug_min_sizes, "max_size": a.aug_max_size, "crop_prob": a.aug_crop_prob,
             "crop_resize_sizes": a.aug_crop_resize_sizes, "crop_range": a.aug_crop_range, "flip_prob": a.aug_flip_prob}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}
    if not given and a.aug_scale is None:
        return None
    augment = AugmentConfig(**given)
    return augment.scaled(a.aug_scale) if a.aug_scale else augment


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """Map parsed arguments to a :class:`TrainConfig`."""
    augment = augment_from_args(a)
    loss = LossConfig(class_weight=a.class_weight, mask_weight=a.mask_weight, dice_weight=a.dice_weight,
                      proposal_weight=a.proposal_weight, location_weight=a.location_weight,
                      no_object_weight=a.no_object_weight, num_points=a.num_points, oversample_ratio=a.oversample_ratio,
                      importance_ratio=a.importance_ratio, deep_supervision=a.deep_supervision)
    return TrainConfig(
        train_json=a.train_json, image_root=a.image_root, val_json=a.val_json, val_image_root=a.val_image_root,
        preset=a.preset, init_weights=a.init_weights, output_dir=a.output_dir, max_iters=a.max_iters, epochs=a.epochs,
        batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay, backbone_lr_multiplier=a.backbone_lr_multiplier,
        lr_steps=tuple(a.lr_steps), lr_gamma=a.lr_gamma, warmup_iters=a.warmup_iters, warmup_factor=a.warmup_factor,
        clip_grad_norm=a.clip_grad_norm, amp=a.amp, device=a.device, seed=a.seed, keep_empty_images=a.keep_empty_images,
        augment=augment, loss=loss, checkpoint_period=a.checkpoint_period, eval_period=a.eval_period,
        eval_batch_size=a.eval_batch_size, log_period=a.log_period, num_workers=a.num_workers, num_threads=a.threads,
        resume=a.resume, progress_bar=a.progress_bar, strict=a.strict)


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    try:
        path = train(config)
    except (AnnotationError, FastInstError) as error:  # bad data or weights: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"final model: {path}")
    return 0
