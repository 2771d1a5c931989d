"""The official FastInst training augmentation, on tensors.

With probability ``1 - crop_prob``: resize the shortest edge to a size drawn from ``min_sizes``
(longest edge capped at ``max_size``), then flip. Otherwise: resize the shortest edge to one of
``crop_resize_sizes``, crop a random window whose height and width are each drawn uniformly from
``crop_range`` (clipped to the image: detectron2's "absolute_range"), then the same resize and flip.
Masks are resized with nearest neighbour; images with PIL bilinear, as detectron2 does.

:func:`copy_paste` (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for
Instance Segmentation", CVPR 2021) pastes a random subset of another augmented image's objects
onto this one; the objects they cover lose those pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation sizes in pixels; the defaults are the official COCO recipe."""

    min_sizes: Tuple[int, ...] = (416, 448, 480, 512, 544, 576, 608, 640)
    max_size: int = 853
    crop_prob: float = 0.5
    crop_resize_sizes: Tuple[int, ...] = (400, 500, 600)
    crop_range: Tuple[int, int] = (384, 600)
    flip_prob: float = 0.5

    def scaled(self, factor: float) -> "AugmentConfig":
        """The same recipe with every size multiplied by ``factor`` (for small synthetic images)."""
        r = lambda v: max(8, int(round(v * factor)))  # noqa: E731
        return replace(
            self,
            min_sizes=tuple(r(s) for s in self.min_sizes),
            max_size=r(self.max_size),
            crop_resize_sizes=tuple(r(s) for s in self.crop_resize_sizes),
            crop_range=(r(self.crop_range[0]), r(self.crop_range[1])),
        )


def augment_for(min_test_size: int) -> AugmentConfig:
    """The official recipe for a model tested at shortest edge ``min_test_size``: unchanged for the
    released presets (576 and 640 both train with 416..640), scaled by ``min_test_size / 640``
    for smaller models (e.g. the tiny preset on small images), so train and test scales agree."""
    official = AugmentConfig()
    return official if min_test_size >= 576 else official.scaled(min_test_size / 640)


def shortest_edge_shape(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """Output ``(h, w)`` when the shorter side becomes ``short`` and the longer at most ``max_size``
    (detectron2 ``ResizeShortestEdge`` rounding)."""
    scale = short / min(h, w)
    new_h, new_w = h * scale, w * scale
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize(image: Tensor, masks: Tensor, shape: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Resize ``image (3,H,W) uint8`` and ``masks (N,H,W) bool`` to ``shape (h, w)``."""
    if tuple(image.shape[-2:]) == tuple(shape):
        return image, masks
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((shape[1], shape[0]), Image.BILINEAR)
    image = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).contiguous()
    if masks.shape[0]:
        masks = F.interpolate(masks[None].to(torch.uint8), size=shape, mode="nearest")[0].bool()
    else:
        masks = torch.zeros(0, *shape, dtype=torch.bool)
    return image, masks


def crop_window(h: int, w: int, crop_range: Tuple[int, int], rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """A random ``(top, left, height, width)`` window; each side uniform in ``crop_range`` clipped to the image."""
    lo, hi = crop_range
    ch = int(rng.integers(min(h, lo), min(h, hi) + 1))
    cw = int(rng.integers(min(w, lo), min(w, hi) + 1))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


def resize_shortest(image: Tensor, masks: Tensor, sizes: Tuple[int, ...], max_size: int,
                    rng: np.random.Generator) -> Tuple[Tensor, Tensor]:
    """Resize so the shorter edge is a random choice of ``sizes`` (longer edge <= ``max_size``)."""
    short = int(sizes[int(rng.integers(0, len(sizes)))])
    h, w = image.shape[-2:]
    return resize(image, masks, shortest_edge_shape(h, w, short, max_size))


def augment(image: Tensor, masks: Tensor, config: AugmentConfig, rng: np.random.Generator) -> Tuple[Tensor, Tensor]:
    """Apply the training augmentation: ``image (3,H,W) uint8``, ``masks (N,H,W) bool`` -> same, new size.

    Masks that become empty (cropped away) are kept here; the dataset drops them with their labels.
    """
    if rng.random() < config.crop_prob:
        image, masks = resize_shortest(image, masks, config.crop_resize_sizes, 10**9, rng)
        top, left, ch, cw = crop_window(image.shape[-2], image.shape[-1], config.crop_range, rng)
        image = image[:, top:top + ch, left:left + cw]
        masks = masks[:, top:top + ch, left:left + cw]
    image, masks = resize_shortest(image, masks, config.min_sizes, config.max_size, rng)
    if rng.random() < config.flip_prob:
        image, masks = image.flip(-1), masks.flip(-1)
    return image.contiguous(), masks.contiguous()


def copy_paste(image: Tensor, masks: Tensor, labels: Tensor, source: Tensor, source_masks: Tensor,
               source_labels: Tensor, rng: np.random.Generator) -> Tuple[Tensor, Tensor, Tensor]:
    """Paste a random non-empty subset of the source's objects at the top-left corner of the image.

    ``image (3,H,W) uint8``, ``masks (N,H,W) bool``, ``labels (N,) int64`` and the source's alike
    (any size: the part outside ``H x W`` is cut off) -> the image with the objects' pixels, the
    masks of its own objects minus the pasted pixels (objects left empty are dropped), then the
    pasted objects' masks; labels to match. A source without objects changes nothing.
    """
    h, w = image.shape[-2:]
    sh, sw = min(h, source.shape[-2]), min(w, source.shape[-1])
    placed = torch.zeros(source_masks.shape[0], h, w, dtype=torch.bool)
    placed[:, :sh, :sw] = source_masks[:, :sh, :sw]
    visible = placed.flatten(1).any(1)
    if not bool(visible.any()):
        return image, masks, labels
    candidates = torch.nonzero(visible).flatten().numpy()
    chosen = rng.choice(candidates, size=int(rng.integers(1, len(candidates) + 1)), replace=False)
    chosen = torch.from_numpy(np.sort(chosen))
    pasted = placed[chosen]
    covered = pasted.any(0)
    out = image.clone()
    out[:, :sh, :sw] = torch.where(covered[:sh, :sw], source[:, :sh, :sw], image[:, :sh, :sw])
    kept = masks & ~covered
    alive = kept.flatten(1).any(1) if kept.shape[0] else torch.zeros(0, dtype=torch.bool)
    return (out, torch.cat([kept[alive], pasted]), torch.cat([labels[alive], source_labels[chosen]]))
