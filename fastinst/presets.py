"""One builder per released FastInst config, plus ``tiny`` for CPU demos and tests.

``PRESETS`` is a plain dict: name -> builder(num_classes) -> FastInst. Defaults are the paper's.

| preset | backbone | decoder layers | test size | official config |
|---|---|---|---|---|
| ``D1-R50-576`` | R50 | 1 | 576 / 777 | fastinst_R50_ppm-fpn_x1_576 |
| ``D3-R50-640`` | R50 | 3 | 640 / 853 | fastinst_R50_ppm-fpn_x3_640 |
| ``D3-R101-640`` | R101 | 3 | 640 / 853 | fastinst_R101_ppm-fpn_x3_640 |
| ``D1-R50d-DCN-576`` | R50-d, DCN res4/5 | 1 | 576 / 777 | fastinst_R50-vd-dcn_ppm-fpn_x1_576 |
| ``D3-R50d-DCN-640`` | R50-d, DCN res4/5 | 3 | 640 / 853 | fastinst_R50-vd-dcn_ppm-fpn_x3_640 |
| ``tiny`` | ResNet-10-ish, basic blocks, widths 32..256, BN | 2 | 128 / 128 | none (ours) |
"""
from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from .backbones import ResNet, ResNetD
from .decoder import FastInstDecoder
from .model import FastInst, InputSpec
from .pixel_decoder import PPMFPN

COCO_NUM_CLASSES = 80


def _assemble(backbone: nn.Module, num_classes: int, *, num_layers: int, input_spec: InputSpec,
              dim: int = 256, num_queries: int = 100, num_aux_queries: int = 8, num_heads: int = 8,
              ffn_dim: int = 1024, norm: str = "GN") -> FastInst:
    pixel_decoder = PPMFPN(backbone.out_channels, dim=dim, norm=norm)
    decoder = FastInstDecoder(num_classes=num_classes, dim=dim, num_queries=num_queries,
                              num_aux_queries=num_aux_queries, num_heads=num_heads, ffn_dim=ffn_dim,
                              num_layers=num_layers, mask_dim=dim)
    return FastInst(backbone=backbone, pixel_decoder=pixel_decoder, decoder=decoder, input_spec=input_spec)


def fastinst_d1_r50_576(num_classes: int = COCO_NUM_CLASSES) -> FastInst:
    """FastInst-D1, ResNet-50, shortest edge 576 (paper: 35.6 AP test-dev, ~30M params)."""
    return _assemble(ResNet(depths=(3, 4, 6, 3)), num_classes, num_layers=1, input_spec=InputSpec(576, 777))


def fastinst_d3_r50_640(num_classes: int = COCO_NUM_CLASSES) -> FastInst:
    """FastInst-D3, ResNet-50, shortest edge 640 (paper: 38.6 AP, ~34M params)."""
    return _assemble(ResNet(depths=(3, 4, 6, 3)), num_classes, num_layers=3, input_spec=InputSpec(640, 853))


def fastinst_d3_r101_640(num_classes: int = COCO_NUM_CLASSES) -> FastInst:
    """FastInst-D3, ResNet-101, shortest edge 640."""
    return _assemble(ResNet(depths=(3, 4, 23, 3)), num_classes, num_layers=3, input_spec=InputSpec(640, 853))


def fastinst_d1_r50d_dcn_576(num_classes: int = COCO_NUM_CLASSES) -> FastInst:
    """FastInst-D1, ResNet-50-d with DCN in res4/res5, shortest edge 576."""
    return _assemble(ResNetD(), num_classes, num_layers=1, input_spec=InputSpec(576, 777))


def fastinst_d3_r50d_dcn_640(num_classes: int = COCO_NUM_CLASSES) -> FastInst:
    """FastInst-D3, ResNet-50-d with DCN in res4/res5, shortest edge 640."""
    return _assemble(ResNetD(), num_classes, num_layers=3, input_spec=InputSpec(640, 853))


def fastinst_tiny(num_classes: int = 3) -> FastInst:
    """A small model that trains from scratch on a CPU in minutes (demo and tests).

    Backbone: basic-block ResNet, one block per stage, widths 32/64/128/256, trainable BatchNorm.
    Head: dim 64, 4 attention heads, FFN 256, 2 decoder layers, 32 queries + 4 aux queries.
    Input: shortest edge 128, longest 128 (tuned by the training owner: the demo model is trained
    from scratch on 128x128 synthetic shapes on a 2-core CPU, where 320 cost ~6x the compute; the
    128 cap keeps 4:3 images at 96x128, multiples of 32, so nothing is padded).
    """
    backbone = ResNet(depths=(1, 1, 1, 1), block="basic", stem_width=32, widths=(32, 64, 128, 256), norm="BN")
    return _assemble(backbone, num_classes, num_layers=2, input_spec=InputSpec(128, 128), dim=64,
                     num_queries=32, num_aux_queries=4, num_heads=4, ffn_dim=256)


PRESETS: Dict[str, Callable[..., FastInst]] = {
    "D1-R50-576": fastinst_d1_r50_576,
    "D3-R50-640": fastinst_d3_r50_640,
    "D3-R101-640": fastinst_d3_r101_640,
    "D1-R50d-DCN-576": fastinst_d1_r50d_dcn_576,
    "D3-R50d-DCN-640": fastinst_d3_r50d_dcn_640,
    "tiny": fastinst_tiny,
}

# Official config names (the released checkpoint files start with them) -> our preset names.
OFFICIAL_CONFIGS: Dict[str, str] = {
    "fastinst_R50_ppm-fpn_x1_576": "D1-R50-576",
    "fastinst_R50_ppm-fpn_x3_640": "D3-R50-640",
    "fastinst_R101_ppm-fpn_x3_640": "D3-R101-640",
    "fastinst_R50-vd-dcn_ppm-fpn_x1_576": "D1-R50d-DCN-576",
    "fastinst_R50-vd-dcn_ppm-fpn_x3_640": "D3-R50d-DCN-640",
}


def build_model(preset: str, num_classes: int | None = None) -> FastInst:
    """Build ``preset`` (a key of :data:`PRESETS`) with ``num_classes`` (default: the preset's)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    builder = PRESETS[preset]
    return builder() if num_classes is None else builder(num_classes)
