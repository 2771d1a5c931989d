"""ResNet-50-d with deformable convolutions, in the timm layout of the official ``R50-vd-DCN`` backbone.

Deep stem (three 3x3 convs), average-pool downsampling in the shortcuts, and, in the stages that
are deformable (res4 and res5 in the released configs), a 3x3 deformable convolution v1 whose
offsets (18 channels, torchvision layout: ``2k`` = dy, ``2k+1`` = dx of tap ``k``) come from a
plain 3x3 conv. Keys: ``conv1.{0,1,3,4,6}``, ``bn1``, ``layer{1..4}.{i}.{conv1,bn1,conv2,
conv2_offset,bn2,conv3,bn3,downsample.{1,2}}``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from ..layers import make_norm

STAGE_NAMES = ("res2", "res3", "res4", "res5")


class DeformConv2d(nn.Module):
    """3x3 deformable convolution v1 (no bias unless a norm was folded in): ``(x (B,C,H,W), offset (B,18,H',W')) -> (B,C',H',W')``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.register_parameter("bias", None)  # set when a following norm is folded in (fastinst.fast)
        nn.init.kaiming_uniform_(self.weight, a=1)

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=1)


class BottleneckD(nn.Module):
    """timm-style bottleneck; with ``deformable=True`` the 3x3 conv is a DCNv1."""

    def __init__(self, in_channels: int, width: int, stride: int, norm: str, deformable: bool, first: bool) -> None:
        super().__init__()
        out_channels = width * 4
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.deformable = deformable
        if deformable:
            self.conv2_offset = nn.Conv2d(width, 18, 3, stride=stride, padding=1)
            nn.init.zeros_(self.conv2_offset.weight)
            nn.init.zeros_(self.conv2_offset.bias)
            self.conv2 = DeformConv2d(width, width, stride)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = make_norm(norm, out_channels)
        self.downsample = None
        if first:
            pool: nn.Module = nn.Identity()
            if stride != 1:
                pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
            self.downsample = nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                            make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.bn1(self.conv1(x)))
        if self.deformable:
            offset = self.conv2_offset(out)
            out = self.conv2(out.float(), offset.float()).to(out.dtype)
        else:
            out = self.conv2(out)
        out = F.relu_(self.bn2(out))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(out.add_(identity))


class ResNetD(nn.Module):
    """``(B,3,H,W)`` -> ``{"res2".."res5"}`` at strides 4..32 (R50-d: depths 3,4,6,3)."""

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),
        deformable: Sequence[bool] = (False, False, True, True),
        norm: str = "FrozenBN",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), make_norm(norm, 32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), make_norm(norm, 32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
        )
        self.bn1 = make_norm(norm, 64)
        in_channels = 64
        self.out_channels: Dict[str, int] = {}
        for index, (depth, width, dcn) in enumerate(zip(depths, (64, 128, 256, 512), deformable)):
            blocks = []
            for b in range(depth):
                stride = 2 if (b == 0 and index > 0) else 1
                blocks.append(BottleneckD(in_channels, width, stride, norm, dcn, first=b == 0))
                in_channels = width * 4
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.out_channels[STAGE_NAMES[index]] = in_channels

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        out: Dict[str, Tensor] = {}
        for index, name in enumerate(STAGE_NAMES):
            x = getattr(self, f"layer{index + 1}")(x)
            out[name] = x
        return out

    def freeze(self, at: int) -> None:
        """Stop gradients for the stem (``at >= 1``) and the first ``at - 1`` stages."""
        parts = [nn.ModuleList([self.conv1, self.bn1])] + [getattr(self, f"layer{i}") for i in range(1, 5)]
        for part in parts[:at]:
            for p in part.parameters():
                p.requires_grad_(False)
