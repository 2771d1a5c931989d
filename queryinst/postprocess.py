"""QueryInst's official inference rules (mmdetection ``SparseRoIHead.predict`` + ``FCNMaskHead``).

1. Scores are the sigmoid of the last stage's class logits; the top ``max_per_img`` of all
   N x K (query, class) pairs are kept: no score threshold and no NMS, and one query may appear
   with several classes.
2. Boxes are the last stage's refined boxes divided by the (w, h) scale factor of the resize, not
   clipped.
3. Masks: the last stage's 28x28 logits of the pair's class, sigmoid, pasted into the image by
   ``grid_sample`` at pixel centres inside ``[floor(min) - 1, ceil(max) + 1]`` of the box (the CPU
   path), thresholded at ``>= 0.5`` on probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Instances:
    """Instances of one image, sorted by score (descending); ``M`` = ``max_per_img``.

    scores (M,) float32; classes (M,) int64; query_indices (M,) int64; flat_indices (M,) int64
    ``query * K + class``; boxes (M,4) xyxy original-image pixels; mask_logits (M,28,28);
    masks (M,H,W) bool at the original size.
    """

    scores: Tensor
    classes: Tensor
    query_indices: Tensor
    flat_indices: Tensor
    boxes: Tensor
    mask_logits: Tensor
    masks: Tensor


def instance_inference(class_logits: Tensor, boxes: Tensor, mask_logits: Tensor, scale_factor: Tuple[float, float],
                       original_size: Tuple[int, int], max_per_img: int = 100, mask_threshold: float = 0.5,
                       min_score: float = 0.0) -> Instances:
    """One image's last-stage outputs -> :class:`Instances`.

    Args:
        class_logits: ``(N,K)``.
        boxes: ``(N,4)`` xyxy in resized-input pixels.
        mask_logits: ``(N,K,28,28)``.
        scale_factor: ``(w_scale, h_scale)`` of the test resize (resized / original).
        original_size: ``(H, W)`` of the image as given.
        min_score: instances of the top ``max_per_img`` scoring below it are dropped before their
            masks are pasted at image size (0, the official rule, keeps all; a large photo's
            ``max_per_img`` full-size masks would otherwise take gigabytes).
    """
    num_classes = class_logits.shape[1]
    scores = class_logits.sigmoid().flatten()
    scores, flat = scores.topk(min(max_per_img, scores.numel()), sorted=True)
    if min_score > 0:
        keep = scores >= min_score
        scores, flat = scores[keep], flat[keep]
    query = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat % num_classes
    scale = boxes.new_tensor([scale_factor[0], scale_factor[1], scale_factor[0], scale_factor[1]])
    inst_boxes = boxes[query] / scale
    inst_logits = mask_logits.flatten(0, 1)[flat]
    masks = paste_masks(inst_logits.sigmoid(), inst_boxes, original_size, mask_threshold)
    return Instances(scores, classes, query, flat, inst_boxes, inst_logits, masks)


def paste_masks(probs: Tensor, boxes: Tensor, image_size: Tuple[int, int], threshold: float = 0.5) -> Tensor:
    """``(M,h,w)`` probabilities inside ``(M,4)`` xyxy boxes -> ``(M,H,W)`` bool masks
    (mmdetection ``_do_paste_mask`` with ``skip_empty=True``, one instance at a time)."""
    height, width = image_size
    out = torch.zeros(probs.shape[0], height, width, dtype=torch.bool, device=probs.device)
    for i in range(probs.shape[0]):
        region, (ys, xs) = paste_one(probs[i], boxes[i], image_size)
        out[i, ys, xs] = region >= threshold
    return out


def paste_one(prob: Tensor, box: Tensor, image_size: Tuple[int, int]) -> Tuple[Tensor, Tuple[slice, slice]]:
    """One ``(h,w)`` map in one xyxy box -> (values over the paste region, (row slice, col slice))."""
    height, width = image_size
    x0_int = int(torch.clamp(box[0].floor() - 1, min=0))
    y0_int = int(torch.clamp(box[1].floor() - 1, min=0))
    x1_int = int(torch.clamp(box[2].ceil() + 1, max=width))
    y1_int = int(torch.clamp(box[3].ceil() + 1, max=height))
    if x1_int <= x0_int or y1_int <= y0_int:
        return prob.new_zeros(0, 0), (slice(0, 0), slice(0, 0))
    x0, y0, x1, y1 = box.unbind()
    img_y = torch.arange(y0_int, y1_int, device=prob.device).to(torch.float32) + 0.5
    img_x = torch.arange(x0_int, x1_int, device=prob.device).to(torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
    img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
    grid = torch.stack([img_x[None, :].expand(img_y.numel(), -1), img_y[:, None].expand(-1, img_x.numel())], dim=-1)
    region = F.grid_sample(prob[None, None].float(), grid[None], align_corners=False)[0, 0]
    return region, (slice(y0_int, y1_int), slice(x0_int, x1_int))
