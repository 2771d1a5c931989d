"""Explain: why the model predicted what it did, from the forward pass that made the prediction.

* the instance-activation (IA) map, i.e. the auxiliary head's foreground probability (or one
  class's), as a heatmap, with the positions that became queries marked and the selected
  instance's query highlighted;
* the selected query's mask after every decoder layer, side by side, with what each layer added
  (green) and removed (red), and any one layer shown large.

``explanation`` is ``fastinst.Prediction.explanation`` (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from app import render
from app.project import Instance

FOREGROUND = "foreground"


def activation_choices(class_names: Sequence[str]) -> list[str]:
    """What the heatmap can show: the foreground probability or one class's probability."""
    return [FOREGROUND, *class_names]


def activation_map(explanation: Any, choice: str, class_names: Sequence[str]) -> np.ndarray:
    """(H,W) float in [0,1] for ``choice`` ("foreground" or a class name) at image size."""
    if choice in class_names:
        return explanation.activation(class_id=list(class_names).index(choice))
    return explanation.activation()


def model_queries(instances: Sequence[Instance], version: str | None) -> list[Instance]:
    """Visible instances that came from a query of the model whose explanation is shown."""
    return [i for i in instances if i.query is not None and i.model_version == version]


def render_heatmap(image: np.ndarray, activation: np.ndarray, query_points: np.ndarray,
                   instances: Sequence[Instance], selected: Instance | None,
                   title: str = "probability (0 = none, 1 = certain)") -> np.ndarray:
    """Activation heatmap over the image with its colour bar below; every query position as a
    dot, the shown instances' queries as rings in their colours numbered with the instance ids,
    the selected instance's query as a large ring with a cross."""
    heat = render.heatmap_overlay(image, activation)
    points = np.asarray(query_points, np.float32)
    ringed = [i.query for i in instances]
    colours = [render.colour_for(i.id) for i in instances]
    emphasis = selected.query if selected is not None else None
    marked = render.mark_points(heat, points, ringed, colours, emphasis, [f"#{i.id}" for i in instances])
    return np.vstack([marked, render.colour_bar(marked.shape[1], title)])


def layer_titles(num_heads: int) -> list[str]:
    """Tile titles: head 0 is the queries' mask before any decoder layer, head L the final one."""
    titles = ["queries (head 0)"] + [f"after layer {k}" for k in range(1, num_heads)]
    titles[-1] += " = final" if num_heads > 1 else ""
    return titles


def clamp_layer(layer: int, num_heads: int) -> int:
    """A valid head index; -1 (or anything past the end) means the final head."""
    return num_heads - 1 if layer < 0 or layer >= num_heads else layer


def render_layer(image: np.ndarray, layer_masks: np.ndarray, colour: render.RGB, layer: int) -> np.ndarray:
    """One head's mask at image size, with its change from the previous head."""
    layer = clamp_layer(layer, len(layer_masks))
    previous = layer_masks[layer - 1] if layer > 0 else None
    return render.mask_diff_overlay(image, layer_masks[layer], previous, colour)


def render_layers(image: np.ndarray, layer_masks: np.ndarray, colour: render.RGB,
                  layer: int) -> tuple[np.ndarray, np.ndarray]:
    """(strip of every head's mask, the chosen head's mask large with its change from the previous
    head) for one query; ``layer_masks`` is (L+1,H,W) bool."""
    n = len(layer_masks)
    strip = render.layer_strip(image, layer_masks, colour, titles=layer_titles(n))
    return strip, render_layer(image, layer_masks, colour, layer)


def layer_changes(layer_masks: np.ndarray) -> list[float]:
    """IoU of each head's mask with the previous head's (1.0 = unchanged), one per layer."""
    out = []
    for prev, cur in zip(layer_masks[:-1], layer_masks[1:]):
        union = np.logical_or(prev, cur).sum()
        out.append(1.0 if union == 0 else float(np.logical_and(prev, cur).sum() / union))
    return out


def describe_query(explanation: Any, inst: Instance | None, class_names: Sequence[str],
                   layer_masks: np.ndarray | None) -> str:
    """Markdown: where the selected instance's query came from and how the layers changed it."""
    if inst is None:
        return ("Dots: the image positions the IA module picked as queries. Select an instance to "
                "see its query and its mask after every decoder layer.")
    if inst.query is None:
        return f"#{inst.id} was drawn or imported, not predicted: it has no query."
    x, y = (float(v) for v in explanation.query_points[inst.query])
    fg_map = explanation.activation()
    fg = float(fg_map[min(int(y), fg_map.shape[0] - 1), min(int(x), fg_map.shape[1] - 1)])
    text = (f"**#{inst.id} {inst.class_name}** came from query **{inst.query}** at pixel "
            f"({x:.0f}, {y:.0f}); foreground probability there {fg:.2f}.")
    if layer_masks is not None and len(layer_masks) > 1:
        ious = ", ".join(f"L{k + 1}: {v:.2f}" for k, v in enumerate(layer_changes(layer_masks)))
        text += f" IoU with the previous head — {ious} (green = added, red = removed)."
    return text
