"""Point sampling for the point-based mask losses (PointRend-style, as FastInst/Mask2Former use).

Coordinates are ``(x, y)`` normalised to ``[0, 1]`` over the whole map, so the same points index a
stride-8 prediction and a full-resolution target alike (``align_corners=False`` convention).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample ``maps (N,C,H,W)`` at ``coords (N,P,2)`` in ``[0,1]`` -> ``(N,C,P)``.

    Uses ``grid_sample`` with ``align_corners=False`` and zero padding: coordinate 0 is the left
    edge of the first pixel, 1 the right edge of the last one.
    """
    grid = coords.unsqueeze(2).to(maps.dtype) * 2.0 - 1.0  # (N,P,1,2) in [-1,1]
    return F.grid_sample(maps, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of binary mask logits: ``-|logit|`` (highest where the logit is nearest 0)."""
    return -logits.abs()


def importance_points(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Points concentrated where ``logits (N,1,H,W)`` are uncertain -> coords ``(N,num_points,2)``.

    Draws ``int(num_points * oversample_ratio)`` uniform candidates per mask, keeps the
    ``int(importance_ratio * num_points)`` most uncertain ones and fills the rest with fresh
    uniform points (PointRend training rule, Kirillov et al. 2020).
    """
    n = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_ratio * num_points)
    num_random = num_points - num_uncertain
    device = logits.device
    candidates = torch.rand(n, num_candidates, 2, device=device, generator=generator)
    scores = uncertainty(point_sample(logits.float(), candidates))[:, 0, :]  # (N, candidates)
    top = scores.topk(num_uncertain, dim=1).indices  # (N, num_uncertain)
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(n, num_random, 2, device=device, generator=generator)
        chosen = torch.cat([chosen, extra], dim=1)
    return chosen
