"""COCO run-length encoding: the one mask format the store keeps.

A mask is stored as the ``counts`` string of a compressed COCO RLE; its size is the size of the
image it belongs to. Every conversion goes through pycocotools so that what the store holds is,
pixel for pixel, what ``pycocotools.coco.COCO.annToMask`` reads from the exported file.

pycocotools wants Fortran-ordered ``uint8`` arrays and returns ``counts`` as ``bytes``; the
functions here take and return ``bool`` (H, W) arrays and ``str`` counts.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from annotations.errors import InvalidInputError

_FIRST_CHAR = ord("0")
_LAST_CHAR = _FIRST_CHAR + 63


def rle_dict(counts: str, height: int, width: int) -> dict[str, Any]:
    """The pycocotools RLE object (``{"size": [h, w], "counts": bytes}``) for stored counts."""
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _as_uint8(mask: np.ndarray) -> np.ndarray:
    """0/1 ``uint8`` view of a mask (no copy for ``bool`` input; non-zero means set)."""
    array = np.asarray(mask)
    if array.dtype != bool:
        array = array != 0
    return array.view(np.uint8)


def encode_mask(mask: np.ndarray) -> str:
    """Compressed RLE counts of a (H, W) boolean mask."""
    fortran = np.asfortranarray(_as_uint8(mask))
    return coco_mask.encode(fortran)["counts"].decode("ascii")


def encode_masks(masks: Iterable[np.ndarray]) -> list[str]:
    """Compressed RLE counts of each mask of a (N, H, W) stack.

    One mask at a time: transposing each (H, W) slice to Fortran order is cache friendly and
    cheaper than one copy of the whole stack.
    """
    return [encode_mask(mask) for mask in masks]


def decode_mask(counts: str, height: int, width: int) -> np.ndarray:
    """(H, W) boolean mask of stored counts."""
    return coco_mask.decode(rle_dict(counts, height, width)).view(bool)


def iou_matrix(
    counts_a: Sequence[str], counts_b: Sequence[str], height: int, width: int
) -> np.ndarray:
    """(len(a), len(b)) float64 mask IoU of stored counts, computed by pycocotools."""
    if not counts_a or not counts_b:
        return np.zeros((len(counts_a), len(counts_b)))
    a = [rle_dict(c, height, width) for c in counts_a]
    b = [rle_dict(c, height, width) for c in counts_b]
    return np.asarray(coco_mask.iou(a, b, [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


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


def string_to_runs(counts: str) -> np.ndarray:
    """Decode a compressed COCO counts string into its run lengths (int64 array).

    The format packs each number in 5-bit groups, low bits first, one character per group
    (``'0'`` + group): bit 0x20 says another group follows, bit 0x10 of the last group is the sign.
    From the fourth number on, each is stored as the difference to the number two places before.
    Vectorised with numpy; validating large imports is dominated by this function.

    Raises:
        ValueError: a character outside the alphabet, or a number cut off at the end.
    """
    if not counts.isascii():
        raise ValueError(f"character {next(c for c in counts if not c.isascii())!r} is not "
                         f"valid in RLE counts")
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - _FIRST_CHAR
    bad = np.flatnonzero((codes < 0) | (codes > 63))
    if bad.size:
        raise ValueError(f"character {counts[int(bad[0])]!r} is not valid in RLE counts")
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = (codes & 0x20) == 0
    if not last[-1]:
        raise ValueError("counts string ends in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if int((ends - starts).max()) > 11:
        raise ValueError("a run length in the counts string is implausibly large")
    number = np.repeat(np.arange(ends.size), ends - starts + 1)
    shift = 5 * (np.arange(codes.size) - starts[number])
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (ends - starts + 1))[negative]
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


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
