"""Instance, semantic and panoptic inference from one image's class and mask logits (official rules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Instances:
    """Instance results of one image, ``N`` = ``topk`` (always, no threshold, as the official code).

    masks: (N,H,W) bool; scores: (N,) = class prob x mask score; classes: (N,) int64;
    query_indices: (N,) int64 query of each instance; class_probs, mask_scores: (N,) the two factors.
    """

    masks: Tensor
    scores: Tensor
    classes: Tensor
    query_indices: Tensor
    class_probs: Tensor
    mask_scores: Tensor


def instance_inference(class_logits: Tensor, mask_logits: Tensor, topk: int = 100) -> Instances:
    """``class_logits (Q,K+1)``, ``mask_logits (Q,H,W)`` at output size -> :class:`Instances`.

    Top-k over all (query, class) pairs of the foreground softmax; mask = sigmoid > 0.5;
    mask score = mean sigmoid inside the mask; score = prob x mask score. Sorted by score.
    """
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = F.softmax(class_logits, dim=-1)[:, :-1].flatten()
    topk = min(topk, probs.numel())
    class_probs, flat = probs.topk(topk, sorted=True)
    query = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat % num_classes
    sig = mask_logits[query].sigmoid()
    masks = sig > 0.5
    mask_scores = (sig * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = class_probs * mask_scores
    order = scores.argsort(descending=True, stable=True)
    return Instances(masks[order], scores[order], classes[order], query[order], class_probs[order],
                     mask_scores[order])


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """``(Q,K+1)``, ``(Q,H,W)`` -> per-class scores ``(K,H,W)``: sum over queries of prob x sigmoid."""
    probs = F.softmax(class_logits, dim=-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


def panoptic_inference(class_logits: Tensor, mask_logits: Tensor, thing_classes: Sequence[int],
                       object_mask_threshold: float = 0.8,
                       overlap_threshold: float = 0.8) -> Tuple[Tensor, List[Dict[str, object]]]:
    """``(Q,K+1)``, ``(Q,H,W)`` -> ``(segment id map (H,W) int32, segments_info)`` (official rules).

    Keep queries whose best class is foreground with prob > ``object_mask_threshold``; assign each
    pixel to the query with the highest prob x sigmoid; drop segments that keep less than
    ``overlap_threshold`` of their own mask; merge stuff segments of the same class.
    """
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    num_classes = class_logits.shape[1] - 1
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    height, width = mask_logits.shape[-2:]
    panoptic = torch.zeros((height, width), dtype=torch.int32, device=mask_logits.device)
    segments: List[Dict[str, object]] = []
    if cur_masks.shape[0] == 0:
        return panoptic, segments
    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    things = set(int(c) for c in thing_classes)
    stuff_ids: Dict[int, int] = {}
    for k in range(cur_classes.shape[0]):
        cls = int(cur_classes[k])
        own = cur_masks[k] >= 0.5
        segment = (owner == k) & own
        area, original = int((owner == k).sum()), int(own.sum())
        if area == 0 or original == 0 or int(segment.sum()) == 0 or area / original < overlap_threshold:
            continue
        is_thing = cls in things
        if not is_thing and cls in stuff_ids:
            panoptic[segment] = stuff_ids[cls]
            continue
        segment_id = len(segments) + 1
        if not is_thing:
            stuff_ids[cls] = segment_id
        panoptic[segment] = segment_id
        segments.append({"id": segment_id, "isthing": is_thing, "category_id": cls})
    return panoptic, segments
