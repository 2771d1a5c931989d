"""PPM-FPN pixel decoder: res3/res4/res5 -> three enhanced maps at strides 32, 16 and 8."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Conv2dNorm, make_norm


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: ``(B,C,H,W) -> (B,C,H,W)``.

    For each bin size, adaptive average pool -> 1x1 conv (C -> C/4, bias) -> ReLU -> bilinear
    resize back; the priors and the input are concatenated and fused by a 1x1 conv + ReLU.
    """

    def __init__(self, channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        prior_channels = channels // 4
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(channels, prior_channels, 1)) for b in bins
        )
        self.bottleneck = nn.Conv2d(channels + len(bins) * prior_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        priors = [F.interpolate(F.relu_(stage(x)), size=size, mode="bilinear", align_corners=False)
                  for stage in self.stages]
        return F.relu_(self.bottleneck(torch.cat(priors + [x], dim=1)))


class PPMFPN(nn.Module):
    """``{"res3","res4","res5"}`` -> ``[out0 (stride 32), out1 (stride 16), out2 (stride 8)]``, each ``(B,dim,h,w)``.

    Coarse to fine: ``out0 = layer_3(ppm(adapter_3(res5)))``; then for res4 and res3:
    ``y = layer_k(adapter_k(res) + upsample(y))``. Lateral ``adapter`` = 1x1 conv + norm (no
    activation); output ``layer`` = 3x3 conv + norm + ReLU. Index k counts by increasing stride.
    """

    in_features = ("res3", "res4", "res5")

    def __init__(self, in_channels: Dict[str, int], *, dim: int = 256, norm: str = "GN") -> None:
        super().__init__()
        self.adapters = nn.ModuleList(
            Conv2dNorm(in_channels[name], dim, 1, norm=make_norm(norm, dim)) for name in self.in_features
        )
        self.layers = nn.ModuleList(
            Conv2dNorm(dim, dim, 3, padding=1, norm=make_norm(norm, dim), activation=F.relu_)
            for _ in self.in_features
        )
        self.ppm = PyramidPooling(dim)

    def forward(self, features: Dict[str, Tensor]) -> List[Tensor]:
        outputs: List[Tensor] = []
        y = None
        for k in reversed(range(len(self.in_features))):
            lateral = self.adapters[k](features[self.in_features[k]])
            if y is None:
                y = self.ppm(lateral)
            else:
                y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            y = self.layers[k](y)
            outputs.append(y)
        return outputs
