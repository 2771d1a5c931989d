"""Feature pyramid network as QueryInst uses it (mmdetection ``FPN``, ``num_outs=4``).

Per level: 1x1 lateral conv (with bias), top-down sum with nearest-neighbour upsampling to the
finer level's size, then a 3x3 output conv (with bias). No norm, no activation, no extra level.
"""
from __future__ import annotations

from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """``[C2..C5]`` -> ``[P2..P5]``, each ``(B, out_channels, H/s, W/s)`` for strides 4..32.

    Args:
        in_channels: channels of the backbone outputs, finest first (R50: 256, 512, 1024, 2048).
        out_channels: channels of every pyramid level (256).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: Sequence[Tensor]) -> List[Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        return [conv(x) for conv, x in zip(self.output_convs, laterals)]
