"""Hungarian matching of one stage's queries to ground-truth objects (QueryInst / Sparse R-CNN).

mmdetection ``HungarianAssigner`` with the QueryInst costs (``queryinst_r50_fpn_1x_coco.py``):
``2 * focal cost + 5 * L1 of boxes normalised by the image size + 2 * (-GIoU)``, solved with
``scipy.optimize.linear_sum_assignment``; every stage is matched on its own refined boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import generalized_box_iou

Match = Tuple[Tensor, Tensor]  # (query indices (M,), target indices (M,)) int64


def focal_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-12) -> Tensor:
    """``(N,K)`` class logits, ``(G,)`` labels -> ``(N,G)``: the focal loss of calling each query
    its target's class minus that of not doing so (mmdetection ``FocalLossCost``)."""
    p = logits.sigmoid()
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return pos[:, labels] - neg[:, labels]


@dataclass(frozen=True)
class HungarianMatcher:
    """Cost weights: class (focal) 2, box L1 5, GIoU 2 (the official values)."""

    class_weight: float = 2.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0

    @torch.no_grad()
    def __call__(self, class_logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor,
                 image_size: Tuple[int, int]) -> Match:
        """One image: ``class_logits (N,K)``, ``boxes (N,4)`` xyxy pixels, ``labels (G,)``,
        ``target_boxes (G,4)`` xyxy pixels, ``image_size (h, w)`` unpadded -> matched pairs."""
        if labels.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty
        h, w = image_size
        scale = boxes.new_tensor([w, h, w, h])
        cost = (self.class_weight * focal_cost(class_logits.float(), labels)
                + self.l1_weight * torch.cdist(boxes.float() / scale, target_boxes.float() / scale, p=1)
                - self.giou_weight * generalized_box_iou(boxes.float(), target_boxes.float()))
        rows, cols = linear_sum_assignment(cost.cpu().double().numpy())
        return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)
