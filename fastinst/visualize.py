"""Drawing instance masks over images (used by the CLI's overlay PNGs and by the studio)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np


def palette(n: int, seed: int = 7) -> np.ndarray:
    """``(n,3)`` uint8 distinct, saturated colours (golden-ratio hues), stable for a given ``n``."""
    if n == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    hues = (np.arange(n) * 0.618033988749895 + seed * 0.1) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def overlay_instances(image: np.ndarray, masks: np.ndarray, *, labels: Optional[Sequence[str]] = None,
                      colors: Optional[np.ndarray] = None, alpha: float = 0.5,
                      highlight: Optional[int] = None) -> np.ndarray:
    """``image (H,W,3) uint8``, ``masks (N,H,W) bool`` -> ``(H,W,3) uint8`` with coloured, outlined
    masks and optional text labels at each mask's top-left; ``highlight`` draws one instance thicker."""
    out = image.astype(np.float32).copy()
    colors = palette(len(masks)) if colors is None else colors
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        color = colors[i].astype(np.float32)
        a = min(1.0, alpha + 0.25) if highlight == i else alpha
        out[mask] = out[mask] * (1 - a) + color * a
    out = out.astype(np.uint8)
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = 3 if highlight == i else 1
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colors[i]), thickness)
        if labels is not None:
            ys, xs = np.nonzero(mask)
            _put_label(out, labels[i], int(xs.min()), int(ys.min()), colors[i])
    return out


def _put_label(image: np.ndarray, text: str, x: int, y: int, color: np.ndarray) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    y = max(y, h + base)
    cv2.rectangle(image, (x, y - h - base), (x + w, y), tuple(int(c) for c in color), -1)
    cv2.putText(image, text, (x, y - base), font, scale, (0, 0, 0), 1, cv2.LINE_AA)


def heatmap(values: np.ndarray, image: Optional[np.ndarray] = None, alpha: float = 0.55) -> np.ndarray:
    """``values (H,W)`` in [0,1] -> ``(H,W,3)`` uint8 turbo colormap, blended over ``image`` if given."""
    colored = cv2.applyColorMap((np.clip(values, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    if image is None:
        return colored
    return (image.astype(np.float32) * (1 - alpha) + colored.astype(np.float32) * alpha).astype(np.uint8)
