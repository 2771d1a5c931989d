"""QueryInst's training losses, every stage supervised with equal weight (paper section 3.3;
mmdetection ``DIIHead.loss_and_target``, ``DynamicMaskHead.loss_and_target``).

Per stage, after matching that stage's refined boxes to the targets (:mod:`queryinst.matcher`):

- class: sigmoid focal loss (alpha 0.25, gamma 2) over all N x K logits, unmatched queries all
  negative, weight 2;
- box: L1 of the refined boxes normalised by the image size (weight 5) and GIoU loss in pixels
  (weight 2), matched queries only;
- mask: the stage's mask head on the matched queries' ``attn_feats`` and *detached* refined
  boxes, the target class's 28x28 mask against the ground truth cut out by RoIAlign and
  binarised at 0.5; dice loss ``1 - 2 sum(pt) / (sum(p^2) + sum(t^2))`` (eps 1e-5), weight 8.

Every term is summed and divided by the number of matched queries in the batch (at least 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, roi_align, sigmoid_focal_loss

from .matcher import HungarianMatcher, Match
from .model import QueryInst

Target = Dict[str, Tensor]  # {"labels": (G,) int64, "boxes": (G,4) xyxy pixels, "masks": (G,H,W) bool}


@dataclass(frozen=True)
class LossWeights:
    """The official loss weights."""

    classification: float = 2.0
    l1: float = 5.0
    giou: float = 2.0
    mask: float = 8.0


def dice_loss(probs: Tensor, targets: Tensor, eps: float = 1e-5) -> Tensor:
    """``(M,P)`` probabilities and binary targets -> ``(M,)`` mmdetection ``DiceLoss`` (not naive)."""
    inter = (probs * targets).sum(1)
    return 1 - 2 * inter / ((probs * probs).sum(1) + eps + (targets * targets).sum(1) + eps)


def mask_targets(masks: Tensor, boxes: Tensor, size: int) -> Tensor:
    """``(M,H,W)`` masks, ``(M,4)`` boxes -> ``(M,size,size)`` float in {0,1}: each mask cut out in
    its box by RoIAlign (aligned, adaptive sampling) and binarised at 0.5 (mmdetection ``mask_target``)."""
    rois = torch.cat([torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    cut = roi_align(masks[:, None].to(boxes.dtype), rois, size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return (cut[:, 0] >= 0.5).to(boxes.dtype)


def boxes_from_masks(masks: Tensor) -> Tensor:
    """``(G,H,W)`` bool -> ``(G,4)`` tight xyxy boxes in pixels (x1, y1 exclusive); empty masks give zeros."""
    boxes = torch.zeros(masks.shape[0], 4, dtype=torch.float32, device=masks.device)
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if ys.numel():
            boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes


class QueryInstCriterion:
    """Matches and scores every stage; returns ``{"stage{s}/{cls,l1,giou,mask}": loss}`` and ``"total"``."""

    def __init__(self, *, matcher: HungarianMatcher = HungarianMatcher(), weights: LossWeights = LossWeights(),
                 stage_weights: Sequence[float] | None = None) -> None:
        self.matcher = matcher
        self.weights = weights
        self.stage_weights = stage_weights

    def __call__(self, model: QueryInst, out: Dict[str, object], targets: List[Target],
                 image_sizes: Sequence[Tuple[int, int]]) -> Dict[str, Tensor]:
        losses: Dict[str, Tensor] = {}
        features = out["features"]
        total = 0.0
        for s, stage in enumerate(out["stages"]):
            logits, boxes = stage["class_logits"], stage["boxes"]
            matches = [self.matcher(logits[b].detach(), boxes[b].detach(), t["labels"], t["boxes"], image_sizes[b])
                       for b, t in enumerate(targets)]
            terms = self._stage_losses(model, s, features, stage, matches, targets, image_sizes)
            weight = 1.0 if self.stage_weights is None else self.stage_weights[s]
            for name, value in terms.items():
                losses[f"stage{s}/{name}"] = value
                total = total + weight * value
        losses["total"] = total
        return losses

    def _stage_losses(self, model: QueryInst, s: int, features: List[Tensor], stage: Dict[str, Tensor],
                      matches: List[Match], targets: List[Target], image_sizes) -> Dict[str, Tensor]:
        logits, boxes = stage["class_logits"], stage["boxes"]
        device = logits.device
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(matches)]).to(device)
        query_idx = torch.cat([q for q, _ in matches]).to(device)
        labels = torch.cat([t["labels"][g.to(device)] for t, (_, g) in zip(targets, matches)])
        target_boxes = torch.cat([t["boxes"][g.to(device)] for t, (_, g) in zip(targets, matches)])
        num_pos = max(int(query_idx.numel()), 1)

        onehot = torch.zeros_like(logits)
        onehot[batch_idx, query_idx, labels] = 1.0
        w = self.weights
        out = {"cls": w.classification * sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum") / num_pos}
        if query_idx.numel() == 0:
            zero = (boxes.sum() + stage["attn_feats"].sum()) * 0.0  # keep every parameter in the graph
            return {**out, "l1": zero, "giou": zero, "mask": zero}

        pred = boxes[batch_idx, query_idx]
        whwh = torch.tensor([[w_, h_, w_, h_] for h_, w_ in image_sizes], dtype=pred.dtype, device=device)[batch_idx]
        out["l1"] = w.l1 * (pred / whwh - target_boxes / whwh).abs().sum() / num_pos
        out["giou"] = w.giou * generalized_box_iou_loss(pred, target_boxes, reduction="sum") / num_pos

        rois_boxes = pred.detach()
        rois = torch.cat([batch_idx[:, None].to(rois_boxes.dtype), rois_boxes], 1)
        queries = stage["attn_feats"][batch_idx, query_idx]
        mask_logits = model.mask_forward(s, features, rois, queries)
        size = mask_logits.shape[-1]
        probs = mask_logits[torch.arange(labels.numel(), device=device), labels].sigmoid()
        gt = torch.cat([mask_targets(t["masks"][g.to(device)], rois_boxes[batch_idx == b], size)
                        for b, (t, (_, g)) in enumerate(zip(targets, matches)) if g.numel()])
        out["mask"] = w.mask * dice_loss(probs.flatten(1), gt.flatten(1)).sum() / num_pos
        return out
