"""Mask -> COCO polygons, for exports that ask for polygons.

The polygons follow pixel edges (vertices on integer pixel corners), which pycocotools rasterises
back to exactly the same pixels. A COCO polygon cannot describe a hole (the parts of a multi-part
polygon are unioned), so holes are filled first: for a mask without holes the result is lossless.
The exporter checks each result and keeps RLE for any mask the polygons would change.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Per side of a pixel: (offset to the neighbour as (row, col), start corner as (dx, dy),
# direction of travel as (dx, dy)). Travelling in that direction keeps the pixel on the right.
_SIDES = (
    ((-1, 0), (0, 0), (1, 0)),   # top edge, rightwards
    ((0, 1), (1, 0), (0, 1)),    # right edge, downwards
    ((1, 0), (1, 1), (-1, 0)),   # bottom edge, leftwards
    ((0, -1), (0, 1), (0, -1)),  # left edge, upwards
)


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer boundaries of a (H, W) boolean mask as COCO polygons ``[x0, y0, x1, y1, ...]``.

    One polygon per 4-connected part (parts touching only at a corner are separate polygons).
    Holes are filled. An empty mask gives ``[]``.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    top, left = int(rows[0]), int(cols[0])
    crop = _fill_holes(mask[top:int(rows[-1]) + 1, left:int(cols[-1]) + 1])
    x, y, dx, dy = _boundary_edges(crop)
    successor = _successors(x, y, dx, dy, stride=crop.shape[1] + 1)
    return [_corners(loop, x + left, y + top, dx, dy) for loop in _loops(successor)]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Set every background pixel not 4-connected to the border (one labelling pass)."""
    labels, _count = ndimage.label(~np.pad(mask, 1))
    return labels[1:-1, 1:-1] != labels[0, 0]


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Start corner (x, y) and direction (dx, dy) of every pixel edge between fg and bg.

    Coordinates are pixel corners with y pointing down: pixel (row r, column c) spans
    x in [c, c+1], y in [r, r+1]. Each edge has the foreground on its right-hand side.
    """
    height, width = mask.shape
    padded = np.pad(mask, 1)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for (row_step, col_step), (start_x, start_y), (step_x, step_y) in _SIDES:
        neighbour = padded[1 + row_step:1 + row_step + height, 1 + col_step:1 + col_step + width]
        rows, cols = np.nonzero(mask & ~neighbour)
        for part, values in zip(parts, (cols + start_x, rows + start_y,
                                        np.full(rows.size, step_x), np.full(rows.size, step_y))):
            part.append(values)
    return tuple(np.concatenate(part) for part in parts)


def _successors(
    x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray, stride: int
) -> np.ndarray:
    """Index of the edge that follows each edge along its boundary.

    Every edge's end corner starts one or two edges; two happen where two pixels touch only at
    that corner, and then we turn right, which keeps 4-connected parts apart.
    """
    start = y * stride + x
    end = (y + dy) * stride + (x + dx)
    order = np.argsort(start, kind="stable")
    first = np.searchsorted(start[order], end, side="left")
    count = np.searchsorted(start[order], end, side="right") - first
    successor = order[first]
    saddle = np.flatnonzero(count == 2)
    if saddle.size:
        candidate, other = order[first[saddle]], order[first[saddle] + 1]
        turns_right = (dx[candidate] == -dy[saddle]) & (dy[candidate] == dx[saddle])
        successor[saddle] = np.where(turns_right, candidate, other)
    return successor


def _loops(successor: np.ndarray) -> list[list[int]]:
    """The cycles of the successor permutation, each as a list of edge indices in order."""
    following = successor.tolist()
    seen = bytearray(len(following))
    loops = []
    for first in range(len(following)):
        if seen[first]:
            continue
        loop, edge = [], first
        while not seen[edge]:
            seen[edge] = 1
            loop.append(edge)
            edge = following[edge]
        loops.append(loop)
    return loops


def _corners(
    loop: list[int], x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> list[float]:
    """Flattened ``[x0, y0, ...]`` of the loop's corners (where the direction changes)."""
    edges = np.asarray(loop)
    previous = np.roll(edges, 1)
    turn = (dx[edges] != dx[previous]) | (dy[edges] != dy[previous])
    corners = edges[turn]
    return np.stack([x[corners], y[corners]], axis=1).astype(float).ravel().tolist()
