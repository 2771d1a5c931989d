"""ResNet in detectron2's layout (the backbone of the released FastInst R50/R101 checkpoints).

Keys: ``stem.conv1``, ``res{2..5}.{i}.{conv1,conv2,conv3,shortcut}`` each with ``.norm``.
The stride-2 of res3..res5 sits in the 3x3 conv (``STRIDE_IN_1X1=False``).
The same class with ``block="basic"`` builds the small ResNet of the ``tiny`` preset.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Conv2dNorm, make_norm

STAGE_NAMES = ("res2", "res3", "res4", "res5")


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2dNorm(in_channels, out_channels, 1, stride=stride, norm=make_norm(norm, out_channels))
        self.conv1 = Conv2dNorm(in_channels, width, 1, norm=make_norm(norm, width))
        self.conv2 = Conv2dNorm(width, width, 3, stride=stride, padding=1, norm=make_norm(norm, width))
        self.conv3 = Conv2dNorm(width, out_channels, 1, norm=make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        # in place where autograd allows it (a convolution or norm does not need its output for its
        # gradient): no fresh activation-sized tensors, as torchvision's ResNet
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3 with a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        del width  # a basic block has no bottleneck
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2dNorm(in_channels, out_channels, 1, stride=stride, norm=make_norm(norm, out_channels))
        self.conv1 = Conv2dNorm(in_channels, out_channels, 3, stride=stride, padding=1, norm=make_norm(norm, out_channels))
        self.conv2 = Conv2dNorm(out_channels, out_channels, 3, padding=1, norm=make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))  # in place, as in BottleneckBlock
        out = self.conv2(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class Stem(nn.Module):
    """7x7/2 conv + norm + ReLU, then 3x3/2 max-pool: ``(B,3,H,W) -> (B,C,H/4,W/4)``."""

    def __init__(self, out_channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = Conv2dNorm(3, out_channels, 7, stride=2, padding=3, norm=make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """``(B,3,H,W)`` -> ``{"res2": stride 4, "res3": 8, "res4": 16, "res5": 32}``.

    Args:
        depths: blocks per stage, e.g. ``(3, 4, 6, 3)`` for R50, ``(3, 4, 23, 3)`` for R101.
        block: ``"bottleneck"`` (R50/R101) or ``"basic"`` (small backbones).
        stem_width: channels after the stem (64 for R50).
        widths: the per-stage base width (64, 128, 256, 512 for R50); bottleneck outputs are 4x.
        norm: ``FrozenBN`` for ImageNet-initialised backbones, ``BN``/``GN`` to train from scratch.
    """

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 4, 6, 3),
        block: str = "bottleneck",
        stem_width: int = 64,
        widths: Sequence[int] = (64, 128, 256, 512),
        norm: str = "FrozenBN",
    ) -> None:
        super().__init__()
        block_cls = {"bottleneck": BottleneckBlock, "basic": BasicBlock}[block]
        expansion = 4 if block == "bottleneck" else 1
        self.stem = Stem(stem_width, norm)
        in_channels = stem_width
        self.out_channels: Dict[str, int] = {}
        for index, (name, depth, width) in enumerate(zip(STAGE_NAMES, depths, widths)):
            out_channels = width * expansion
            blocks = []
            for b in range(depth):
                stride = 2 if (b == 0 and index > 0) else 1
                blocks.append(block_cls(in_channels, out_channels, width, stride, norm))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_channels

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        x = self.stem(x)
        out: Dict[str, Tensor] = {}
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            out[name] = x
        return out

    def freeze(self, at: int) -> None:
        """Stop gradients for the stem (``at >= 1``) and the first ``at - 1`` stages (detectron2's FREEZE_AT)."""
        parts = [self.stem] + [getattr(self, n) for n in STAGE_NAMES]
        for part in parts[:at]:
            for p in part.parameters():
                p.requires_grad_(False)
