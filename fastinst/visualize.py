"""The one drawing module: instance overlays, activation heatmaps, boxes, per-layer mask panels.

The CLI's overlay PNGs (``python -m fastinst predict``) and every picture of the studio (``app/``)
are drawn here; the browser canvas (``app/canvas.py``) takes its instance colours from
:func:`colour_for`, so an instance has one colour everywhere. Every drawing function takes plain
numpy arrays and returns an ``(H, W, 3)`` uint8 RGB image, so it can be tested without Gradio.
Colours are RGB tuples; points and boxes are (x, y) pixels; masks (H,W) or (N,H,W) bool.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

RGB = tuple[int, int, int]

# Twenty well-separated colours (Kelly's list, minus white/black/greys), in RGB.
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 99, 71),
)

# What a layer changed in a query's mask is drawn in two of these, chosen per picture (see
# ``change_colours``): saturated, far apart from each other, none of them the instance palette's job.
CHANGE_PALETTE: tuple[RGB, ...] = (
    (255, 0, 255), (0, 255, 255), (255, 255, 0), (255, 128, 0), (0, 80, 255), (128, 255, 0),
)


def colour_for(key: int) -> RGB:
    """A stable colour for an instance key (annotation id or prediction index)."""
    return PALETTE[int(key) % len(PALETTE)]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any uint8 image (H,W), (H,W,1), (H,W,3) or (H,W,4) -> contiguous (H,W,3) uint8 RGB."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def instance_id_map(masks: np.ndarray) -> np.ndarray:
    """(N,H,W) bool -> (H,W) int32: index of the top instance at each pixel, -1 where none.

    Instance 0 is on top (masks are sorted by score, best first), so it is painted last.
    """
    n = len(masks)
    h, w = masks.shape[1:] if n else (0, 0)
    ids = np.full((h, w), -1, np.int32)
    for i in range(n - 1, -1, -1):
        ids[masks[i]] = i
    return ids


def instance_at(masks: np.ndarray, x: int, y: int) -> int | None:
    """Index of the top-most instance whose mask covers pixel (x, y), or None."""
    if len(masks) == 0:
        return None
    h, w = masks.shape[1:]
    if not (0 <= x < w and 0 <= y < h):
        return None
    hits = np.flatnonzero(masks[:, y, x])
    return int(hits[0]) if len(hits) else None


def _draw_outline(canvas: np.ndarray, mask: np.ndarray, colour: RGB, thickness: int) -> None:
    """Draw the outer and inner (hole) contours of a bool mask onto ``canvas`` in place."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, thickness, lineType=cv2.LINE_AA)


def _draw_label(canvas: np.ndarray, text: str, x: int, y: int, colour: RGB) -> None:
    """A readable text tag with a filled background whose top-left corner is near (x, y)."""
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(np.clip(x, 0, max(0, canvas.shape[1] - tw - 4)))
    y = int(np.clip(y, th + base + 2, canvas.shape[0] - 1))
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y), colour, -1)
    dark = sum(colour) > 380
    cv2.putText(canvas, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0) if dark else (255, 255, 255), 1, cv2.LINE_AA)


def blend(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-pixel ``base * (1 - w) + colour * w`` for uint8 RGB images, ``weight`` (H,W) float32
    in [0,1] (OpenCV's blendLinear: an order of magnitude faster than numpy for full images)."""
    weight = np.ascontiguousarray(weight, np.float32)
    return cv2.blendLinear(base, np.ascontiguousarray(colour), 1.0 - weight, weight)


def overlay_instances(image: np.ndarray, masks: np.ndarray, colours: Sequence[RGB],
                      labels: Sequence[str] | None = None, selected: int | None = None,
                      alpha: float = 0.45, anchors: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Blend each instance's colour over the image, outline it, and tag it with its label.

    masks: (N,H,W) bool, best first; colours: N RGB tuples; labels: N strings or None;
    selected: index drawn opaque-ish with a thick white outline while the others are dimmed;
    anchors: N (x, y) label positions (default: each mask's top-left corner).
    """
    base = as_rgb(image)
    if len(masks) == 0:
        return base.copy()
    ids = instance_id_map(masks)
    lut = np.asarray(list(colours) + [(0, 0, 0)], np.uint8)  # index -1 -> last row
    weights = np.full(len(masks) + 1, alpha, np.float32)
    weights[-1] = 0.0
    if selected is not None:
        weights[:-1] = alpha * 0.5
        weights[selected] = min(0.75, alpha + 0.25)
    out = blend(base, np.take(lut, ids, axis=0), np.take(weights, ids))
    for i, mask in enumerate(masks):
        if i != selected:
            _draw_outline(out, mask, colours[i], 1)
    if selected is not None:
        _draw_outline(out, masks[selected], (255, 255, 255), 3)
    if labels is not None:
        for i, mask in enumerate(masks):
            if anchors is not None:
                x, y = anchors[i]
            else:
                ys, xs = np.nonzero(mask)
                if not len(xs):
                    continue
                x, y = int(xs.min()), int(ys.min())
            _draw_label(out, labels[i], x, y, colours[i])
    return out


def colormap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """(H,W) float -> (H,W,3) uint8 RGB with the turbo colormap (blue = low, red = high)."""
    scaled = np.clip((values - vmin) / max(vmax - vmin, 1e-6), 0.0, 1.0)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_bar(width: int, title: str, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """A horizontal key for ``colormap``: (H,W,3) uint8, ``width`` pixels wide, the gradient from
    ``vmin`` to ``vmax`` with ticks at both ends and the middle, and ``title`` above it."""
    scale = max(0.4, width / 1400)
    (_, th), base = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    line = th + base + 6
    out = np.full((3 * line + 14, width, 3), 255, np.uint8)
    cv2.putText(out, title, (4, line - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    out[line:line + 14 + line // 2, 4:width - 4] = colormap(np.linspace(vmin, vmax, max(1, width - 8))[None, :],
                                                            vmin, vmax)
    for frac in (0.0, 0.5, 1.0):
        x = int(4 + frac * (width - 9))
        text = f"{vmin + frac * (vmax - vmin):g}"
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        tx = int(np.clip(x - tw // 2, 2, width - tw - 2))
        cv2.putText(out, text, (tx, out.shape[0] - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def heatmap_overlay(image: np.ndarray, activation: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a [0,1] activation map (H,W) over a greyed copy of the image, colour-mapped."""
    base = as_rgb(image)
    grey = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    heat = colormap(activation)
    if heat.shape[:2] != base.shape[:2]:
        heat = cv2.resize(heat, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(grey, 1.0 - alpha, heat, alpha, 0.0)


def mark_points(image: np.ndarray, points: np.ndarray, highlight: Sequence[int] = (),
                highlight_colours: Sequence[RGB] = (), emphasis: int | None = None,
                highlight_labels: Sequence[str] = ()) -> np.ndarray:
    """Mark query locations (Q,2) (x, y) pixels: small white dots; highlighted ones as coloured
    rings, each tagged with its ``highlight_labels`` entry (e.g. the instance id) when given;
    ``emphasis`` (one query index) as a large ring with a cross so it stands out."""
    out = as_rgb(image).copy()
    r = max(2, min(out.shape[:2]) // 160)
    for x, y in np.asarray(points, np.float32).reshape(-1, 2):
        cv2.circle(out, (int(round(x)), int(round(y))), r, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, (int(round(x)), int(round(y))), r, (0, 0, 0), 1, cv2.LINE_AA)
    for q, colour in zip(highlight, highlight_colours):
        x, y = (int(round(v)) for v in points[q])
        cv2.circle(out, (x, y), 3 * r, colour, 2, cv2.LINE_AA)
    for q, colour, text in zip(highlight, highlight_colours, highlight_labels):
        x, y = (int(round(v)) for v in points[q])
        _draw_label(out, text, x + 3 * r, y - 3 * r, colour)
    if emphasis is not None:
        x, y = (int(round(v)) for v in points[emphasis])
        cv2.circle(out, (x, y), 6 * r, (0, 0, 0), 5, cv2.LINE_AA)
        cv2.circle(out, (x, y), 6 * r, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.drawMarker(out, (x, y), (255, 255, 255), cv2.MARKER_CROSS, 8 * r, 2, cv2.LINE_AA)
    return out


def draw_boxes(image: np.ndarray, boxes: np.ndarray, colours: Sequence[RGB], thickness: int = 1) -> np.ndarray:
    """(N,4) xyxy pixel boxes drawn as rectangles in their colours (one colour per box)."""
    out = as_rgb(image).copy()
    for box, colour in zip(np.asarray(boxes, np.float32).reshape(-1, 4), colours):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
    return out


def box_track(image: np.ndarray, proposals: np.ndarray, boxes: np.ndarray, colours: Sequence[RGB],
              track: np.ndarray | None = None, colour: RGB = (255, 255, 255)) -> np.ndarray:
    """Every proposal box (N,4) as a thin grey rectangle, ``boxes`` (M,4) in ``colours``, and one
    query's ``track`` (S+1,4: its proposal, then its box after every stage) from dark to ``colour``,
    its centres joined, so how each stage moved the box is visible. Boxes xyxy in pixels."""
    out = draw_boxes(image, proposals, [(150, 150, 150)] * len(proposals), 1)
    out = draw_boxes(out, boxes, colours, 2)
    if track is None:
        return out
    track = np.asarray(track, np.float32)
    n = len(track)
    for i, box in enumerate(track):
        w = (i + 1) / n
        shade = tuple(int(round(c * (0.3 + 0.7 * w))) for c in colour)
        out = draw_boxes(out, box[None], [shade], 3 if i == n - 1 else 1)
    centres = np.stack([(track[:, 0] + track[:, 2]) / 2, (track[:, 1] + track[:, 3]) / 2], 1)
    cv2.polylines(out, [np.round(centres).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    return out


def change_colours(image: np.ndarray, palette: Sequence[RGB] = CHANGE_PALETTE,
                   min_apart: float = 120.0) -> tuple[RGB, RGB]:
    """(added, removed): the two ``palette`` colours that stand out most against ``image``.

    A fixed "added = green" vanishes on a green object. Instead each candidate is scored by how far
    (L*a*b* distance, roughly what the eye sees as different; OpenCV's 8-bit L*a*b*, L scaled to
    0..255) the image's colours nearest to it are: the 2nd percentile of its distances to the
    image's pixels (a few stray pixels of that colour do not disqualify it). The best is "added";
    "removed" is the best of those at least ``min_apart`` from "added" (another hue: never yellow
    beside orange), or the farthest from it when none is. Ties go to the earlier palette entry, so
    one picture always gets the same pair. ``image`` (H,W,3) uint8 RGB.
    """
    rgb = as_rgb(image)
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 4096)))      # about 4096 samples
    sample = np.ascontiguousarray(rgb[::step, ::step]).reshape(-1, 1, 3)
    lab = cv2.cvtColor(sample, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    cand = cv2.cvtColor(np.asarray(palette, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB)
    cand = cand.reshape(-1, 3).astype(np.float32)
    distance = np.linalg.norm(cand[:, None, :] - lab[None, :, :], axis=2)   # (C, P)
    score = np.percentile(distance, 2, axis=1)
    first = int(np.argmax(score))                   # argmax: the first of equals
    mutual = np.linalg.norm(cand - cand[first], axis=1)
    second = np.where(mutual >= min_apart, score, -1.0)
    if second.max() < 0:
        second = mutual
    second[first] = -1.0
    return tuple(palette[first]), tuple(palette[int(np.argmax(second))])


def hatch_change(image: np.ndarray, mask: np.ndarray, previous: np.ndarray, added: RGB, removed: RGB,
                 spacing: int = 6) -> np.ndarray:
    """What one layer changed in a mask, drawn over ``image`` (H,W,3) uint8: the pixels it added
    (in ``mask`` (H,W) bool, not in ``previous``) hatched ``/`` in ``added``, the pixels it removed
    hatched ``\\`` in ``removed``, each region also outlined in its colour so a one-pixel sliver
    shows. Both are drawn only on changed pixels (never outside them), 1-pixel lines every
    ``spacing`` pixels; returns a new image."""
    out = as_rgb(image).copy()
    h, w = mask.shape
    rows, cols = np.ogrid[:h, :w]
    for region, colour, lines in ((mask & ~previous, added, (rows + cols) % spacing < 2),
                                  (previous & ~mask, removed, (cols - rows) % spacing < 2)):
        if not region.any():
            continue
        out[region & lines] = colour
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 1, lineType=cv2.LINE_8)
    return out


def outline_pair(image: np.ndarray, mask: np.ndarray) -> None:
    """Outline a bool mask (H,W) in place as a white line on a black one: visible on any image."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(image, contours, -1, (0, 0, 0), 3, lineType=cv2.LINE_8)
    cv2.drawContours(image, contours, -1, (255, 255, 255), 1, lineType=cv2.LINE_8)


def crop_box(layer_masks: np.ndarray, boxes: np.ndarray | None = None, margin: float = 0.25,
             min_margin: int = 4, stray: float = 0.01) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), pixels, x1/y1 exclusive: the box around a query's masks of every layer
    (L,H,W) bool and its boxes (L,4) xyxy if given, widened by ``margin`` times its size on each
    side (at least ``min_margin`` pixels) and clipped to the image; the whole image when all the
    masks are empty and there are no boxes. Stray pixels do not widen it: a layer's mask of 100
    pixels or more spans from its ``stray`` to its ``1 - stray`` quantile of x and of y (an early
    head's mask often has a few pixels scattered over the image)."""
    h, w = layer_masks.shape[1:]
    lows, highs = [], []
    for mask in layer_masks:
        ys, xs = np.nonzero(mask)
        if not len(xs):
            continue
        q = (stray, 1 - stray) if len(xs) >= 100 else (0.0, 1.0)
        (xa, xb), (ya, yb) = np.quantile(xs, q, method="nearest"), np.quantile(ys, q, method="nearest")
        lows.append((xa, ya))
        highs.append((xb + 1, yb + 1))
    if boxes is not None and len(boxes):
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        lows.append((np.floor(b[:, 0].min()), np.floor(b[:, 1].min())))
        highs.append((np.ceil(b[:, 2].max()), np.ceil(b[:, 3].max())))
    if not lows:
        return 0, 0, w, h
    x0, y0 = np.min(lows, axis=0)
    x1, y1 = np.max(highs, axis=0)
    mx = max(min_margin, int(round((x1 - x0) * margin)))
    my = max(min_margin, int(round((y1 - y0) * margin)))
    x0, y0 = int(np.clip(x0 - mx, 0, w - 1)), int(np.clip(y0 - my, 0, h - 1))
    x1, y1 = int(np.clip(x1 + mx, x0 + 1, w)), int(np.clip(y1 + my, y0 + 1, h))
    return x0, y0, x1, y1


def panel_scale(width: int, height: int, size: int) -> float:
    """The zoom that makes a ``width`` x ``height`` crop ``size`` pixels on its long side: a whole
    number when enlarging (each image pixel an exact square), a fraction when shrinking."""
    k = size / max(1, width, height)
    return float(max(1, int(k))) if k >= 1 else k


def layer_panels(image: np.ndarray, layer_masks: np.ndarray, layer_boxes: np.ndarray | None = None,
                 size: int = 480) -> tuple[list[np.ndarray], RGB, RGB, tuple[int, int, int, int], float]:
    """One query's mask after every layer, cropped around it and scaled up so a layer's change
    is visible. ``image`` (H,W,3) uint8, ``layer_masks`` (L,H,W) bool at image size,
    ``layer_boxes`` (L,4) xyxy image pixels or None.

    Returns (L panels, added colour, removed colour, crop (x0, y0, x1, y1) image pixels, scale):
    each panel is the crop (:func:`crop_box`) zoomed by ``scale`` (:func:`panel_scale`, nearest
    neighbour for the masks) with the image dimmed outside that layer's mask, the mask outlined
    white on black, its box (if any) as a white-on-black rectangle, and, from the second layer on,
    what the layer changed (:func:`hatch_change` in :func:`change_colours` of the crop, one pair
    for all panels of the query, so "added" has one colour across them).
    """
    base = as_rgb(image)
    x0, y0, x1, y1 = crop_box(layer_masks, layer_boxes)
    k = panel_scale(x1 - x0, y1 - y0, size)
    pw, ph = max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))
    crop = cv2.resize(base[y0:y1, x0:x1], (pw, ph),
                      interpolation=cv2.INTER_NEAREST if k >= 1 else cv2.INTER_AREA)
    dim = (crop * 0.45).astype(np.uint8)
    added, removed = change_colours(np.concatenate([crop, dim], axis=0))
    masks = [cv2.resize(np.ascontiguousarray(m[y0:y1, x0:x1]).astype(np.uint8), (pw, ph),
                        interpolation=cv2.INTER_NEAREST).astype(bool) for m in layer_masks]
    panels = []
    for i, mask in enumerate(masks):
        out = np.where(mask[:, :, None], crop, dim)
        if i > 0:
            out = hatch_change(out, mask, masks[i - 1], added, removed)
        outline_pair(out, mask)
        if layer_boxes is not None:
            bx0, by0, bx1, by1 = ((np.asarray(layer_boxes[i], np.float32) - [x0, y0, x0, y0]) * k).round().astype(int)
            cv2.rectangle(out, (int(bx0), int(by0)), (int(bx1), int(by1)), (0, 0, 0), 3, cv2.LINE_8)
            cv2.rectangle(out, (int(bx0), int(by0)), (int(bx1), int(by1)), (255, 255, 255), 1, cv2.LINE_8)
        panels.append(out)
    return panels, added, removed, (x0, y0, x1, y1), k


def polygon_mask(points: Sequence[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """Rasterise a closed polygon of (x, y) vertices into an (H,W) bool mask; size is (H, W)."""
    mask = np.zeros(size, np.uint8)
    if len(points) >= 3:
        cv2.fillPoly(mask, [np.asarray(points, np.int32).reshape(-1, 2)], 1)
    return mask.astype(bool)


def title_bar(canvas: np.ndarray, text: str) -> None:
    """Write ``text`` on a dark band across the top of ``canvas`` (in place)."""
    band = max(18, canvas.shape[0] // 22)
    canvas[:band] = (canvas[:band] * 0.35).astype(np.uint8)
    cv2.putText(canvas, text, (6, band - 5), cv2.FONT_HERSHEY_SIMPLEX, band / 30, (255, 255, 255), 1,
                cv2.LINE_AA)


def display_factor(height: int, width: int, min_side: int = 400) -> int:
    """Integer zoom that makes a small image at least ``min_side`` pixels on its short side on
    screen (1 for ordinary photos), so masks and labels stay legible."""
    return max(1, -(-min_side // max(1, min(height, width))))


def enlarge(image: np.ndarray, k: int) -> np.ndarray:
    """An image zoomed by the integer ``k`` (bilinear); the same array when k == 1."""
    if k == 1:
        return image
    return cv2.resize(image, (image.shape[1] * k, image.shape[0] * k), interpolation=cv2.INTER_LINEAR)


def enlarge_masks(masks: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) bool masks zoomed by the integer ``k`` (each pixel becomes a k x k block)."""
    if k == 1:
        return masks
    return masks.repeat(k, axis=-2).repeat(k, axis=-1)
