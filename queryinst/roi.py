"""RoI features from an FPN: the official level rule and ``torchvision.ops.roi_align``.

mmdetection ``SingleRoIExtractor`` (``finest_scale=56``, strides 4/8/16/32): a box of scale
``s = sqrt(w h)`` pixels goes to level ``floor(log2(s / 56 + 1e-6))`` clamped to [0, L-1], so
P2 takes s < 112, P3 112..224, P4 224..448, P5 the rest. Pooling is RoIAlign with
``sampling_ratio=2``, ``aligned=True`` (the -0.5 pixel offset), scale ``1/stride``; mmcv's CPU
kernel equals torchvision's (reference README).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

FINEST_SCALE = 56


def boxes_to_rois(boxes: Tensor) -> Tensor:
    """``(B,N,4)`` xyxy -> ``(B*N,5)`` rows ``(image index, x0, y0, x1, y1)`` (official ``bbox2roi``)."""
    batch, num = boxes.shape[:2]
    index = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).repeat_interleave(num)
    return torch.cat([index[:, None], boxes.reshape(-1, 4)], dim=1)


def roi_levels(rois: Tensor, num_levels: int, finest_scale: float = FINEST_SCALE) -> Tensor:
    """``(K,5)`` RoIs -> ``(K,)`` int64 FPN level index 0..num_levels-1 (official ``map_roi_levels``)."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multilevel_roi_align(features: Sequence[Tensor], rois: Tensor, strides: Sequence[int], output_size: int,
                         sampling_ratio: int = 2) -> Tensor:
    """Pool ``(K,5)`` RoIs from the level each belongs to -> ``(K, C, output_size, output_size)``.

    Args:
        features: per level ``(B, C, h_l, w_l)``, finest first.
        rois: ``(K,5)`` ``(image index, x0, y0, x1, y1)`` in input pixels.
        strides: pixels per feature cell of each level.
    """
    levels = roi_levels(rois, len(features))
    out = features[0].new_zeros(rois.shape[0], features[0].shape[1], output_size, output_size)
    for level, (feature, stride) in enumerate(zip(features, strides)):
        index = (levels == level).nonzero(as_tuple=True)[0]
        if index.numel():
            out[index] = roi_align(feature, rois[index], output_size, spatial_scale=1.0 / stride,
                                   sampling_ratio=sampling_ratio, aligned=True)
    return out

