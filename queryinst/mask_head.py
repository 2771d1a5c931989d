"""One QueryInst stage's mask head (mmdetection ``DynamicMaskHead``; paper section 3.2).

The stage's query (``attn_feats``, after self-attention) generates a DynamicConv without
projection over its 14x14 mask RoI features; then 4 x [conv3x3 + BN + ReLU], a stride-2 2x2
transposed conv + ReLU and a 1x1 conv give per-class 28x28 mask logits.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fastinst.layers import Conv2dNorm

from .dynamic_conv import DynamicConv


class DynamicMaskHead(nn.Module):
    """Args:
        num_classes: K output channels (class-specific masks).
        dim: channels (256).
        feat_channels: DynamicConv hidden width (64).
        roi_size: mask RoI side (14); the output is twice that.
        num_convs: conv3x3 + BN + ReLU blocks (4).
    """

    def __init__(self, num_classes: int, *, dim: int = 256, feat_channels: int = 64, roi_size: int = 14,
                 num_convs: int = 4) -> None:
        super().__init__()
        self.dynamic_conv = DynamicConv(dim, feat_channels, roi_size, with_proj=False)
        self.convs = nn.ModuleList(
            Conv2dNorm(dim, dim, 3, padding=1, norm=nn.BatchNorm2d(dim), activation=F.relu) for _ in range(num_convs))
        self.upsample = nn.ConvTranspose2d(dim, dim, 2, stride=2)
        self.conv_logits = nn.Conv2d(dim, num_classes, 1)

    def forward(self, queries: Tensor, roi_features: Tensor) -> Tensor:
        """``queries (K,C)``, ``roi_features (K,C,14,14)`` -> mask logits ``(K,num_classes,28,28)``."""
        x = self.dynamic_conv(queries, roi_features)          # (K, 196, C)
        x = x.transpose(1, 2).reshape(roi_features.shape)
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))
