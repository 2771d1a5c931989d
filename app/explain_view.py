"""Explain: why the model predicted what it did, from the forward pass that made the prediction.

* the overview: for FastInst the instance-activation (IA) map, i.e. the auxiliary head's
  foreground probability (or one class's), as a heatmap, with the positions that became queries
  marked and the selected instance's query highlighted; for QueryInst every learned proposal box,
  the shown instances' boxes, and the selected query's box from its proposal through every stage;
* the selected query's mask after every layer (FastInst's decoder heads, QueryInst's stages, each
  with its box), side by side, with what each layer added (green) and removed (red), and any one
  layer shown large.

``explanation`` is a Prediction's explanation (:class:`engines.contract.Explanation`).
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


def has_activation(explanation: Any) -> bool:
    """True for a model with an instance-activation map (FastInst); QueryInst has proposal boxes."""
    return hasattr(explanation, "activation")


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


def render_proposals(image: np.ndarray, explanation: Any, instances: Sequence[Instance],
                     selected: Instance | None, k: int = 1) -> np.ndarray:
    """QueryInst's overview: every proposal box in grey, the shown instances' final boxes in their
    colours, and the selected instance's query's box through every stage (``k``: display zoom)."""
    final = explanation.stage_boxes[-1]
    boxes = np.stack([final[i.query] for i in instances]) if instances else np.zeros((0, 4), np.float32)
    track = explanation.box_track(selected.query) * k if selected is not None else None
    return render.box_track(image, explanation.proposal_boxes * k, boxes * k,
                            [render.colour_for(i.id) for i in instances], track)


def clamp_layer(layer: int, num_heads: int) -> int:
    """A valid head index; -1 (or anything past the end) means the final head."""
    return num_heads - 1 if layer < 0 or layer >= num_heads else layer


def render_layer(image: np.ndarray, layer_masks: np.ndarray, colour: render.RGB, layer: int,
                 layer_boxes: np.ndarray | None = None) -> np.ndarray:
    """One layer's mask at image size, with its change from the previous layer (and its box when
    ``layer_boxes`` (L,4) xyxy is given)."""
    layer = clamp_layer(layer, len(layer_masks))
    previous = layer_masks[layer - 1] if layer > 0 else None
    out = render.mask_diff_overlay(image, layer_masks[layer], previous, colour)
    return out if layer_boxes is None else render.draw_boxes(out, layer_boxes[layer][None], [colour], 2)


def render_layers(image: np.ndarray, layer_masks: np.ndarray, colour: render.RGB, layer: int,
                  titles: Sequence[str], layer_boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(strip of every layer's mask, the chosen layer's mask large with its change from the previous
    one) for one query; ``layer_masks`` is (L,H,W) bool, ``layer_boxes`` (L,4) or None."""
    strip = render.layer_strip(image, layer_masks, colour, titles=titles, layer_boxes=layer_boxes)
    return strip, render_layer(image, layer_masks, colour, layer, layer_boxes)


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
    if not has_activation(explanation):
        return describe_stages(explanation, inst, class_names, layer_masks)
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


def describe_stages(explanation: Any, inst: Instance | None, class_names: Sequence[str],
                    layer_masks: np.ndarray | None) -> str:
    """Markdown for QueryInst: the selected query's proposal box, how far each stage moved its box,
    its score of the instance's class after every stage, and how each stage changed its mask."""
    if inst is None:
        return (f"Grey: the {len(explanation.proposal_boxes)} learned proposal boxes. Select an instance "
                f"to follow its query's box and mask through the {explanation.num_layers} stages.")
    if inst.query is None:
        return f"#{inst.id} was drawn or imported, not predicted: it has no query."
    q = inst.query
    x0, y0, x1, y1 = (float(v) for v in explanation.proposal_boxes[q])
    moves = np.abs(explanation.box_motion(q)).mean(1)
    text = (f"**#{inst.id} {inst.class_name}** came from proposal **{q}**, box ({x0:.0f}, {y0:.0f})–"
            f"({x1:.0f}, {y1:.0f}). Mean box-side move per stage (px): "
            + ", ".join(f"S{k + 1}: {v:.1f}" for k, v in enumerate(moves)) + ".")
    if inst.class_name in class_names:
        scores = explanation.stage_scores[:, q, list(class_names).index(inst.class_name)]
        text += f" Score of {inst.class_name} per stage: " + ", ".join(f"{v:.2f}" for v in scores) + "."
    if layer_masks is not None and len(layer_masks) > 1:
        ious = ", ".join(f"S{k + 2}: {v:.2f}" for k, v in enumerate(layer_changes(layer_masks)))
        text += f" Mask IoU with the previous stage — {ious} (green = added, red = removed)."
    return text
