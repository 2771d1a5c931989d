"""Mask -> COCO polygons, for exports that ask for polygons.

The polygons follow pixel edges (vertices on integer pixel corners), which pycocotools rasterises
back to exactly the same pixels. A COCO polygon cannot describe a hole (the parts of a multi-part
polygon are unioned), so holes are filled first: for a mask without holes the result is lossless,
for a mask with holes the holes are lost. That is why the store exports RLE by default.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Vertex = tuple[int, int]
Edge = tuple[Vertex, Vertex]


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
    crop = mask[top:int(rows[-1]) + 1, left:int(cols[-1]) + 1]
    outgoing = _boundary_edges(ndimage.binary_fill_holes(crop))
    used: set[Edge] = set()
    polygons = []
    for vertex, ends in outgoing.items():
        for end in ends:
            if (vertex, end) not in used:
                loop = _trace_loop((vertex, end), outgoing, used)
                polygons.append(_flatten(_drop_collinear(loop), left, top))
    return polygons


def _boundary_edges(mask: np.ndarray) -> dict[Vertex, list[Vertex]]:
    """Directed pixel edges between foreground and background, foreground on the right-hand side.

    Coordinates are (x, y) pixel corners with y pointing down; pixel (row r, column c) spans
    x in [c, c+1], y in [r, r+1].
    """
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1]
    sides = {
        # name: (neighbour is background, start corner offset, end corner offset) as (dx, dy)
        "top": (~padded[:-2, 1:-1], (0, 0), (1, 0)),
        "right": (~padded[1:-1, 2:], (1, 0), (1, 1)),
        "bottom": (~padded[2:, 1:-1], (1, 1), (0, 1)),
        "left": (~padded[1:-1, :-2], (0, 1), (0, 0)),
    }
    outgoing: dict[Vertex, list[Vertex]] = {}
    for exposed, (sx, sy), (ex, ey) in sides.values():
        rows, cols = np.nonzero(inner & exposed)
        for r, c in zip(rows.tolist(), cols.tolist()):
            outgoing.setdefault((c + sx, r + sy), []).append((c + ex, r + ey))
    return outgoing


def _next_edge(edge: Edge, outgoing: dict[Vertex, list[Vertex]]) -> Edge:
    """The edge that continues ``edge``; at a corner shared by two diagonal pixels turn right."""
    (x0, y0), (x1, y1) = edge
    ends = outgoing[(x1, y1)]
    if len(ends) == 1:
        return (x1, y1), ends[0]
    dx, dy = x1 - x0, y1 - y0
    right_turn = (x1 - dy, y1 + dx)
    return (x1, y1), right_turn if right_turn in ends else ends[0]


def _trace_loop(first: Edge, outgoing: dict[Vertex, list[Vertex]], used: set[Edge]) -> list[Vertex]:
    """Follow edges from ``first`` until the loop closes; returns its vertices in order."""
    loop = []
    edge = first
    while True:
        used.add(edge)
        loop.append(edge[0])
        edge = _next_edge(edge, outgoing)
        if edge == first:
            return loop


def _drop_collinear(loop: list[Vertex]) -> list[Vertex]:
    """Keep only the corners of a closed axis-parallel loop."""
    count = len(loop)
    corners = []
    for i, (x, y) in enumerate(loop):
        px, py = loop[i - 1]
        nx, ny = loop[(i + 1) % count]
        if (x - px, y - py) != (nx - x, ny - y):
            corners.append((x, y))
    return corners


def _flatten(loop: list[Vertex], dx: int, dy: int) -> list[float]:
    """``[x0, y0, x1, y1, ...]`` shifted by the crop offset."""
    return [float(v) for x, y in loop for v in (x + dx, y + dy)]
