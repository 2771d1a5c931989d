"""What the one training loop (:mod:`training.trainer`) needs from each model.

A recipe builds the network, loads starting weights, names the augmentation and computes one
batch's losses; the loop around it (data, sampler, optimiser, schedule, AMP, DDP, resume,
evaluation, best model, early stopping, the fine-tuning worker) is the same for every model.

* FastInst: the official recipe of :mod:`training.losses` (IA proposals, Hungarian matching on
  points, CE, mask BCE and dice, the GT-mask-guided pass), augmentation of
  :func:`training.augment.augment_for`.
* QueryInst: :class:`queryinst.criterion.QueryInstCriterion` on every stage (focal, L1, GIoU,
  dice); the official 1x pipeline's augmentation (keep-ratio resize to the test size, flip;
  ``queryinst_r50_fpn_1x_coco.py``).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .augment import AugmentConfig, augment_for
from .data import Sample, pad_targets
from .losses import LossConfig


class FastInstRecipe:
    """FastInst's parts of training."""

    model = "fastinst"

    def build(self, preset: str, num_classes: int) -> nn.Module:
        from fastinst import build_model
        return build_model(preset, num_classes=num_classes)

    def load_initial_weights(self, model: nn.Module, path: str | Path, preset: str,
                             class_names: Sequence[str]) -> Tuple[str, List[str]]:
        """See :func:`training.init_weights.load_initial_weights`."""
        from .init_weights import load_initial_weights
        return load_initial_weights(model, path, preset, class_names)

    def augment(self, model: nn.Module) -> AugmentConfig:
        return augment_for(model.input_spec.min_size)

    def criterion(self, num_classes: int, loss: LossConfig) -> object:
        from .losses import FastInstCriterion
        return FastInstCriterion(num_classes, loss)

    def find_unused_parameters(self, loss: LossConfig) -> bool:
        return not loss.deep_supervision

    def losses(self, net: nn.Module, model: nn.Module, criterion: object, samples: Sequence[Sample],
               device: torch.device, dtype: Optional[torch.dtype], num_masks: float,
               clicks: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``{"loss_<part>[_head<j>|_guided<i>|_click]": value}`` of one batch (``net``: ``model`` or its
        DDP wrapper); ``clicks``: the generator of click-aware training's points (None: off)."""
        from fastinst.placed_queries import decode_with_placed

        from .click_queries import click_losses, sample_clicks

        batch, _ = model.preprocess([s["image"] for s in samples])
        targets = pad_targets(samples, tuple(batch.shape[-2:]), device)
        guide = criterion.mask_guide(targets, model.decoder.num_aux_queries)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = net(batch, mask_guide=guide)
            if clicks is not None:
                placed, matches = sample_clicks(targets, tuple(outputs["features"][1].shape[-2:]), clicks)
                clicked = decode_with_placed(model.decoder, outputs["features"], placed.to(device))
        losses = criterion(outputs, targets, num_masks)
        if clicks is not None:
            losses.update(click_losses(criterion, clicked, matches, targets, num_masks))
        return losses

    def save(self, path: Path, model: nn.Module, **kwargs) -> Path:
        from fastinst import save_checkpoint
        return save_checkpoint(path, model, **kwargs)


class QueryInstRecipe:
    """QueryInst's parts of training (the official recipe: every stage matched and supervised)."""

    model = "queryinst"
    PART_NAMES = {"cls": "ce", "l1": "l1", "giou": "giou", "mask": "dice"}   # criterion term -> loss_<part>

    def build(self, preset: str, num_classes: int) -> nn.Module:
        from queryinst import build_model
        return build_model(preset, num_classes=num_classes)

    def load_initial_weights(self, model: nn.Module, path: str | Path, preset: str,
                             class_names: Sequence[str]) -> Tuple[str, List[str]]:
        """Our QueryInst checkpoint (strict when preset and classes agree, else every tensor whose name
        and shape fit) or a released mmdetection one (partial). Returns ``(how, notes)`` as FastInst's.

        Raises:
            fastinst.CheckpointError: unreadable file, or another model's.
            ValueError: our checkpoint of another preset.
        """
        from queryinst.checkpoint import load_checkpoint
        from queryinst.official import load_matching, load_official

        path = Path(path)
        if path.suffix.lower() in (".pth", ".pkl"):
            report = load_official(model, path, partial=True)
            how = "partial"
        else:
            source, info = load_checkpoint(path)
            if info.preset != preset:
                raise ValueError(f"{path.name} is a {info.preset!r} checkpoint but the run uses preset {preset!r}")
            if list(info.class_names) == list(class_names):
                model.load_state_dict(source.state_dict(), strict=True)
                return "strict", []
            report = load_matching(model, source.state_dict(), path.name)
            how = "by-name"
        notes = [report.summary()]
        if report.skipped or report.missing:
            warnings.warn(f"{path.name} loaded partially: {notes[0]}", stacklevel=2)
        return how, notes

    def augment(self, model: nn.Module) -> AugmentConfig:
        """Keep-ratio resize into the test size (shortest edge ``min_size``, longest at most
        ``max_size``), then a horizontal flip with probability 0.5."""
        spec = model.input_spec
        return AugmentConfig(min_sizes=(spec.min_size,), max_size=spec.max_size, crop_prob=0.0,
                             crop_resize_sizes=(spec.min_size,), crop_range=(spec.min_size, spec.min_size),
                             flip_prob=0.5)

    def criterion(self, num_classes: int, loss: LossConfig) -> object:
        from queryinst.criterion import QueryInstCriterion
        return QueryInstCriterion()

    def find_unused_parameters(self, loss: LossConfig) -> bool:
        return True   # e.g. the P5 output conv when no RoI reaches that level

    def losses(self, net: nn.Module, model: nn.Module, criterion: object, samples: Sequence[Sample],
               device: torch.device, dtype: Optional[torch.dtype], num_masks: float,
               clicks: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``{"loss_<ce|l1|giou|dice>_stage<s>": value}`` of one batch (the criterion normalises by
        each stage's matched queries, as the official code; ``num_masks`` is not used).

        Raises ValueError for click-aware training (``clicks``), which is FastInst's."""
        if clicks is not None:
            raise ValueError("click-aware training (loss.click_weight > 0) is FastInst's; QueryInst has no placed queries")
        from queryinst.criterion import boxes_from_masks

        batch, sizes = model.preprocess([s["image"] for s in samples])
        targets = [{"labels": s["labels"].to(device), "masks": s["masks"].to(device),
                    "boxes": boxes_from_masks(s["masks"]).to(device)} for s in samples]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(batch, sizes, mask_stages="none")
        terms = criterion(model, out, targets, sizes)
        losses = {}
        for key, value in terms.items():
            if key == "total":
                continue
            stage, term = key.split("/")
            losses[f"loss_{self.PART_NAMES[term]}_{stage}"] = value
        return losses

    def save(self, path: Path, model: nn.Module, **kwargs) -> Path:
        from queryinst.checkpoint import save_checkpoint
        return save_checkpoint(path, model, **kwargs)


RECIPES = {"fastinst": FastInstRecipe(), "queryinst": QueryInstRecipe()}


def recipe_for(model: str) -> FastInstRecipe | QueryInstRecipe:
    """The recipe of ``model`` ("fastinst", "queryinst"); ValueError for another name."""
    if model not in RECIPES:
        raise ValueError(f"no training recipe for model {model!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[model]
