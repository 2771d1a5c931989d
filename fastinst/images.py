"""The one image loader: every file the project shows, predicts on, trains on or sizes comes here.

Rules (each fixes a real file that broke an entry point, see ``shared/cases``):

- EXIF orientation is applied (``ImageOps.exif_transpose``), and the size reported by
  :func:`image_size` is the size *after* it, so a phone JPEG stored 40x24 with Orientation=6 is a
  24x40 image everywhere.
- Every mode becomes 8-bit RGB with its contrast kept: 16-bit and 32-bit integer and float images
  are scaled linearly from their real range ``[min, max]`` to ``[0, 255]`` (not clipped at 255,
  not wrapped); palette, grey, grey+alpha, RGBA and CMYK go through Pillow's conversions (alpha is
  dropped, not composited).
- A pixel limit (default :data:`DEFAULT_MAX_PIXELS`, ``FASTINST_MAX_PIXELS`` in the environment or
  the ``max_pixels`` argument) is checked from the header, before any pixel is decoded; a larger
  image raises :class:`ImageTooLargeError` naming the file, its size and how to raise the limit.
  Pillow's own decompression-bomb check is replaced by this one.
- An unreadable or corrupt file raises :class:`ImageError` naming the file; never a raw traceback.
  :func:`image_size` reads the header only; :func:`decoded_size` also decodes every pixel (a JPEG
  truncated at the end has a good header), as imports do once per new image.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError

ImageLike = Union[str, Path, Image.Image, np.ndarray]

DEFAULT_MAX_PIXELS = 100_000_000
"""Default pixel limit (100 Mpx: a 12000x8000 photo fits; a 16000x12000 orthophoto does not)."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif", ".heic",
                            ".heif"})
"""File suffixes (lower case) that folder scans treat as images. Phone photos (HEIC/HEIF, AVIF) are
scanned too, also where this Pillow has no decoder for them: such a file is then named with the
reason (:func:`_open`) rather than passed over without a word."""

_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def max_pixels(limit: Optional[int] = None) -> int:
    """The pixel limit in force: ``limit`` if given, else ``$FASTINST_MAX_PIXELS``, else the default.

    Raises:
        ImageError: ``$FASTINST_MAX_PIXELS`` is not a positive integer.
    """
    if limit is not None:
        return int(limit)
    raw = os.environ.get("FASTINST_MAX_PIXELS")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ImageError(f"FASTINST_MAX_PIXELS must be a positive integer, got {raw!r}")
    return value


def image_size(path: Union[str, Path], *, limit: Optional[int] = None) -> Tuple[int, int]:
    """``(width, height)`` in pixels of an image file after EXIF orientation, from its header only.

    Raises:
        ImageError: missing, unreadable or corrupt file (the message names it).
        ImageTooLargeError: more pixels than the limit (see :func:`max_pixels`).
    """
    path = Path(path)
    with _open(path) as im:
        width, height = im.size
        _check_pixels(path, width, height, limit)
        if _orientation(im) in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
    return width, height


def decoded_size(path: Union[str, Path], *, limit: Optional[int] = None) -> Tuple[int, int]:
    """``(width, height)`` after EXIF orientation, like :func:`image_size`, after decoding every
    pixel once (what an import does with a new file): a file truncated at the end or corrupt in its
    data, whose header reads fine, is refused here rather than in a training worker.

    Raises:
        ImageError: missing, unreadable, truncated or corrupt file (the message names it).
        ImageTooLargeError: more pixels than the limit, checked before decoding.
    """
    path = Path(path)
    width, height = image_size(path, limit=limit)
    with _open(path) as im:
        try:
            im.load()
        except _READ_ERRORS as exc:
            raise ImageError(f"cannot decode image {path.name}: {exc}") from None
    return width, height


def load_image(source: ImageLike, *, limit: Optional[int] = None) -> np.ndarray:
    """Path, PIL image or array -> ``(H, W, 3)`` uint8 RGB, rows first (pixel (x, y) is ``[y, x]``).

    Files get EXIF orientation applied; PIL images and arrays are taken as they are (PIL images are
    not rotated: their EXIF is the caller's business). Arrays may be ``(H,W)``, ``(H,W,1)``,
    ``(H,W,3)`` or ``(H,W,4)`` of any integer or float dtype; uint8 passes unchanged, float arrays in
    ``[0, 1]`` are scaled by 255, any other dtype by its real range.

    Raises:
        ImageError: missing, unreadable or corrupt file, or an array of another shape.
        ImageTooLargeError: a file with more pixels than the limit (see :func:`max_pixels`).
    """
    if isinstance(source, torch.Tensor):
        raise ImageError(f"a torch tensor of shape {tuple(source.shape)} is not an image here: pass a path, "
                         f"a PIL image or an (H, W, 3) uint8 numpy array")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    path = Path(source)
    with _open(path) as im:
        _check_pixels(path, *im.size, limit)
        try:
            return _pil_to_rgb(ImageOps.exif_transpose(im))
        except _READ_ERRORS as exc:
            raise ImageError(f"cannot decode image {path.name}: {exc}") from None


def _open(path: Path) -> Image.Image:
    """Open lazily (header only) with Pillow's bomb check off: :func:`_check_pixels` replaces it."""
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except _READ_ERRORS as exc:
        raise ImageError(f"cannot read image {path.name}: {exc}{_no_decoder(path)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _no_decoder(path: Path) -> str:
    """A hint when Pillow here has no decoder for the file's suffix (``.heic`` without pillow-heif)."""
    suffix = path.suffix.lower()
    if suffix and suffix not in Image.registered_extensions():
        return f" (this Pillow has no decoder for {suffix} files: convert them to JPEG or PNG)"
    return ""


def _check_pixels(path: Path, width: int, height: int, limit: Optional[int]) -> None:
    allowed = max_pixels(limit)
    if width * height > allowed:
        raise ImageTooLargeError(
            f"{path.name} is {width}x{height} ({width * height:,} pixels), over the pixel limit of "
            f"{allowed:,}; raise it with --max-pixels or FASTINST_MAX_PIXELS, or tile the image")


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except (_READ_ERRORS + (TypeError,)):
        return 1


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ``(H,W,3)`` uint8 RGB (see the module rules)."""
    if im.mode in ("RGB", "L", "P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "1", "RGBX", "La"):
        return np.asarray(im.convert("RGB"))
    return _array_to_rgb(np.asarray(im))  # I;16*, I, F: scale by the real range


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        hint = " (channels first? an image array is rows x columns x channels)" if array.ndim == 3 and \
            array.shape[0] in (1, 3, 4) else ""
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}{hint}")
    if 0 in array.shape[:2]:
        raise ImageError(f"the image array has no pixels (shape {array.shape})")
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a non-uint8 array to uint8 keeping its contrast: floats in [0, 1] by 255, else by range."""
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(array.shape, dtype=np.uint8)
    values = np.where(finite, values, 0.0)
    low, high = float(values[finite].min()), float(values[finite].max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif np.issubdtype(array.dtype, np.bool_):
        low, high = 0.0, 1.0
    if high <= low:  # a constant image: scale by the dtype's nominal range instead
        top = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
        low, high = min(0.0, low), max(top, high)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
