"""The official test-time resize (detectron2 ``ResizeShortestEdge``); image loading is :mod:`fastinst.images`."""
from __future__ import annotations

from typing import Tuple

import numpy as np
from PIL import Image


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """detectron2's ``ResizeShortestEdge`` output ``(h, w)``: shortest edge to ``short`` unless the
    longest would exceed ``max_size``; rounded with ``int(x + 0.5)``, and at least 1 pixel (a
    3x2000 scan strip under the tiny preset's 128 px limit would otherwise have no row)."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def resize_shortest_edge(image: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """``(H,W,3)`` uint8 -> resized with PIL bilinear, as the official evaluation does."""
    height, width = image.shape[:2]
    new_h, new_w = shortest_edge_size(height, width, short, max_size)
    if (new_h, new_w) == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
