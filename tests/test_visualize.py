"""The one drawing module (fastinst/visualize.py): the Explain layer panels' pixels."""
from __future__ import annotations

import cv2
import numpy as np

from fastinst import visualize

ADDED, REMOVED = (255, 0, 255), (0, 255, 255)


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def painted(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(image == np.asarray(colour, np.uint8), axis=2)


def test_hatching_is_drawn_on_the_changed_pixels_only() -> None:
    image = np.full((60, 60, 3), 100, np.uint8)
    prev, cur = box(60, 60, 10, 40, 10, 40), box(60, 60, 20, 50, 20, 50)
    out = visualize.hatch_change(image, cur, prev, ADDED, REMOVED)
    added, removed = cur & ~prev, prev & ~cur
    assert painted(out, ADDED).any() and painted(out, REMOVED).any()
    assert not (painted(out, ADDED) & ~added).any()            # never outside what was added
    assert not (painted(out, REMOVED) & ~removed).any()
    assert painted(out, ADDED)[added].mean() > 0.3              # hatched, not a lone dot
    assert painted(out, REMOVED)[removed].mean() > 0.3
    assert np.array_equal(out[~(added | removed)], image[~(added | removed)])   # the rest untouched
    # the region's outline: every pixel of the added region with a neighbour outside it is marked
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    edge = added & ~cv2.erode(added.astype(np.uint8), cross).astype(bool)
    assert painted(out, ADDED)[edge].all()


def test_a_one_pixel_change_is_still_marked() -> None:
    image = np.full((30, 30, 3), 100, np.uint8)
    prev = box(30, 30, 5, 25, 5, 15)
    cur = box(30, 30, 5, 25, 5, 16)                             # one column more
    out = visualize.hatch_change(image, cur, prev, ADDED, REMOVED)
    assert painted(out, ADDED)[:, 15][5:25].all() and painted(out, ADDED).sum() == 20
    assert not painted(out, REMOVED).any()


def test_change_colours_avoid_the_colours_of_the_picture() -> None:
    palette = visualize.CHANGE_PALETTE
    # a crop full of three of the candidates: neither hatching colour may be one of them
    image = np.zeros((30, 90, 3), np.uint8)
    image[:, :30], image[:, 30:60], image[:, 60:] = palette[0], palette[5], palette[1]
    added, removed = visualize.change_colours(image)
    assert added in palette and removed in palette and added != removed
    assert {added, removed}.isdisjoint({palette[0], palette[5], palette[1]})
    # a green object does not get a green "added"
    green = np.zeros((40, 40, 3), np.uint8)
    green[:] = (40, 200, 60)
    assert (128, 255, 0) not in visualize.change_colours(green)
    # the same picture, the same pair; the two are far apart from each other
    assert visualize.change_colours(image) == (added, removed)
    blue, slate = np.full((8, 8, 3), (60, 60, 220), np.uint8), np.full((8, 8, 3), (70, 70, 90), np.uint8)
    for picture in (image, green, blue, slate):
        pair = np.asarray(visualize.change_colours(picture), np.uint8).reshape(2, 1, 3)
        lab = cv2.cvtColor(pair, cv2.COLOR_RGB2LAB).reshape(2, 3).astype(float)
        assert np.linalg.norm(lab[0] - lab[1]) >= 120


def test_crop_box_is_the_masks_box_plus_a_margin_inside_the_image() -> None:
    masks = np.stack([box(100, 100, 20, 30, 40, 50), box(100, 100, 22, 32, 40, 48)])
    assert visualize.crop_box(masks) == (36, 16, 54, 36)          # 10x12 box, margin 4 (the minimum)
    big = np.stack([box(100, 100, 0, 80, 50, 100)])
    assert visualize.crop_box(big) == (38, 0, 100, 100)           # 25% margin, clipped at the edges
    assert visualize.crop_box(np.zeros((2, 50, 70), bool)) == (0, 0, 70, 50)
    boxes = np.array([[10.2, 10.0, 20.0, 20.0]], np.float32)    # a box widens the crop too
    assert visualize.crop_box(np.zeros((1, 50, 70), bool), boxes, margin=0.0, min_margin=0) == (10, 10, 20, 20)


def test_panel_scale_enlarges_by_whole_pixels_and_shrinks_smoothly() -> None:
    assert visualize.panel_scale(20, 10, 480) == 24.0
    assert visualize.panel_scale(1000, 500, 480) == 0.48


def test_layer_panels_show_each_layer_cropped_enlarged_with_its_change() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(60, 200, (64, 96), np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)               # no saturated colour anywhere
    masks = np.stack([box(64, 96, 20, 30, 30, 40), box(64, 96, 20, 30, 30, 44), box(64, 96, 22, 30, 30, 44)])
    panels, added, removed, crop, k = visualize.layer_panels(image, masks, size=240)
    x0, y0, x1, y1 = crop
    assert crop == (26, 16, 48, 34) and k == 10.0
    assert len(panels) == 3 and all(p.shape == ((y1 - y0) * 10, (x1 - x0) * 10, 3) for p in panels)
    assert added in visualize.CHANGE_PALETTE and removed in visualize.CHANGE_PALETTE

    def zoom(mask: np.ndarray) -> np.ndarray:
        return mask[y0:y1, x0:x1].repeat(10, 0).repeat(10, 1)

    assert not (painted(panels[0], added) | painted(panels[0], removed)).any()   # the first has no change
    assert not (painted(panels[1], added) & ~zoom(masks[1] & ~masks[0])).any()
    assert painted(panels[1], added)[zoom(masks[1] & ~masks[0])].mean() > 0.2
    assert not painted(panels[1], removed).any()
    assert not (painted(panels[2], removed) & ~zoom(masks[1] & ~masks[2])).any()
    assert painted(panels[2], removed)[zoom(masks[1] & ~masks[2])].mean() > 0.2
    # far from the mask the image is dimmed; inside it, as it is (each image pixel a 10x10 block)
    crop_img = image[y0:y1, x0:x1].repeat(10, 0).repeat(10, 1)
    assert np.array_equal(panels[2][5, 5], (crop_img[5, 5] * 0.45).astype(np.uint8))
    cy, cx = (26 - y0) * 10 + 5, (37 - x0) * 10 + 5
    assert np.array_equal(panels[2][cy, cx], crop_img[cy, cx])
    # the mask's edge: white on black
    ring = zoom(masks[2]) & ~cv2.erode(zoom(masks[2]).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert painted(panels[2], (255, 255, 255))[ring].mean() > 0.9
