"""One builder per released QueryInst config, plus ``tiny`` for CPU training and tests.

``PRESETS`` is a plain dict: name -> builder(num_classes) -> QueryInst. Defaults are the official
configs' (mmdetection 3.3.0 ``configs/queryinst/``): ResNet with BatchNorm in eval mode
(``norm_eval=True``) and the stem + first stage frozen, FPN 256, 6 stages, test resize to fit
1333 x 800.

| preset | backbone | proposals | official config | COCO box / mask AP (mmdetection README) |
|---|---|---|---|---|
| ``R50-1x`` | R50 | 100 | queryinst_r50_fpn_1x_coco | 42.0 / 37.5 |
| ``R50-3x`` | R50 | 100 | queryinst_r50_fpn_ms-480-800-3x_coco | 44.8 / 39.8 |
| ``R50-300-3x`` | R50 | 300 | queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco | 47.5 / 41.7 |
| ``R101-3x`` | R101 | 100 | queryinst_r101_fpn_ms-480-800-3x_coco | 46.4 / 41.0 |
| ``R101-300-3x`` | R101 | 300 | queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco | 49.0 / 42.9 |
| ``tiny`` | basic-block ResNet, widths 32..256, BN | 32 | none (ours) | |
"""
from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from fastinst.backbones import ResNet
from fastinst.model import InputSpec

from .fpn import FPN
from .mask_head import DynamicMaskHead
from .model import QueryInst
from .proposals import EmbeddingProposals
from .stage import DIIStage

COCO_NUM_CLASSES = 80
OFFICIAL_INPUT = InputSpec(min_size=800, max_size=1333)


def _assemble(backbone: nn.Module, num_classes: int, *, num_proposals: int, input_spec: InputSpec = OFFICIAL_INPUT,
              dim: int = 256, num_stages: int = 6, num_heads: int = 8, ffn_dim: int = 2048, feat_channels: int = 64,
              num_mask_convs: int = 4, backbone_norm_eval: bool = True) -> QueryInst:
    in_channels = list(backbone.out_channels.values())
    stages = [DIIStage(num_classes, dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, feat_channels=feat_channels)
              for _ in range(num_stages)]
    mask_heads = [DynamicMaskHead(num_classes, dim=dim, feat_channels=feat_channels, num_convs=num_mask_convs)
                  for _ in range(num_stages)]
    return QueryInst(backbone=backbone, fpn=FPN(in_channels, dim), proposals=EmbeddingProposals(num_proposals, dim),
                     stages=stages, mask_heads=mask_heads, input_spec=input_spec,
                     backbone_norm_eval=backbone_norm_eval)


def _resnet(depth: int) -> ResNet:
    backbone = ResNet(depths={50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth], norm="BN")
    backbone.freeze(2)  # mmdetection frozen_stages=1: the stem and the first stage
    return backbone


def queryinst_r50_1x(num_classes: int = COCO_NUM_CLASSES) -> QueryInst:
    """R50-FPN, 100 proposals, 12 epochs (official box AP 42.0, mask AP 37.5)."""
    return _assemble(_resnet(50), num_classes, num_proposals=100)


def queryinst_r50_3x(num_classes: int = COCO_NUM_CLASSES) -> QueryInst:
    """R50-FPN, 100 proposals, 36 epochs multi-scale (box 44.8, mask 39.8)."""
    return _assemble(_resnet(50), num_classes, num_proposals=100)


def queryinst_r50_300_3x(num_classes: int = COCO_NUM_CLASSES) -> QueryInst:
    """R50-FPN, 300 proposals, 36 epochs multi-scale with crop (box 47.5, mask 41.7)."""
    return _assemble(_resnet(50), num_classes, num_proposals=300)


def queryinst_r101_3x(num_classes: int = COCO_NUM_CLASSES) -> QueryInst:
    """R101-FPN, 100 proposals, 36 epochs multi-scale (box 46.4, mask 41.0)."""
    return _assemble(_resnet(101), num_classes, num_proposals=100)


def queryinst_r101_300_3x(num_classes: int = COCO_NUM_CLASSES) -> QueryInst:
    """R101-FPN, 300 proposals, 36 epochs multi-scale with crop (box 49.0, mask 42.9)."""
    return _assemble(_resnet(101), num_classes, num_proposals=300)


def queryinst_tiny(num_classes: int = 3) -> QueryInst:
    """A small QueryInst that trains from scratch on a CPU (demo and tests).

    Backbone: the FastInst ``tiny`` ResNet (basic blocks, one per stage, widths 32..256, trainable
    BatchNorm). FPN 64 channels; 32 proposals; 3 stages of dim 64, 4 heads, FFN 256, DynamicConv
    width 16; mask heads with 2 convs. Input: at most 128 x 128.
    """
    backbone = ResNet(depths=(1, 1, 1, 1), block="basic", stem_width=32, widths=(32, 64, 128, 256), norm="BN")
    return _assemble(backbone, num_classes, num_proposals=32, input_spec=InputSpec(min_size=128, max_size=128),
                     dim=64, num_stages=3, num_heads=4, ffn_dim=256, feat_channels=16, num_mask_convs=2,
                     backbone_norm_eval=False)


PRESETS: Dict[str, Callable[..., QueryInst]] = {
    "R50-1x": queryinst_r50_1x,
    "R50-3x": queryinst_r50_3x,
    "R50-300-3x": queryinst_r50_300_3x,
    "R101-3x": queryinst_r101_3x,
    "R101-300-3x": queryinst_r101_300_3x,
    "tiny": queryinst_tiny,
}

# Official config names (released checkpoint files start with them) -> our preset names.
OFFICIAL_CONFIGS: Dict[str, str] = {
    "queryinst_r50_fpn_1x_coco": "R50-1x",
    "queryinst_r50_fpn_ms-480-800-3x_coco": "R50-3x",
    "queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco": "R50-300-3x",
    "queryinst_r101_fpn_ms-480-800-3x_coco": "R101-3x",
    "queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco": "R101-300-3x",
    # the names of the released files (mmdetection 2.x config names)
    "queryinst_r50_fpn_mstrain_480-800_3x_coco": "R50-3x",
    "queryinst_r50_fpn_300_proposals_crop_mstrain_480-800_3x_coco": "R50-300-3x",
    "queryinst_r101_fpn_mstrain_480-800_3x_coco": "R101-3x",
    "queryinst_r101_fpn_300_proposals_crop_mstrain_480-800_3x_coco": "R101-300-3x",
}


def preset_for_file(name: str) -> str | None:
    """The preset of a released checkpoint file name (e.g. ``queryinst_r50_fpn_1x_coco_20210907_084916-5a8f1998.pth``)."""
    matches = [config for config in OFFICIAL_CONFIGS if name.startswith(config)]
    return OFFICIAL_CONFIGS[max(matches, key=len)] if matches else None


def build_model(preset: str, num_classes: int | None = None) -> QueryInst:
    """Build ``preset`` (a key of :data:`PRESETS`) with ``num_classes`` (default: the preset's)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown QueryInst preset {preset!r}; choose one of {', '.join(PRESETS)}")
    builder = PRESETS[preset]
    return builder() if num_classes is None else builder(num_classes)
