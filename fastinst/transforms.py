"""Image loading and the official test-time resize (detectron2 ``ResizeShortestEdge``)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

ImageLike = Union[str, Path, Image.Image, np.ndarray]


def load_image(source: ImageLike) -> np.ndarray:
    """Path / PIL image / array -> ``(H,W,3)`` uint8 RGB (EXIF orientation applied for files).

    Grayscale is repeated to three channels and alpha is dropped. Unreadable files raise
    :class:`ImageError` naming the file.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return np.asarray(source.convert("RGB"))
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {path.name}: {exc}") from None


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """detectron2's ``ResizeShortestEdge`` output ``(h, w)``: shortest edge to ``short`` unless the
    longest would exceed ``max_size``; rounded with ``int(x + 0.5)``."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_shortest_edge(image: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """``(H,W,3)`` uint8 -> resized with PIL bilinear, as the official evaluation does."""
    height, width = image.shape[:2]
    new_h, new_w = shortest_edge_size(height, width, short, max_size)
    if (new_h, new_w) == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
