"""Dynamic instance interaction (Sparse R-CNN's ``DynamicConv``): each query generates the two
1x1-conv kernels applied to its own RoI features.

mmdetection ``DynamicConv`` (``mmdet/models/layers/transformer/utils.py``):
``W_in (C, F)`` and ``W_out (F, C)`` come from one linear layer on the query; RoI features
``(N, S, C)`` go through ``ReLU(LN_F(f W_in))`` then ``ReLU(LN_C(. W_out))``; with projection, the
``S*C`` result is flattened (index ``position * C + channel``) and projected back to ``C``.
"""
from __future__ import annotations

from torch import Tensor, nn
import torch.nn.functional as F


class DynamicConv(nn.Module):
    """Args:
        dim: query / RoI-feature channels C (256).
        feat_channels: the hidden width F (64).
        roi_size: RoI side S^(1/2) (7 for boxes, 14 for masks); sets ``fc_layer``'s input size.
        with_proj: flatten and project to ``(N, C)`` (box stages) or return ``(N, S, C)`` (mask heads).
    """

    def __init__(self, dim: int = 256, feat_channels: int = 64, roi_size: int = 7, with_proj: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.feat_channels = feat_channels
        self.dynamic_layer = nn.Linear(dim, 2 * dim * feat_channels)
        self.norm_in = nn.LayerNorm(feat_channels)
        self.norm_out = nn.LayerNorm(dim)
        self.with_proj = with_proj
        if with_proj:
            self.fc_layer = nn.Linear(dim * roi_size * roi_size, dim)
            self.fc_norm = nn.LayerNorm(dim)

    def forward(self, queries: Tensor, roi_features: Tensor) -> Tensor:
        """``queries (N, C)``, ``roi_features (N, C, s, s)`` -> ``(N, C)`` or ``(N, s*s, C)``."""
        n = queries.shape[0]
        features = roi_features.flatten(2).transpose(1, 2)
        params = self.dynamic_layer(queries)
        split = self.dim * self.feat_channels
        w_in = params[:, :split].view(n, self.dim, self.feat_channels)
        w_out = params[:, split:].view(n, self.feat_channels, self.dim)
        features = F.relu(self.norm_in(features.bmm(w_in)))
        features = F.relu(self.norm_out(features.bmm(w_out)))
        if self.with_proj:
            features = F.relu(self.fc_norm(self.fc_layer(features.flatten(1))))
        return features
