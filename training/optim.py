"""Optimiser and learning-rate schedule of the official recipe.

AdamW; no weight decay on normalisation layers and embeddings (FastInst, detectron2's
``WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0``; QueryInst's mmdetection config decays every
parameter: ``decay_norm_and_embedding``); the backbone's learning rate is
multiplied by ``backbone_lr_multiplier`` (0.1 for an ImageNet-initialised backbone). The schedule
multiplies the rate by ``gamma`` at each step (detectron2 ``WarmupMultiStepLR``), after an optional
linear warm-up from ``warmup_factor`` (the official config's factor 1.0 makes it a no-op).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

NORM_TYPES: Tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_multiplier: float,
                 decay_norm_and_embedding: bool = False) -> List[Dict[str, object]]:
    """Group trainable parameters by (learning rate, weight decay); each group keeps its names.

    A parameter is a backbone parameter when its module's qualified name starts with ``backbone``;
    it has no weight decay when its module is a normalisation layer or an ``nn.Embedding``, unless
    ``decay_norm_and_embedding``.
    """
    groups: Dict[Tuple[float, float], Dict[str, list]] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            is_backbone = module_name == "backbone" or module_name.startswith("backbone.")
            group_lr = lr * (backbone_lr_multiplier if is_backbone else 1.0)
            no_decay = not decay_norm_and_embedding and isinstance(module, (*NORM_TYPES, nn.Embedding))
            key = (group_lr, 0.0 if no_decay else weight_decay)
            group = groups.setdefault(key, {"params": [], "names": []})
            group["params"].append(param)
            group["names"].append(f"{module_name}.{name}" if module_name else name)
    return [{"params": g["params"], "param_names": g["names"], "lr": k[0], "weight_decay": k[1]}
            for k, g in sorted(groups.items(), key=lambda kv: (-kv[0][0], -kv[0][1]))]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, backbone_lr_multiplier: float,
                    decay_norm_and_embedding: bool = False, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (betas and eps at PyTorch's defaults, as the official code).

    ``fused``: PyTorch's fused AdamW kernel (CPU and CUDA), the same update within float32 rounding
    in one pass over each parameter instead of a handful of elementwise ops per parameter.
    """
    return torch.optim.AdamW(param_groups(model, lr, weight_decay, backbone_lr_multiplier, decay_norm_and_embedding),
                             lr=lr, fused=fused or None)


def lr_factor(iteration: int, steps: Sequence[int], gamma: float, warmup_iters: int, warmup_factor: float) -> float:
    """Multiplier of the base rate at ``iteration`` (0-based): ``gamma ** #(steps <= iteration)``
    times the linear warm-up ``warmup_factor -> 1`` over the first ``warmup_iters`` iterations."""
    factor = gamma ** sum(1 for s in steps if s <= iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, steps: Sequence[int], gamma: float, warmup_iters: int,
                    warmup_factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration ``LambdaLR`` applying :func:`lr_factor` (its state dict holds only numbers)."""
    steps = tuple(int(s) for s in steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, steps, gamma, warmup_iters, warmup_factor))
