"""The annotation canvas: an image and its instances drawn in the browser, built on ``gr.HTML``.

The server sends the image and the instances' masks once per image revision; everything a person
does to look at them is answered in the browser, without a server round trip: hover highlight and
label, click to select (the topmost shown instance under the pointer; a second click at the same
place selects the next one below it), the confidence threshold and "show rejected" filters, zoom
(wheel, around the pointer) and pan (drag), Fit (the button or F).

API (what ``value`` builds, a JSON string):

* ``token``: changes with the image or its revision; ``image``: URL of the image as a PNG at its
  own resolution, ``width`` x ``height`` pixels; ``masks``: URL of a JSON file
  ``{"<id>": [x, y, w, h, run, run, ...]}``: each mask cropped to its box ``(x, y, w, h)``,
  row-major, as alternating runs of 0s and 1s starting with 0s (see ``mask_runs``);
* ``instances``: every instance of the image, top first (``inspect_view.visible_instances``'s
  order), with ``id``, ``label``, ``score``, ``state``, ``placed`` (a query a person placed: shown
  whatever the threshold), ``colour`` (RGB) and ``key`` (its mask's digest: the browser decodes
  only masks it has not seen);
* ``selected``, ``min_score``, ``show_rejected``, ``polygon`` (vertices, image pixels), ``mode``
  ("inspect": clicks select; "correct": clicks use the tool chosen in ``#tool``), ``seq``.

Events out: a click fires the component's ``select`` event with ``{"x", "y", "tool", "pick",
"seq"}``: the image pixel (x, y) clicked, the tool, the instance the browser picked (or null) and
a counter the server echoes as ``seq`` so that the browser ignores selections older than its last
click. The threshold and "show rejected" are read from the page's ``#min-score`` and
``#show-rejected`` inputs as they move (the server is told by their own events).

Test hooks on the ``<canvas>``: ``data-token``, ``data-selected``, ``data-hover``, ``data-shown``
(ids drawn, top first), ``data-frame`` (a counter bumped by every redraw) and ``data-view``
("scale,offset_x,offset_y": screen = image * scale + offset, CSS pixels inside the canvas).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.inspect_view import instance_label
from app.project import Instance
from fastinst.visualize import colour_for

TEMPLATE = """
<div class="anncanvas">
  <div class="anncanvas-bar">
    <button type="button" class="anncanvas-fit" title="fit the image (F)">Fit</button>
    <button type="button" class="anncanvas-zoom-in" title="zoom in (wheel up)">+</button>
    <button type="button" class="anncanvas-zoom-out" title="zoom out (wheel down)">−</button>
    <span class="anncanvas-info">no image</span>
    <span class="anncanvas-legend"><b>?</b> proposed · <b>✓</b> accepted · <b>✗</b> rejected ·
      wheel: zoom · drag: pan · click again: the instance below</span>
  </div>
  <div class="anncanvas-stage" tabindex="0"><canvas class="anncanvas-view"></canvas></div>
</div>
"""

CSS = """
.anncanvas-bar { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 4px; font-size: 0.9em; }
.anncanvas-bar button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 0 10px; min-width: 2em; }
.anncanvas-info { font-variant-numeric: tabular-nums; }
.anncanvas-legend { color: var(--body-text-color-subdued); margin-left: auto; }
.anncanvas-stage { position: relative; width: 100%; height: 70vh; min-height: 240px; overflow: hidden;
                   background: #1d1f24; border-radius: 6px; touch-action: none; outline: none; }
.anncanvas-stage canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; cursor: crosshair; }
"""

JS = r"""
const stage = element.querySelector('.anncanvas-stage');
const cv = element.querySelector('canvas.anncanvas-view');
const ctx = cv.getContext('2d');
const info = element.querySelector('.anncanvas-info');
const masks = new Map();           // mask key -> {x, y, w, h, bits, fill, edge}
let data = null, img = null, imgUrl = null, gen = 0, frame = 0;
let view = {s: 1, ox: 0, oy: 0}, fitFor = null, fittedWidth = 0;
let hover = null, selected = null, seq = 0;
let minScore = 0.5, showRejected = false, serverMin = null, serverRej = null;
let lastClick = null, drag = null, pending = false;
let scene = null, sceneKey = '', dataGen = 0;   // the scene without hover, redrawn only when it changes

function parse(t) { try { return JSON.parse(t || '{}'); } catch (e) { return {}; } }
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const im = new Image(); im.onload = () => resolve(im); im.onerror = reject; im.src = url;
  });
}
function decode(entry, colour) {
  const [x, y, w, h] = entry, bits = new Uint8Array(w * h);
  let p = 0, on = 0;
  for (let k = 4; k < entry.length; k++) { if (on) bits.fill(1, p, p + entry[k]); p += entry[k]; on ^= 1; }
  const fill = new OffscreenCanvas(Math.max(w, 1), Math.max(h, 1));
  const edge = new OffscreenCanvas(Math.max(w, 1), Math.max(h, 1));
  const white = new OffscreenCanvas(Math.max(w, 1), Math.max(h, 1));
  if (w && h) {
    const a = new ImageData(w, h), b = new ImageData(w, h), c2 = new ImageData(w, h);
    for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
      const i = r * w + c;
      if (!bits[i]) continue;
      const o = 4 * i;
      a.data[o] = colour[0]; a.data[o + 1] = colour[1]; a.data[o + 2] = colour[2]; a.data[o + 3] = 255;
      if (c === 0 || r === 0 || c === w - 1 || r === h - 1 || !bits[i - 1] || !bits[i + 1] || !bits[i - w] || !bits[i + w]) {
        b.data[o] = colour[0]; b.data[o + 1] = colour[1]; b.data[o + 2] = colour[2]; b.data[o + 3] = 255;
        c2.data[o] = c2.data[o + 1] = c2.data[o + 2] = c2.data[o + 3] = 255;
      }
    }
    fill.getContext('2d').putImageData(a, 0, 0);
    edge.getContext('2d').putImageData(b, 0, 0);
    white.getContext('2d').putImageData(c2, 0, 0);
  }
  return {x, y, w, h, bits, fill, edge, white};
}
function shown() {
  if (!data) return [];
  return data.instances.filter(i => !(i.state === 'rejected' && !showRejected) &&
                                    !(i.state === 'proposed' && !i.placed && (i.score ?? 0) < minScore - 1e-9) &&
                                    masks.has(i.key));
}
function hits(x, y) {
  const out = [];
  for (const inst of shown()) {
    const m = masks.get(inst.key);
    const c = x - m.x, r = y - m.y;
    if (c >= 0 && r >= 0 && c < m.w && r < m.h && m.bits[r * m.w + c]) out.push(inst.id);
  }
  return out;
}
function resize() {
  const r = stage.getBoundingClientRect(), d = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * d)), h = Math.max(1, Math.round(r.height * d));
  if (cv.width !== w || cv.height !== h) { cv.width = w; cv.height = h; }
  return r;
}
function fit() {
  if (!data) return;
  const r = resize();
  const s = Math.min(r.width / data.width, r.height / data.height);
  fittedWidth = r.width;
  view = {s, ox: (r.width - data.width * s) / 2, oy: (r.height - data.height * s) / 2};
  draw();
}
function toImage(e) {
  const r = cv.getBoundingClientRect();
  return {x: Math.floor((e.clientX - r.left - view.ox) / view.s), y: Math.floor((e.clientY - r.top - view.oy) / view.s)};
}
function label(inst, strong) {
  const m = masks.get(inst.key), d = window.devicePixelRatio || 1;
  const text = inst.label;
  ctx.font = `${12 * d}px sans-serif`;
  const tw = ctx.measureText(text).width + 8 * d, th = 16 * d;
  let x = (m.x * view.s + view.ox) * d, y = (m.y * view.s + view.oy) * d - th;
  if (y < 0) y = (m.y * view.s + view.oy) * d;
  x = Math.min(Math.max(0, x), cv.width - tw);
  ctx.fillStyle = strong ? 'rgba(255,255,255,0.92)' : 'rgba(0,0,0,0.72)';
  ctx.fillRect(x, y, tw, th);
  ctx.fillStyle = strong ? '#000' : '#fff';
  ctx.fillText(text, x + 4 * d, y + 12 * d);
}
function paintScene(list, d) {   // the image, every shown mask and the selection, for this view
  if (!scene || scene.width !== cv.width || scene.height !== cv.height) scene = new OffscreenCanvas(cv.width, cv.height);
  const sx = scene.getContext('2d');
  sx.setTransform(1, 0, 0, 1, 0, 0);
  sx.clearRect(0, 0, scene.width, scene.height);
  if (!data || !img) return;
  sx.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
  sx.imageSmoothingEnabled = view.s < 1;
  sx.drawImage(img, 0, 0);
  sx.imageSmoothingEnabled = false;
  for (let k = list.length - 1; k >= 0; k--) {
    const inst = list[k], m = masks.get(inst.key);
    sx.globalAlpha = inst.state === 'rejected' ? 0.2 : (inst.id === selected ? 0.6 : 0.4);
    sx.drawImage(m.fill, m.x, m.y);
    sx.globalAlpha = 1;
    sx.drawImage(m.edge, m.x, m.y);
  }
  const sel = list.find(i => i.id === selected);
  if (sel) { const m = masks.get(sel.key); sx.drawImage(m.white, m.x, m.y); }
  if (data.polygon && data.polygon.length) {
    sx.strokeStyle = '#fff'; sx.fillStyle = '#fff'; sx.lineWidth = 2 / view.s;
    sx.beginPath();
    data.polygon.forEach(([px, py], k) => k ? sx.lineTo(px + 0.5, py + 0.5) : sx.moveTo(px + 0.5, py + 0.5));
    sx.stroke();
    for (const [px, py] of data.polygon) sx.fillRect(px + 0.5 - 3 / view.s, py + 0.5 - 3 / view.s, 6 / view.s, 6 / view.s);
  }
}
function draw() {
  resize();
  const d = window.devicePixelRatio || 1;
  const list = shown();
  const key = [dataGen, view.s, view.ox, view.oy, minScore, showRejected, selected, cv.width, cv.height].join('|');
  if (key !== sceneKey) { paintScene(list, d); sceneKey = key; }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, cv.width, cv.height);
  if (scene) ctx.drawImage(scene, 0, 0);
  const hov = list.find(i => i.id === hover && i.id !== selected);
  if (hov && data && img) {    // the hovered one on top of the cached scene: brighter, outlined
    const m = masks.get(hov.key);
    ctx.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = 0.35;
    ctx.drawImage(m.fill, m.x, m.y);
    ctx.globalAlpha = 1;
    ctx.drawImage(m.edge, m.x, m.y);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }
  for (const id of [hover, selected]) {
    const inst = list.find(i => i.id === id);
    if (inst) label(inst, id === selected);
  }
  frame += 1;
  cv.dataset.frame = String(frame);
  cv.dataset.token = data ? data.token : '';
  cv.dataset.selected = selected == null ? '' : String(selected);
  cv.dataset.hover = hover == null ? '' : String(hover);
  cv.dataset.shown = list.map(i => i.id).join(',');
  cv.dataset.view = `${view.s},${view.ox},${view.oy}`;
  if (data) info.textContent = `${list.length} shown of ${data.instances.length} · ${Math.round(view.s * 100)}%`;
}
async function load() {
  const v = parse(props.value);
  const mine = ++gen;
  if (!v.token) { data = null; img = null; imgUrl = null; info.textContent = 'no image'; draw(); return; }
  // the picture and the masks are fetched at the same time
  const picture = v.image !== imgUrl ? loadImage(v.image) : null;
  const runs = v.instances.some(i => !masks.has(i.key)) ? fetch(v.masks).then(r => r.json()) : null;
  if (picture) {
    const im = await picture;
    if (mine !== gen) return;
    img = im; imgUrl = v.image;
  }
  if (runs) {
    const all = await runs;
    if (mine !== gen) return;
    const wanted = new Set(v.instances.map(i => i.key));
    for (const key of [...masks.keys()]) if (!wanted.has(key)) masks.delete(key);
    for (const inst of v.instances) if (!masks.has(inst.key)) masks.set(inst.key, decode(all[inst.id], inst.colour));
  }
  const fresh = !data || data.width !== v.width || data.height !== v.height || data.image !== v.image;
  data = v;
  dataGen += 1;
  if ((v.seq ?? 0) >= seq) selected = v.selected ?? null;
  if (v.min_score !== serverMin) { serverMin = v.min_score; minScore = v.min_score; }
  if (v.show_rejected !== serverRej) { serverRej = v.show_rejected; showRejected = v.show_rejected; }
  if (!data.instances.some(i => i.id === hover)) hover = null;
  if (fresh || fitFor !== v.image) { fitFor = v.image; fit(); } else draw();
}
function tool() {
  if (!data || data.mode !== 'correct') return 'select';
  const checked = document.querySelector('#tool input:checked');
  return checked ? checked.value : 'select';
}
function click(e) {
  if (!data) return;
  const p = toImage(e);
  if (p.x < 0 || p.y < 0 || p.x >= data.width || p.y >= data.height) return;
  const t = tool();
  let pick = null;
  if (t === 'select') {
    const under = hits(p.x, p.y);
    const again = lastClick && Math.abs(lastClick.x - e.clientX) <= 3 && Math.abs(lastClick.y - e.clientY) <= 3;
    const k = under.indexOf(selected);
    pick = under.length ? (again && k >= 0 ? under[(k + 1) % under.length] : under[0]) : null;
    selected = pick;
    draw();
  }
  lastClick = {x: e.clientX, y: e.clientY};
  seq += 1;
  trigger('select', {x: p.x, y: p.y, tool: t, pick, seq});
}
function zoomAt(factor, sx, sy) {
  const s = Math.min(64, Math.max(0.02, view.s * factor));
  view = {s, ox: sx - (sx - view.ox) * s / view.s, oy: sy - (sy - view.oy) * s / view.s};
  draw();
}
stage.addEventListener('wheel', (e) => {
  if (!data) return;
  e.preventDefault();
  const r = cv.getBoundingClientRect();
  zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
}, {passive: false});
stage.addEventListener('pointerdown', (e) => {
  stage.focus({preventScroll: true});
  drag = {x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy, moved: false, button: e.button};
  try { stage.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer */ }
});
stage.addEventListener('pointermove', (e) => {
  if (drag) {
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.moved || Math.abs(dx) + Math.abs(dy) > 4) {
      drag.moved = true; view.ox = drag.ox + dx; view.oy = drag.oy + dy; draw();
    }
    return;
  }
  if (!data || pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const p = toImage(e);
    const h = hits(p.x, p.y)[0] ?? null;
    if (h !== hover) { hover = h; draw(); }
  });
});
stage.addEventListener('pointerup', (e) => {
  const d = drag; drag = null;
  if (d && !d.moved && d.button === 0) click(e);
});
stage.addEventListener('pointerleave', () => { if (hover !== null) { hover = null; draw(); } });
element.querySelector('.anncanvas-fit').addEventListener('click', fit);
element.querySelector('.anncanvas-zoom-in').addEventListener('click', () => { const r = cv.getBoundingClientRect(); zoomAt(1.25, r.width / 2, r.height / 2); });
element.querySelector('.anncanvas-zoom-out').addEventListener('click', () => { const r = cv.getBoundingClientRect(); zoomAt(0.8, r.width / 2, r.height / 2); });
function onFilter(e) {   // the filter inputs as they move (read from the event: the page updates later)
  const t = e.target;
  if (!t.closest) return;
  if (t.closest('#min-score') && t.type !== 'checkbox') {
    const v = Number(t.value);
    if (t.value !== '' && !isNaN(v)) { minScore = v; draw(); }
  } else if (t.closest('#show-rejected') && t.type === 'checkbox') { showRejected = t.checked; draw(); }
}
document.addEventListener('input', onFilter, true);
document.addEventListener('change', onFilter, true);
new ResizeObserver(() => { if (data && fitFor === data.image && view.s) draw(); }).observe(stage);
// fitted while hidden (a tab not shown yet has no size): fit again once it shows
new IntersectionObserver((seen) => { if (seen.some(s => s.isIntersecting) && data && fittedWidth < 2) fit(); }).observe(stage);
watch('value', load);
load();
"""


def mask_runs(mask: np.ndarray, box: tuple[int, int, int, int]) -> list[int]:
    """The mask inside ``box`` (x, y, w, h; pixels) as runs: row-major, alternating 0s and 1s,
    starting with a (possibly empty) run of 0s. (H,W) bool in, counts summing to w*h out."""
    x, y, w, h = box
    flat = np.ascontiguousarray(mask[y:y + h, x:x + w]).ravel()
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


def mask_box(inst: Instance) -> tuple[int, int, int, int]:
    """The store's box of ``inst`` widened by a pixel (it is rounded) and clipped to the image."""
    height, width = inst.mask.shape
    x, y, w, h = inst.bbox
    x0, y0 = max(0, x - 1), max(0, y - 1)
    x1, y1 = min(width, x + w + 1), min(height, y + h + 1)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


@dataclass(frozen=True)
class Masks:
    """One revision's masks as the browser gets them: the file and each mask's key by id."""

    path: str
    keys: dict[int, str]


def write_masks(instances: Sequence[Instance], path: Path) -> Masks:
    """Write every instance's cropped mask runs to ``path`` (JSON, see the module doc)."""
    entries, keys = {}, {}
    for inst in instances:
        box = mask_box(inst)
        runs = mask_runs(inst.mask, box)
        entries[str(inst.id)] = [*box, *runs]
        digest = zlib.crc32(np.asarray([*box, *runs], np.int64).tobytes())
        keys[inst.id] = f"{inst.id}-{digest:08x}"
    path.write_text(json.dumps(entries, separators=(",", ":")))
    return Masks(str(path), keys)


def file_url(path: str) -> str:
    """The URL (relative to the app) under which Gradio serves an allowed file."""
    return f"gradio_api/file={path}"


def value(*, token: str, image_path: str, size: tuple[int, int], masks: Masks,
          instances: Sequence[Instance], selected: int | None, min_score: float, show_rejected: bool,
          mode: str, polygon: Sequence[tuple[int, int]] = (), seq: int = 0) -> str:
    """The canvas's value (see the module doc). ``size`` is the image's (H, W); ``instances``
    are all of the image's, top first."""
    rows = [{"id": i.id, "label": instance_label(i), "score": i.score, "state": i.state,
             "placed": i.placed_at is not None, "colour": list(colour_for(i.id)), "key": masks.keys[i.id]}
            for i in instances]
    return json.dumps({"token": token, "image": file_url(image_path), "width": size[1], "height": size[0],
                       "masks": file_url(masks.path), "instances": rows, "selected": selected,
                       "min_score": round(float(min_score), 4), "show_rejected": bool(show_rejected),
                       "polygon": [list(p) for p in polygon], "mode": mode, "seq": seq},
                      separators=(",", ":"))


@dataclass(frozen=True)
class Click:
    """A click on the canvas: image pixel (x, y), the tool, the browser's pick and its counter."""

    x: int
    y: int
    tool: str
    pick: int | None
    seq: int


def read_click(data: Any) -> Click:
    """The event data of a canvas ``select`` event as a Click (ValueError when malformed)."""
    if not isinstance(data, dict):
        raise ValueError("the canvas sent a click without data")
    pick = data.get("pick")
    return Click(int(data["x"]), int(data["y"]), str(data.get("tool") or "select"),
                 None if pick is None else int(pick), int(data.get("seq") or 0))


def build(elem_id: str) -> Any:
    """The canvas component (value: see ``value``)."""
    import gradio as gr
    return gr.HTML("", html_template=TEMPLATE, css_template=CSS, js_on_load=JS, elem_id=elem_id,
                   container=False)
