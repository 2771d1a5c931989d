"""Instance-activation-guided (IA-guided) query proposal.

An auxiliary per-pixel classifier on the stride-16 map scores every position; the positions that
are local maxima of their arg-max foreground class come first, then the rest by probability; the
top-k positions' features and positional embeddings become the object queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Proposals:
    """Selected queries for a batch.

    features: (B,Q,C) pixel features gathered at the selected positions.
    pos: (B,Q,C) positional embeddings gathered at the same positions.
    indices: (B,Q) int64 flat row-major positions in the (h16,w16) map, in query order.
    locations: (B,Q,2) (x, y) of the positions normalised to [0,1] (``linspace(0,1,w)``).
    logits: (B,K+1,h16,w16) the auxiliary classifier's logits (index K = background).
    """

    features: Tensor
    pos: Tensor
    indices: Tensor
    locations: Tensor
    logits: Tensor


def local_maximum(probs: Tensor, eps: float = 1e-6) -> Tensor:
    """``(B,C,H,W) -> bool (B,C,H,W)``: >= all 8 neighbours of the same channel (zero padding) and >= eps."""
    height, width = probs.shape[-2:]
    padded = F.pad(probs, (1, 1, 1, 1), value=0.0)
    result = probs >= eps
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            result &= probs >= padded[..., dy:dy + height, dx:dx + width]
    return result


def selection_scores(logits: Tensor) -> Tensor:
    """``(B,K+1,H,W) logits -> (B,H*W)``: the score the proposal top-k ranks by.

    Softmax over all K+1 channels; keep only each position's arg-max foreground class; add 1 where
    that probability is a local maximum; max over the K foreground channels.
    """
    probs = logits.softmax(dim=1)[:, :-1]
    best = probs.argmax(dim=1, keepdim=True)
    masked = torch.zeros_like(probs).scatter_(1, best, probs.gather(1, best))
    scored = masked + local_maximum(masked).to(masked.dtype)
    return scored.flatten(2).max(dim=1).values


class QueryProposal(nn.Module):
    """``(x (B,C,h16,w16), pos (1,C,h16,w16)) -> Proposals`` with ``num_queries`` queries."""

    def __init__(self, dim: int, num_queries: int, num_classes: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.cls_head = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(dim, num_classes + 1, 1)
        )

    def forward(self, x: Tensor, pos: Tensor) -> Proposals:
        batch, dim, height, width = x.shape
        if height * width < self.num_queries:
            raise ValueError(
                f"the stride-16 map has {height}x{width} = {height * width} positions, fewer than the "
                f"{self.num_queries} queries; use a larger input (at least {self.num_queries * 256} pixels)")
        logits = self.cls_head(x)
        with torch.no_grad():
            indices = selection_scores(logits.detach()).topk(self.num_queries, dim=1).indices
        gather = indices.unsqueeze(-1).expand(-1, -1, dim)
        features = x.flatten(2).transpose(1, 2).gather(1, gather)
        pos_flat = pos.flatten(2).transpose(1, 2).expand(batch, -1, -1)
        query_pos = pos_flat.gather(1, gather)
        return Proposals(features, query_pos, indices, grid_locations(indices, height, width), logits)


def grid_locations(indices: Tensor, height: int, width: int) -> Tensor:
    """Flat positions ``(B,Q)`` -> normalised ``(x, y)`` ``(B,Q,2)`` on a ``linspace(0, 1, n)`` grid."""
    rows = torch.div(indices, width, rounding_mode="floor")
    ys = rows.to(torch.float32)
    xs = (indices - rows * width).to(torch.float32)  # not ``%``: exports to ONNX with a dynamic width
    x = xs / max(width - 1, 1)
    y = ys / max(height - 1, 1)
    return torch.stack([x, y], dim=-1)
