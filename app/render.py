"""Pictures the studio shows: instance overlays, activation heatmaps, boxes, per-layer mask strips.

Every function takes plain numpy arrays and returns an ``(H, W, 3)`` uint8 RGB image, so the
views can be tested without Gradio and the benchmark can time them alone. Colours are RGB tuples.
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

KEPT_RGB: RGB = (30, 144, 255)     # layer diff: pixels the previous head already had
ADDED_RGB: RGB = (40, 220, 90)     # layer diff: pixels a layer added to the mask
REMOVED_RGB: RGB = (235, 50, 50)   # layer diff: pixels a layer removed from the mask


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


def mask_diff_overlay(image: np.ndarray, mask: np.ndarray, previous: np.ndarray | None,
                      colour: RGB, alpha: float = 0.5) -> np.ndarray:
    """One layer's mask over the image; with ``previous``, pixels it added are green and pixels it
    removed are red, so the refinement a decoder layer made is visible at a glance."""
    base = as_rgb(image)
    paint = np.zeros_like(base)
    paint[mask] = colour
    touched = mask
    if previous is not None:
        paint[mask & ~previous] = ADDED_RGB
        removed = previous & ~mask
        paint[removed] = REMOVED_RGB
        touched = mask | removed
    out = blend(base, paint, touched.astype(np.float32) * alpha)
    _draw_outline(out, mask, colour, 2)
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


def layer_strip(image: np.ndarray, layer_masks: np.ndarray, colour: RGB, tile_width: int = 220,
                titles: Sequence[str] | None = None, selected: int | None = None,
                layer_boxes: np.ndarray | None = None) -> np.ndarray:
    """(L,H,W) bool masks -> one image with L tiles side by side, each the mask over the image
    (scaled to ``tile_width``), titled, the ``selected`` tile framed in white; with
    ``layer_boxes`` (L,4) xyxy image pixels, each tile also shows its layer's box."""
    base = as_rgb(image)
    h, w = base.shape[:2]
    tw = int(tile_width)
    th = max(1, round(h * tw / w))
    small = cv2.resize(base, (tw, th), interpolation=cv2.INTER_AREA)
    gap, head = 6, 22
    strip = np.full((th + head, len(layer_masks) * (tw + gap) - gap, 3), 32, np.uint8)
    for i, mask in enumerate(layer_masks):
        m = cv2.resize(mask.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST).astype(bool)
        prev = None
        if i > 0:
            prev = cv2.resize(layer_masks[i - 1].astype(np.uint8), (tw, th),
                              interpolation=cv2.INTER_NEAREST).astype(bool)
        tile = mask_diff_overlay(small, m, prev, colour)
        if layer_boxes is not None:
            tile = draw_boxes(tile, np.asarray(layer_boxes[i], np.float32) * (tw / w), [(255, 255, 255)], 1)
        x0 = i * (tw + gap)
        strip[head:, x0:x0 + tw] = tile
        title = titles[i] if titles is not None else f"layer {i}"
        cv2.putText(strip, title, (x0 + 4, head - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        if i == selected:
            cv2.rectangle(strip, (x0, head), (x0 + tw - 1, head + th - 1), (255, 255, 255), 2)
    return strip


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
