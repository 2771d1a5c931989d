"""FastInst: backbone -> PPM-FPN pixel decoder -> IA-guided queries -> dual-path decoder.

The model is tensor in, tensor out. Images, resizing and thresholds live in :mod:`fastinst.predictor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .decoder import FastInstDecoder, MaskGuide
from .pixel_decoder import PPMFPN

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class InputSpec:
    """How images are prepared for a model: the test-time resize and the RGB normalisation."""

    min_size: int = 640
    max_size: int = 853
    size_divisibility: int = 32
    pixel_mean: Tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: Tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture (stored in our checkpoints)."""

    preset: str
    num_classes: int
    extra: Dict[str, object] = field(default_factory=dict)


class FastInst(nn.Module):
    """The full network. Takes built sub-modules (no config object).

    Args:
        backbone: ``(B,3,H,W) -> {"res3","res4","res5", ...}`` with an ``out_channels`` dict.
        pixel_decoder: backbone features -> ``[out0 (s32), out1 (s16), out2 (s8)]``.
        decoder: the FastInst decoder (queries, layers, heads).
        input_spec: resize and normalisation of the inputs.
    """

    def __init__(self, *, backbone: nn.Module, pixel_decoder: PPMFPN, decoder: FastInstDecoder,
                 input_spec: InputSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder
        self.input_spec = input_spec
        self.register_buffer("pixel_mean", torch.tensor(input_spec.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(input_spec.pixel_std).view(3, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.decoder.query_proposal.cls_head[-1].out_channels - 1

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: Sequence[Tensor]) -> Tuple[Tensor, List[Tuple[int, int]]]:
        """``[(3,H_i,W_i) RGB 0..255]`` -> ``(B,3,Hp,Wp)`` normalised then zero-padded (bottom/right)
        to a multiple of ``size_divisibility``, and the list of unpadded ``(H_i, W_i)``.

        The query proposal picks its queries among the stride-16 map's positions, so a batch too
        small for them (a 4:1 panorama or a scan strip under the tiny preset's 96x128 input: 2x8
        positions for 32 queries) is padded further, on its shorter side, until there are enough;
        the official code fails there. Masks are cropped to the image as usual."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        div = self.input_spec.size_divisibility
        height = -(-max(h for h, _ in sizes) // div) * div
        width = -(-max(w for _, w in sizes) // div) * div
        while (height // 16) * (width // 16) < self.decoder.num_queries:
            height, width = (height + div, width) if height <= width else (height, width + div)
        batch = torch.zeros(len(images), 3, height, width, device=self.device)
        for i, im in enumerate(images):
            normalised = (im.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
            batch[i, :, : sizes[i][0], : sizes[i][1]] = normalised
        return batch, sizes

    def forward(self, images: Tensor, mask_guide: Optional[MaskGuide] = None) -> Dict[str, object]:
        """``images (B,3,Hp,Wp)`` from :meth:`preprocess` -> the decoder's output dict (see
        :meth:`FastInstDecoder.forward`), plus ``features`` (the pixel decoder's three maps)."""
        features = self.pixel_decoder(self.backbone(images))
        out = self.decoder(features, mask_guide)
        out["features"] = features
        return out


def upsample_masks(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                   output_size: Optional[Tuple[int, int]] = None) -> Tensor:
    """Official post-processing of mask logits ``(N,h8,w8)`` (or ``(B,N,h8,w8)``):
    bilinear to the padded input size, crop to the image size, bilinear to ``output_size``."""
    squeeze = mask_logits.dim() == 3
    x = mask_logits.unsqueeze(0) if squeeze else mask_logits
    x = F.interpolate(x, size=padded_size, mode="bilinear", align_corners=False)
    x = x[..., : image_size[0], : image_size[1]]
    if output_size is not None and tuple(output_size) != tuple(image_size):
        x = F.interpolate(x, size=tuple(output_size), mode="bilinear", align_corners=False)
    return x[0] if squeeze else x
