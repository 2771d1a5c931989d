"""COCO run-length encoding: the one mask format the store keeps.

A mask is stored as the ``counts`` string of a compressed COCO RLE; its size is the size of the
image it belongs to. Every conversion goes through pycocotools so that what the store holds is,
pixel for pixel, what ``pycocotools.coco.COCO.annToMask`` reads from the exported file.

pycocotools wants Fortran-ordered ``uint8`` arrays and returns ``counts`` as ``bytes``; the
functions here take and return ``bool`` (H, W) arrays and ``str`` counts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from annotations.errors import CocoFormatError, InvalidInputError

_FIRST_CHAR = ord("0")
_LAST_CHAR = _FIRST_CHAR + 63


def rle_dict(counts: str, height: int, width: int) -> dict[str, Any]:
    """The pycocotools RLE object (``{"size": [h, w], "counts": bytes}``) for stored counts."""
    return {"size": [height, width], "counts": counts.encode("ascii")}


def encode_mask(mask: np.ndarray) -> str:
    """Compressed RLE counts of a (H, W) boolean mask."""
    fortran = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    return coco_mask.encode(fortran)["counts"].decode("ascii")


def encode_masks(masks: np.ndarray) -> list[str]:
    """Compressed RLE counts of a stack of (N, H, W) boolean masks, in one pycocotools call."""
    if len(masks) == 0:
        return []
    stacked = np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0))
    return [rle["counts"].decode("ascii") for rle in coco_mask.encode(stacked)]


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """(H, W) boolean mask of stored counts."""
    return coco_mask.decode(rle_dict(counts, height, width)).astype(bool)


def area_and_bbox(counts: str, height: int, width: int) -> tuple[int, tuple[float, ...]]:
    """Pixel area and ``[x, y, w, h]`` box of stored counts, computed by pycocotools."""
    rle = rle_dict(counts, height, width)
    area = int(coco_mask.area(rle))
    bbox = tuple(float(v) for v in coco_mask.toBbox(rle))
    return area, bbox


def polygons_to_counts(polygons: Sequence[Sequence[float]], height: int, width: int) -> str:
    """Rasterise a (multi-part) COCO polygon; the parts are merged (union), as COCO does."""
    parts = coco_mask.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return coco_mask.merge(parts)["counts"].decode("ascii")


def uncompressed_to_counts(counts: Sequence[int], height: int, width: int) -> str:
    """Compress an uncompressed RLE (list of run lengths, column-major, starting with zeros)."""
    rle = coco_mask.frPyObjects({"size": [height, width], "counts": list(counts)}, height, width)
    return rle["counts"].decode("ascii")


def string_to_runs(counts: str) -> list[int]:
    """Decode a compressed COCO counts string into its run lengths.

    The format packs each run length in 5-bit groups (low bits first) stored as characters from
    ``'0'`` upward; bit 0x20 of a character says another group follows and bit 0x10 of the last one
    is the sign. From the third run on, the value is a difference to the run two places before.

    Raises:
        ValueError: a character outside the alphabet, or a number cut off at the end.
    """
    runs: list[int] = []
    pos, end = 0, len(counts)
    while pos < end:
        value, shift, more = 0, 0, True
        while more:
            if pos >= end:
                raise ValueError("counts string ends in the middle of a number")
            code = ord(counts[pos])
            if not _FIRST_CHAR <= code <= _LAST_CHAR:
                raise ValueError(f"character {counts[pos]!r} is not valid in RLE counts")
            group = code - _FIRST_CHAR
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def check_runs(runs: Sequence[int], height: int, width: int, where: str) -> None:
    """Raise :class:`CocoFormatError` unless the runs are non-negative and cover H*W pixels."""
    if any(r < 0 for r in runs):
        raise CocoFormatError(f"{where}: RLE counts contain a negative run length")
    total = sum(runs)
    if total != height * width:
        raise CocoFormatError(
            f"{where}: RLE counts cover {total} pixels but the {width}x{height} image has "
            f"{height * width}"
        )


def check_mask(mask: np.ndarray, height: int, width: int, what: str) -> np.ndarray:
    """Validate a mask handed to the store and return it as a (H, W) bool array.

    Raises:
        InvalidInputError: wrong number of dimensions, wrong size, or no pixel set.
    """
    array = np.asarray(mask)
    if array.shape != (height, width):
        raise InvalidInputError(
            f"{what}: mask has shape {array.shape} but the image is {height}x{width} (HxW)"
        )
    array = array.astype(bool, copy=False)
    if not array.any():
        raise InvalidInputError(f"{what}: mask is empty (no pixel set)")
    return array
