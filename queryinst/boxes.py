"""Box formats and the official box coder (mmdetection ``DeltaXYWHBBoxCoder``).

Boxes are ``(x0, y0, x1, y1)`` in pixels unless a name says ``cxcywh``. QueryInst's coder uses
``target_means = 0``, ``target_stds = (0.5, 0.5, 1, 1)``, ``wh_ratio_clip = 16/1000`` and
``clip_border=False`` (config ``queryinst_r50_fpn_1x_coco.py``): decoded boxes are never clipped.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

DELTA_STDS = (0.5, 0.5, 1.0, 1.0)
WH_RATIO_CLIP = 16 / 1000


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` (cx, cy, w, h) -> (x0, y0, x1, y1), the official ``bbox_cxcywh_to_xyxy``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` (x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def decode_deltas(boxes: Tensor, deltas: Tensor, stds: Sequence[float] = DELTA_STDS,
                  wh_ratio_clip: float = WH_RATIO_CLIP) -> Tensor:
    """Apply ``(N,4)`` deltas (dx, dy, dw, dh) to ``(N,4)`` xyxy boxes; no clipping to the image.

    ``d = delta * stds``; ``dw, dh`` clamped to ``+-|log(wh_ratio_clip)|``; centre moves by
    ``wh * dxy``, size scales by ``exp(dwh)`` (mmdetection ``delta2bbox``, same operation order).
    """
    d = deltas * deltas.new_tensor(stds).view(1, 4)
    dxy, dwh = d[:, :2], d[:, 2:]
    centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    sizes = boxes[:, 2:] - boxes[:, :2]
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    new_centres = centres + sizes * dxy
    new_sizes = sizes * dwh.exp()
    return torch.cat([new_centres - new_sizes * 0.5, new_centres + new_sizes * 0.5], dim=-1)


def encode_deltas(boxes: Tensor, targets: Tensor, stds: Sequence[float] = DELTA_STDS) -> Tensor:
    """Inverse of :func:`decode_deltas` (mmdetection ``bbox2delta``): ``(N,4)`` xyxy -> deltas."""
    centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    sizes = boxes[:, 2:] - boxes[:, :2]
    t_centres = (targets[:, :2] + targets[:, 2:]) * 0.5
    t_sizes = targets[:, 2:] - targets[:, :2]
    d = torch.cat([(t_centres - centres) / sizes, torch.log(t_sizes / sizes)], dim=-1)
    return d / d.new_tensor(stds).view(1, 4)
