"""Mask encodings, checked against pycocotools as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from scipy import ndimage

from annotations import rle
from annotations.errors import CocoFormatError, InvalidInputError
from annotations.polygons import mask_to_polygons

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def random_masks(count: int, seed: int = 0):
    """Masks of random sizes and densities: noise, blocks, full, single pixels, diagonals."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        kind = index % 4
        if kind == 0:
            mask = rng.random((height, width)) < rng.random()
        elif kind == 1:
            mask = np.zeros((height, width), bool)
            mask[height // 4:height // 2 + 1, width // 3:] = True
        elif kind == 2:
            mask = np.eye(height, width, dtype=bool) | np.eye(height, width, k=2, dtype=bool)
        else:
            mask = np.ones((height, width), bool)
        yield mask


def pycoco_decode(segmentation, height: int, width: int) -> np.ndarray:
    rles = coco_mask.frPyObjects(segmentation, height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def test_counts_string_decoder_matches_pycocotools():
    for mask in random_masks(200):
        height, width = mask.shape
        counts = rle.encode_mask(mask)
        runs = rle.string_to_runs(counts).tolist()
        assert sum(runs) == height * width
        again = coco_mask.frPyObjects({"size": [height, width], "counts": runs}, height, width)
        assert again["counts"].decode() == counts


@pytest.mark.parametrize("counts, message", [
    ("0~", "character '~' is not valid"),
    ("0\u20ac", "character '\u20ac' is not valid"),
    ("0h", "ends in the middle of a number"),
    ("0" + "h" * 12 + "0", "implausibly large"),
])
def test_counts_string_decoder_rejects_garbage(counts: str, message: str):
    with pytest.raises(ValueError, match=message):
        rle.string_to_runs(counts)


def test_encode_decode_area_bbox_agree_with_pycocotools():
    masks = list(random_masks(40, seed=1))
    for mask in masks:
        counts = rle.encode_mask(mask)
        assert np.array_equal(rle.decode_mask(counts, *mask.shape), mask)
        area, bbox = rle.area_and_bbox(counts, *mask.shape)
        encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert area == int(coco_mask.area(encoded))
        assert list(bbox) == coco_mask.toBbox(encoded).tolist()
    stack = np.stack([np.roll(masks[1], i) for i in range(5)])
    assert rle.encode_masks(stack) == [rle.encode_mask(m) for m in stack]
    assert rle.encode_masks(np.zeros((0, 3, 3), bool)) == []


def test_polygons_and_uncompressed_rle_match_pycocotools():
    polygons = [[1, 1, 10, 1, 10, 8], [12.5, 3, 19, 3, 19, 9.75, 12.5, 9]]
    counts = rle.polygons_to_counts(polygons, 12, 20)
    assert np.array_equal(rle.decode_mask(counts, 12, 20), pycoco_decode(polygons, 12, 20))
    runs = [5, 3, 40, 2, 190]
    counts = rle.uncompressed_to_counts(runs, 12, 20)
    expected = coco_mask.decode(
        coco_mask.frPyObjects({"size": [12, 20], "counts": runs}, 12, 20)).astype(bool)
    assert np.array_equal(rle.decode_mask(counts, 12, 20), expected)


def test_mask_to_polygons_is_exact_for_masks_without_holes():
    checked = 0
    for mask in random_masks(200, seed=2):
        filled = ndimage.binary_fill_holes(mask)
        polygons = mask_to_polygons(mask)
        if not filled.any():
            assert polygons == []
            continue
        assert all(len(p) >= 8 and len(p) % 2 == 0 for p in polygons)
        assert np.array_equal(pycoco_decode(polygons, *mask.shape), filled)
        checked += 1
    assert checked > 150


def test_mask_to_polygons_separates_parts_touching_at_a_corner():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    polygons = mask_to_polygons(mask)
    assert sorted(polygons) == [[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
                                [1.0, 1.0, 2.0, 1.0, 2.0, 2.0, 1.0, 2.0]]


def test_mask_to_polygons_fills_holes():
    ring = np.ones((9, 9), bool)
    ring[3:6, 3:6] = False
    [polygon] = mask_to_polygons(ring)
    assert polygon == [0.0, 0.0, 9.0, 0.0, 9.0, 9.0, 0.0, 9.0]


def test_check_mask_rejects_wrong_shape_and_empty():
    assert rle.check_mask(np.ones((2, 3), np.uint8), 2, 3, "x").dtype == bool
    with pytest.raises(InvalidInputError, match=r"^ann 1: mask has shape \(3, 2\)"):
        rle.check_mask(np.ones((3, 2)), 2, 3, "ann 1")
    with pytest.raises(InvalidInputError, match="empty"):
        rle.check_mask(np.zeros((2, 3)), 2, 3, "ann 1")
