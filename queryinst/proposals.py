"""Learned proposals (mmdetection ``EmbeddingRPNHead``): N boxes and N feature vectors.

The boxes are stored normalised as (cx, cy, w, h) in [0, 1] of the image and scaled by each
image's *unpadded* size; the features are the queries' initial content. Both are the same for
every image (Sparse R-CNN, Sun et al. 2021, section 3.2).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .boxes import cxcywh_to_xyxy


class EmbeddingProposals(nn.Module):
    """``num_proposals`` learned boxes and ``dim``-dim features.

    Keys: ``boxes.weight`` (N,4) normalised cxcywh, ``features.weight`` (N,dim).
    The official ``init_weights`` sets every box to the whole image (0.5, 0.5, 1, 1).
    """

    def __init__(self, num_proposals: int = 100, dim: int = 256) -> None:
        super().__init__()
        self.boxes = nn.Embedding(num_proposals, 4)
        self.features = nn.Embedding(num_proposals, dim)
        nn.init.constant_(self.boxes.weight[:, :2], 0.5)
        nn.init.constant_(self.boxes.weight[:, 2:], 1.0)

    @property
    def num_proposals(self) -> int:
        return int(self.boxes.weight.shape[0])

    def forward(self, image_sizes: Sequence[Tuple[int, int]]) -> Tuple[Tensor, Tensor]:
        """``[(h, w)]`` unpadded sizes -> boxes ``(B,N,4)`` xyxy pixels, features ``(B,N,dim)``."""
        weight = self.boxes.weight
        whwh = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=weight.dtype, device=weight.device)
        boxes = cxcywh_to_xyxy(weight)[None] * whwh[:, None, :]
        features = self.features.weight[None].repeat(len(image_sizes), 1, 1)
        return boxes, features
