"""QueryInst's test-time resize (mmdetection ``Resize(scale=(1333, 800), keep_ratio=True)``).

The image is scaled by ``s = min(long_cap / long_edge, short_cap / short_edge)``; width and
height are rounded separately (``int(x * s + 0.5)``), so the scale factor is anisotropic:
``(new_w / w, new_h / h)``. Interpolation is OpenCV bilinear (``cv2.INTER_LINEAR``) on uint8, as
``mmcv.imresize`` does; it acts on each channel alone, so RGB and BGR give the same pixels.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def keep_ratio_size(height: int, width: int, short_cap: int, long_cap: int) -> Tuple[int, int]:
    """``(h, w)`` after the keep-ratio resize (mmcv ``rescale_size``)."""
    scale = min(long_cap / max(height, width), short_cap / min(height, width))
    return int(height * float(scale) + 0.5), int(width * float(scale) + 0.5)


def resize_keep_ratio(image: np.ndarray, short_cap: int, long_cap: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """``(H,W,3)`` uint8 -> (resized image, ``(w_scale, h_scale)`` = new size / old size)."""
    height, width = image.shape[:2]
    new_h, new_w = keep_ratio_size(height, width, short_cap, long_cap)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return resized, (new_w / width, new_h / height)
