"""Explain: why the model predicted what it did, from the forward pass that made the prediction.

* the overview: for FastInst the instance-activation (IA) map, i.e. the auxiliary head's
  foreground probability (or one class's), as a heatmap, with the positions that became queries
  marked and the selected instance's query highlighted; for QueryInst every learned proposal box,
  the shown instances' boxes, and the selected query's box from its proposal through every stage;
* the selected query's mask after every layer (FastInst's decoder heads, QueryInst's stages, each
  with its box), cropped around the instance and enlarged (:func:`fastinst.visualize.layer_panels`),
  what each layer added and removed hatched in two colours picked against the crop; every panel is
  sent once per selection to one ``gr.HTML`` component (:func:`build_layers`), whose JavaScript
  shows any one of them large, so switching the layer is answered in the browser.

``explanation`` is a Prediction's explanation (:class:`engines.contract.Explanation`).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from fastinst import visualize
from app.project import Instance

FOREGROUND = "foreground"

ACTIVATION_HELP = (
    "**Instance activation (IA) map**: for every pixel, the probability (colour bar: blue 0, red 1) "
    "that an object (*foreground*) or one class is there, from the model's auxiliary head. The model "
    "places its **queries** (white dots) where it is high: a query is a slot the decoder turns into "
    "one mask, class and score. Rings: the queries of the shown instances, numbered with their ids; "
    "cross: the selected one. *Why a 0.95 instance can sit on a low value*: the map is read from one "
    "pixel before the decoder; the score comes after every decoder layer (**head**) has gathered "
    "evidence from the whole object.")
STAGES_HELP = (
    "**Proposals and stages** — grey: the learned proposal boxes (a **query** is one proposal box with "
    "its feature; the model starts from the same ones on every image); coloured: the shown instances' "
    "boxes; white, dark to bright: the selected query's box from its proposal through every **stage** "
    "(each stage refines the box, the class scores and the mask of every query).")


def help_text(activation: bool) -> str:
    """The overview's help: the IA map's (a model with one: FastInst) or the proposals' (QueryInst)."""
    return ACTIVATION_HELP if activation else STAGES_HELP


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
    heat = visualize.heatmap_overlay(image, activation)
    points = np.asarray(query_points, np.float32)
    ringed = [i.query for i in instances]
    colours = [visualize.colour_for(i.id) for i in instances]
    emphasis = selected.query if selected is not None else None
    marked = visualize.mark_points(heat, points, ringed, colours, emphasis, [f"#{i.id}" for i in instances])
    return np.vstack([marked, visualize.colour_bar(marked.shape[1], title)])


def render_proposals(image: np.ndarray, explanation: Any, instances: Sequence[Instance],
                     selected: Instance | None, k: int = 1) -> np.ndarray:
    """QueryInst's overview: every proposal box in grey, the shown instances' final boxes in their
    colours, and the selected instance's query's box through every stage (``k``: display zoom)."""
    final = explanation.stage_boxes[-1]
    boxes = np.stack([final[i.query] for i in instances]) if instances else np.zeros((0, 4), np.float32)
    track = explanation.box_track(selected.query) * k if selected is not None else None
    return visualize.box_track(image, explanation.proposal_boxes * k, boxes * k,
                            [visualize.colour_for(i.id) for i in instances], track)


LAYERS_TEMPLATE = """
<div class="xlayers">
  <div class="xlayers-help"></div>
  <div class="xlayers-strip" role="tablist" aria-label="layers"></div>
  <div class="xlayers-main" tabindex="0" title="← / → or [ / ]: previous / next layer"></div>
  <div class="xlayers-caption"></div>
</div>
"""

LAYERS_CSS = """
.xlayers-help { font-size: 0.92em; margin-bottom: 6px; }
.xlayers-swatch { display: inline-block; width: 1.6em; height: 0.9em; vertical-align: middle; border: 1px solid #000;
                  background-image: repeating-linear-gradient(45deg, var(--sw) 0 2px, #444 2px 6px); }
.xlayers-strip { display: flex; gap: 6px; overflow-x: auto; padding-bottom: 4px; }
.xlayers-strip button { flex: 0 0 auto; border: 2px solid transparent; border-radius: 6px; padding: 2px;
                        background: var(--background-fill-secondary); font-size: 0.8em; cursor: pointer; }
.xlayers-strip button.xlayers-on { border-color: var(--color-accent); }
.xlayers-strip img { display: block; height: 96px; width: auto; image-rendering: pixelated; }
.xlayers-main { margin-top: 6px; outline: none; }
.xlayers-main img { display: block; width: 100%; height: auto; max-height: 62vh; object-fit: contain;
                    image-rendering: pixelated; border-radius: 4px; }
.xlayers-main img[hidden] { display: none; }
.xlayers-caption { font-variant-numeric: tabular-nums; margin-top: 4px; }
"""

LAYERS_JS = r"""
const root = element.querySelector('.xlayers');     // test hooks: data-token, data-shown (the layer shown large)
const help = element.querySelector('.xlayers-help');
const strip = element.querySelector('.xlayers-strip');
const main = element.querySelector('.xlayers-main');
const caption = element.querySelector('.xlayers-caption');
let data = null, token = null, shown = -1;
function parse(t) { try { return JSON.parse(t || '{}'); } catch (e) { return {}; } }
function swatch(rgb) { return `<span class="xlayers-swatch" style="--sw: rgb(${rgb.join(',')})"></span>`; }
function show(i) {   // the browser's answer to a layer switch: no server round trip
  if (!data || !data.panels.length) return;
  shown = Math.max(0, Math.min(data.panels.length - 1, i));
  main.querySelectorAll('img').forEach((im, k) => { im.hidden = k !== shown; });
  strip.querySelectorAll('button').forEach((b, k) => {
    b.classList.toggle('xlayers-on', k === shown); b.setAttribute('aria-selected', String(k === shown));
  });
  const p = data.panels[shown];
  caption.textContent = `${p.title}: ${p.note}`;
  root.dataset.shown = String(shown);
}
function load() {
  const d = parse(props.value);
  if ((d.token || null) === token) return;
  token = d.token || null;
  data = d.panels && d.panels.length ? d : null;
  strip.replaceChildren(); main.replaceChildren(); caption.textContent = '';
  root.dataset.token = token || '';
  if (!data) { help.textContent = d.empty || ''; root.dataset.shown = ''; return; }
  help.innerHTML = data.help.replace('{added}', swatch(data.added)).replace('{removed}', swatch(data.removed));
  data.panels.forEach((p, k) => {
    const b = document.createElement('button');
    b.type = 'button'; b.setAttribute('role', 'tab'); b.title = `${p.title}: ${p.note}`;
    const im = document.createElement('img'); im.src = p.url; im.alt = p.title;
    b.append(im, document.createTextNode(p.title));
    b.addEventListener('click', () => { show(k); main.focus({preventScroll: true}); });
    strip.append(b);
    const big = document.createElement('img'); big.src = p.url; big.alt = p.title; big.hidden = true;
    main.append(big);
  });
  // the layer chosen before stays chosen for the next query (the last one the first time)
  show(shown < 0 || shown >= data.panels.length ? data.panels.length - 1 : shown);
}
function step(ev, delta) { if (data) { ev.preventDefault(); show(shown + delta); } }
main.addEventListener('keydown', (ev) => {
  if (ev.key === 'ArrowLeft') step(ev, -1);
  else if (ev.key === 'ArrowRight') step(ev, 1);
  else if (ev.key === 'Home') step(ev, -shown);
  else if (ev.key === 'End') step(ev, data ? data.panels.length : 0);
});
document.addEventListener('keydown', (ev) => {   // [ and ] wherever the panels are on screen
  const t = ev.target;
  if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || root.offsetParent === null) return;
  if (ev.key === '[') step(ev, -1);
  else if (ev.key === ']') step(ev, 1);
});
watch('value', load);
load();
"""


def build_layers(elem_id: str) -> Any:
    """The per-layer panels component (value: :func:`layers_value`)."""
    import gradio as gr
    return gr.HTML("", html_template=LAYERS_TEMPLATE, css_template=LAYERS_CSS, js_on_load=LAYERS_JS,
                   elem_id=elem_id, container=False)


def layer_notes(layer_masks: np.ndarray) -> list[str]:
    """One line per layer: its mask's area, and from the second on its IoU with the previous
    layer's mask and how many pixels it added and removed (image pixels)."""
    notes = [f"{int(layer_masks[0].sum())} px"]
    for prev, cur, iou in zip(layer_masks[:-1], layer_masks[1:], layer_changes(layer_masks)):
        notes.append(f"{int(cur.sum())} px, IoU {iou:.2f} with the previous, "
                     f"+{int((cur & ~prev).sum())} / −{int((prev & ~cur).sum())} px")
    return notes


def layers_value(token: str, urls: Sequence[str], titles: Sequence[str], notes: Sequence[str],
                 added: visualize.RGB, removed: visualize.RGB, scale: float, word: str) -> str:
    """The panels component's value, a JSON string: ``token`` (changes with the query shown),
    ``panels`` ([{url, title, note}] one per layer), ``added``/``removed`` (the hatching colours,
    RGB) and ``help`` (the legend, with ``{added}``/``{removed}`` where the swatches go). ``word``
    names a layer ("head" or "stage")."""
    zoom = f"×{scale:g}" if scale >= 1 else f"×{scale:.2f}"
    help_text = (f"The selected query's mask after every {word}, cropped around the instance ({zoom}). "
                 f"Outside the mask the image is dimmed; its edge is white on black. Hatched: what this "
                 f"{word} changed, {{added}} added, {{removed}} removed (colours picked to stand out against "
                 f"this crop). Click a panel, or press [ / ] (← / → on the large one), to show it large.")
    return json.dumps({"token": token, "added": list(added), "removed": list(removed), "help": help_text,
                       "panels": [{"url": u, "title": t, "note": n} for u, t, n in zip(urls, titles, notes)]},
                      ensure_ascii=False, separators=(",", ":"))


def empty_layers(stages: bool) -> str:
    """The panels component's value when no predicted instance is selected."""
    word = "stage" if stages else "decoder head"
    return json.dumps({"token": "", "panels": [],
                       "empty": f"Select a predicted instance to see its query's mask after every {word}."})


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
        text += f" IoU with the previous head — {ious} (the panels below hatch what each head changed)."
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
        text += f" Mask IoU with the previous stage — {ious} (the panels below hatch what each stage changed)."
    return text
