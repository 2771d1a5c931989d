"""One-click fine-tuning settings: schedule and learning rate from the number of images and the
model, early stopping on validation AP, the best checkpoint kept.

The rule: small sets need many passes, large ones fewer;
``epochs = clamp(600 / sqrt(images), 24, 120)``, ``iterations = clamp(epochs * images / batch,
60, 3000)``. The validation AP is measured about ten times per run; four evaluations without a
better AP stop it. The ``tiny`` preset (trained from scratch on 128-pixel images) fine-tunes at
lr 2e-4 without backbone lr reduction, with 1,024 points; the released configs use the official
AdamW lr 1e-4 with the backbone at x0.1. Every run warms the rate up linearly over its first
tenth (the first steps of a good model at full rate wrecked it: 83 -> 60 held-out AP on the
demo's own domain) and pastes objects of another corrected image into half the training samples
(copy-paste, Ghiasi et al. 2021: +2.3 [+0.7, +4.0] mask AP on the new-class shift). A moving
average of the weights (``TrainConfig.ema_decay`` 0.95) was measured and is not used: -1.7
[-2.9, -0.6] on small cluttered objects, +0.7 [-0.4, +1.9] on the new class
(``benchmarks/bench_finetune.py``, figures in the README).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict

from .losses import LossConfig

MIN_ITERS, MAX_ITERS = 60, 3000
COPY_PASTE = 0.5      # share of training samples that get another corrected image's objects


@dataclass(frozen=True)
class FineTuneDefaults:
    """The settings one click uses (and the folded-away form shows)."""

    max_iters: int
    batch_size: int
    lr: float
    backbone_lr_multiplier: float
    eval_period: int
    early_stop_patience: int
    num_points: int
    epochs: float

    def describe(self) -> str:
        """One line for the person: what will run and why."""
        return (f"{self.max_iters} iterations of {self.batch_size} images (~{self.epochs:.0f} passes), lr {self.lr:g} "
                f"after a warm-up over the first tenth, copy-paste; validation AP every "
                f"{self.eval_period} iterations, stop after {self.early_stop_patience} without improvement, "
                f"best model kept")

    def train_fields(self) -> Dict[str, object]:
        """The :class:`training.trainer.TrainConfig` fields of the recipe (the studio's one click
        and ``benchmarks/bench_finetune.py`` both build their config from these)."""
        return dict(max_iters=self.max_iters, batch_size=self.batch_size, lr=self.lr,
                    backbone_lr_multiplier=self.backbone_lr_multiplier,
                    warmup_iters=max(1, self.max_iters // 10), warmup_factor=0.0,
                    copy_paste=COPY_PASTE,
                    checkpoint_period=self.eval_period, eval_period=self.eval_period, log_period=self.eval_period,
                    early_stop_patience=self.early_stop_patience, loss=LossConfig(num_points=self.num_points))


# Each recipe change kept by ablation (benchmarks/bench_finetune.py), and the TrainConfig fields
# that undo it: the benchmark's "without" rows.
ABLATIONS: Dict[str, Dict[str, object]] = {
    "copy-paste": {"copy_paste": 0.0},
    "low-lr-warm-up": {"lr": 5e-4, "warmup_iters": 0},   # the tiny preset's earlier rate, no warm-up
}


def finetune_defaults(num_train_images: int, preset: str) -> FineTuneDefaults:
    """Settings for fine-tuning ``preset`` on ``num_train_images`` (>= 1) images.

    Raises:
        ValueError: no training images.
    """
    if num_train_images < 1:
        raise ValueError("fine-tuning needs at least one training image")
    tiny = preset == "tiny"
    batch = 8 if tiny else 4
    epochs = min(max(600.0 / math.sqrt(num_train_images), 24.0), 120.0)
    iters = int(min(max(math.ceil(epochs * num_train_images / batch), MIN_ITERS), MAX_ITERS))
    return FineTuneDefaults(max_iters=iters, batch_size=batch, lr=2e-4 if tiny else 1e-4,
                            backbone_lr_multiplier=1.0 if tiny else 0.1, eval_period=max(10, iters // 10),
                            early_stop_patience=4, num_points=1024 if tiny else LossConfig().num_points,
                            epochs=iters * batch / num_train_images)
