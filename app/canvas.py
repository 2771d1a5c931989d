"""The annotation canvas: an image and its instances drawn in the browser, built on ``gr.HTML``.

The server sends the image and the instances' masks once per image revision; everything a person
does to look at them is answered in the browser, without a server round trip: hover highlight and
label, click to select (the topmost shown instance under the pointer; a second click at the same
place selects the next one below it), the confidence threshold and "show rejected" filters, labels (the hovered and
the selected instance's; with "all labels" every shown one where it covers no other label), zoom
(wheel, around the pointer) and pan (drag; with a drawing tool: right- or middle-drag), Fit (the
button or F).

Drawing (mode "correct", the tool chosen in the page's ``#tool``) happens in the browser too, on
a mask buffer of exactly the image's size (one byte a pixel), so what is stored equals what was
drawn pixel for pixel at any zoom: a pointer at page point P is at image point
``(P - canvas corner - offset) / scale`` (``data-view``), and

* brush / eraser (and "new", a brush that starts a new mask): a round stroke of diameter ``size``
  image pixels sets (erases) every pixel whose centre ``(c + 0.5, r + 0.5)`` lies within
  ``size / 2`` of the polyline through the pointer's positions (every coalesced pointer event);
  the brush and eraser edit the selected instance's mask (nothing selected: they say so and draw
  nothing; a new object is made only by the new-mask, polygon and query tools);
* polygon: corners clicked out (a drag pans), closed with Enter, a double click or a click on the
  first corner's handle (a yellow square of 8 screen pixels, drawn from the third corner on); a
  click anywhere else, however near the first corner, adds a corner; every pixel whose centre is
  inside (even-odd rule) is set. A polygon becomes a new
  instance at once; with strokes not applied it is not closed (it would join their mask).

Strokes accumulate (E toggles brush / eraser, [ and ] change the size, Ctrl+Z takes the last
stroke back) until Apply (Enter) sends them; Esc discards them. Strokes belong to the instance
they were started on: with another instance selected, a new stroke is refused until they are
applied or discarded. Leaving the image with strokes not applied or a polygon's corners not
closed asks first (N, P, M and the Next, Previous, Mark reviewed and Predict again buttons, a
choice in the Image picker, a page reload); an applied edit in
flight holds nothing back (the server handles events in order). Each Apply is one store edit (one
undo step), drawn at once as the instance's new mask (a new one: on top), pending until the server
answers: a value with the revision that stores it replaces it; an edit the server refuses
(``refused`` in the value: a conflict with another tab, a deleted target, no change) takes the
pending mask back and keeps its strokes to apply again or discard; strokes whose instance is gone
(another tab deleted it, an undo) stay as a new mask, said so, to apply (Enter) or discard (Esc). A pointer the browser
cancels (a native drag) ends the stroke with what was drawn so far.

API (what ``value`` builds, a JSON string):

* ``token``: "<image id>:<revision>", changes with the image or its revision; ``image``: URL of
  the image as a PNG at its own resolution, ``width`` x ``height`` pixels; ``masks``: URL of a
  JSON file ``{"<id>": [x, y, w, h, run, run, ...]}``: each mask cropped to its box
  ``(x, y, w, h)``, row-major, as alternating runs of 0s and 1s starting with 0s (see
  ``mask_runs``);
* ``instances``: every instance of the image, top first (``inspect_view.visible_instances``'s
  order), with ``id``, ``label``, ``score``, ``state``, ``placed`` (a query a person placed: shown
  whatever the threshold), ``colour`` (RGB) and ``key`` (its mask's digest: the browser decodes
  only masks it has not seen);
* ``selected``, ``min_score``, ``show_rejected``, ``mode`` ("inspect": clicks select; "correct":
  clicks use the tool chosen in ``#tool``), ``seq``;
* ``acted``: how many actions on an instance (accept, reject, delete, relabel, keep one) the
  server has handled for this page, ``moved``: how
  many next/previous presses (see below); ``refused``: the ``seq`` of the last applied edit the
  server refused.

Ordered presses: a click on an edit, review or navigation button (``#btn-accept``, ``#btn-reject``,
``#btn-delete``, ``#btn-relabel``, ``#btn-keep-one``, ``#btn-accept-all``, ``#btn-undo``,
``#btn-redo``, ``#btn-reviewed``, ``#btn-reopen``, ``#btn-predict``, ``#btn-next``, ``#btn-prev``;
the keys click them) is drawn by the canvas shown at once, and leaves the page after the frame
that draws it, in the order of the presses, with the canvas's own events (one outbox for the
page, ``window.__studioOutbox``): Gradio's work of sending an event (50-150 ms of page work)
never holds that frame back, and no press overtakes an earlier one. Accept, reject, delete,
relabel and keep one are sent as an action naming the instance the canvas shows selected (below),
so a press never lands on another instance than the one shown, whatever the server's answers to
earlier presses say; accept, reject and delete mark that instance (accepted, rejected, gone) in
the browser, and the mark stays until a value arrives whose ``acted`` counts that press: the
server's answer, a new revision when the edit was saved, the unchanged instances (the mark goes
back) when it was refused. A rejected instance stays drawn while it is selected (a quick A after R
acts on what the person sees); it goes when the selection moves on, unless "show rejected" is on.

Prefetch: a ``CustomEvent("anncanvas-prefetch", {detail})`` on ``window`` (``detail``: the JSON
of ``prefetch_value``: ``from``, the image shown, and ``next`` / ``prev``, each with ``token``,
``name``, ``image``, ``width``, ``height``, ``masks`` and ``instances`` as in a value) makes the
canvas load the next and previous images' pictures and masks while the person looks at this one; a
value naming them later draws without waiting for the network or decoding.

Next and previous are drawn at once too: a click on ``#btn-next`` / ``#btn-prev`` (the N and P
keys click them) draws the image loaded ahead in that direction of the one drawn, when all its
files are loaded (and no strokes are open), with an "opening <file> …" marker; the marker and the
image stay until a value arrives whose ``moved`` counts that press (values answering earlier events
are not drawn), then the canvas draws what the server says (the same image: nothing changes). While
it is opening, no edit acts on it or on the image before: Apply, query clicks and the edit buttons
(accept, reject, delete, relabel, accept all, keep one, mark reviewed, reopen, undo, redo, predict
again, and their keys) are refused in the browser with a note (requests sent close together can
reach the server in either order, so the page's place alone could not keep an edit off the image
before); an edit that reaches the server anyway is refused there by the page's place.

Events out, all through the component's ``select`` event (``read_event``):

* a click with the select or query tool: ``{"x", "y", "tool", "pick", "seq"}``: the image pixel
  (x, y) clicked, the tool, the instance the browser picked (or null) and a counter the server
  echoes as ``seq`` so that the browser ignores selections older than its last click;
* an applied edit: ``{"kind": "mask", "target", "box", "runs", "token", "how", "seq"}``: inside
  ``box`` = [x, y, w, h] (image pixels) the mask becomes the crop ``runs`` describe (the same
  runs as the masks file); outside it the mask stays as stored. ``target``: the instance edited,
  or null for a new one; ``token``: the canvas's token when it was drawn (an edit of an image the
  session no longer shows is refused); ``how``: "brush" or "polygon". API clients send the same
  JSON (``edit_value``) to ``/save_mask`` and ``/add_mask``;
* an action: ``{"kind": "action", "action", "target", "token", "seq"}``: ``action`` one of
  ``ACTIONS``, ``target`` the instance shown selected at the press (null: none), ``token`` the
  canvas's token then (an action on an image the session no longer shows is refused).

The threshold and "show rejected" are read from the page's ``#min-score`` and ``#show-rejected``
inputs as they move (the server is told by their own events).

Test hooks on the ``<canvas>``: ``data-token``, ``data-selected``, ``data-hover``, ``data-shown``
(ids drawn, top first), ``data-labels`` (ids whose label "all labels" placed) and
``data-label-boxes`` (their "x,y,w,h" rectangles in canvas pixels, ";"-separated), ``data-states``
(``id:state`` of every instance, optimistic marks included), ``data-frame`` (a counter bumped by every
redraw), ``data-view``
("scale,offset_x,offset_y": screen = image * scale + offset, CSS pixels inside the canvas),
``data-brush`` (the brush diameter, image pixels), ``data-edit`` (the instance id being edited,
"new", or empty), ``data-unsaved`` (strokes and polygons not stored yet, the pending ones
included), ``data-pending`` (the instance id, or "new", whose applied edit is drawn before the
server's answer; empty: none) and ``data-corners``
(corners of the polygon being clicked out), ``data-opening`` (the token of an image drawn ahead of
the server's answer, or empty) and ``data-ahead`` ("next:<token>,prev:<token>": the images
that a next / previous press would draw at once).
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
    <label class="anncanvas-toggle" title="every shown instance's label, placed so that none covers another (off: the hovered and the selected one)"><input type="checkbox" class="anncanvas-labels"> all labels</label>
    <span class="anncanvas-info">no image</span>
    <span class="anncanvas-edit">
      <label title="brush and eraser diameter, image pixels ([ and ])">size
        <input type="range" class="anncanvas-size" min="1" max="200" value="12"></label>
      <span class="anncanvas-size-text">12 px</span>
      <button type="button" class="anncanvas-apply" title="store the strokes (Enter)">Apply (Enter)</button>
      <button type="button" class="anncanvas-discard" title="drop the strokes (Esc)">Discard (Esc)</button>
    </span>
    <span class="anncanvas-legend"><b>?</b> proposed · <b>✓</b> accepted · <b>✗</b> rejected ·
      wheel: zoom · drag: pan · click again: the instance below</span>
  </div>
  <div class="anncanvas-stage" tabindex="0"><canvas class="anncanvas-view"></canvas>
    <div class="anncanvas-editinfo"></div><div class="anncanvas-opening"></div></div>
</div>
"""

CSS = """
.anncanvas { user-select: none; -webkit-user-select: none; }
.anncanvas-bar { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 4px; font-size: 0.9em; }
.anncanvas-bar button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 0 10px; min-width: 2em; }
.anncanvas-info, .anncanvas-size-text { font-variant-numeric: tabular-nums; }
.anncanvas-edit { display: none; gap: 6px; align-items: center; }
.anncanvas.correct .anncanvas-edit { display: inline-flex; }
.anncanvas-edit input { vertical-align: middle; width: 110px; }
.anncanvas-editinfo { position: absolute; left: 8px; top: 8px; padding: 2px 8px; border-radius: 4px;
                      background: rgba(0,0,0,0.7); color: #fff; font-size: 0.9em; pointer-events: none; }
.anncanvas-editinfo:empty { display: none; }
.anncanvas-opening { position: absolute; right: 8px; top: 8px; padding: 2px 8px; border-radius: 4px;
                     background: rgba(255,200,0,0.9); color: #000; font-size: 0.9em; pointer-events: none; }
.anncanvas-opening:empty { display: none; }
.anncanvas-info { font-variant-numeric: tabular-nums; }
.anncanvas-toggle { display: flex; gap: 4px; align-items: center; cursor: pointer; }
.anncanvas-legend { color: var(--body-text-color-subdued); margin-left: auto; }
.anncanvas-stage { position: relative; width: 100%; height: 70vh; min-height: 240px; overflow: hidden;
                   background: #1d1f24; border-radius: 6px; touch-action: none; outline: none; }
.anncanvas-stage canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; cursor: crosshair; }
"""

JS = r"""
const root = element.querySelector('.anncanvas');
const stage = element.querySelector('.anncanvas-stage');
const cv = element.querySelector('canvas.anncanvas-view');
const ctx = cv.getContext('2d');
const info = element.querySelector('.anncanvas-info');
const sizeInput = element.querySelector('.anncanvas-size');
const sizeText = element.querySelector('.anncanvas-size-text');
const editInfo = element.querySelector('.anncanvas-editinfo');
const openingInfo = element.querySelector('.anncanvas-opening');
const allLabels = element.querySelector('.anncanvas-labels');
const masks = new Map();           // mask key -> {x, y, w, h, bits, fill, edge}
const PAINT = new Set(['brush', 'eraser', 'new']);
const NEW_COLOUR = [255, 64, 200];
const HANDLE = 4;   // the polygon's first corner's handle: 2 * HANDLE screen pixels square, whatever the zoom
let data = null, img = null, imgUrl = null, gen = 0, frame = 0;
let view = {s: 1, ox: 0, oy: 0}, fitFor = null, fittedWidth = 0, fitted = true;
let hover = null, selected = null, seq = 0;
let minScore = 0.5, showRejected = false, serverMin = null, serverRej = null;
let lastClick = null, drag = null, pending = false, queued = false;
// the picture at this view, and the scene (picture and masks, without selection and hover): redrawn
// only when they change
let imageLayer = null, imageKey = '', scene = null, sceneKey = '', dataGen = 0;
let pendingMask = null;            // an applied edit drawn before the server answers: {seq, target, m}
// drawing: the open edit (a mask buffer of the image's size), the stroke under way, the polygon
let edit = null, stroke = null, poly = [], cursor = null, brush = 12, notice = '';
const marks = new Map();           // instance id -> {state, press}: an action drawn before the server answers
let opening = null;                // the image drawn ahead of the server: {press, name, since}
// prefetched pictures (url -> Promise<Image>; loaded ones: url -> Image), decoded masks (key -> mask)
// and what to draw ahead (shown image id -> {next, prev}), shared by the page's canvases
const pre = window.__anncanvasPre || (window.__anncanvasPre = {images: new Map(), ready: new Map(),
                                                               masks: new Map(), ahead: new Map()});
const MARKS = {proposed: '?', accepted: '✓', rejected: '✗'};
// The page's ordered presses (the buttons below, clicked or by their keys) and canvas events leave
// the page one by one in the order they were made, after the frame that draws what they changed
// (Gradio's work of sending an event, 50-150 ms of page work, would otherwise hold that frame
// back). A press is drawn by the canvas shown (``press``) and sent as a canvas action naming its
// instance, or as the button's own click, replayed. ``presses`` and ``navs`` count the actions on
// an instance and the next/previous presses sent (the server counts them as ``acted`` / ``moved``).
const ORDERED = '#btn-accept, #btn-reject, #btn-delete, #btn-relabel, #btn-accept-all, #btn-keep-one, ' +
                '#btn-reviewed, #btn-reopen, #btn-undo, #btn-redo, #btn-predict, #btn-next, #btn-prev';
const ACTS = {'btn-accept': 'accept', 'btn-reject': 'reject', 'btn-delete': 'delete', 'btn-relabel': 'relabel',
              'btn-keep-one': 'keep_one'};
const desk = window.__annDesk || (window.__annDesk = (() => {
  const d = {canvases: [], outbox: [], replaying: false, presses: 0, navs: 0, gen: 0};
  window.__studioOutbox = d.outbox;   // test hook: what waits to be sent
  const flush = (g) => {
    if (g !== d.gen) return;
    d.gen += 1;
    for (const send of d.outbox.splice(0)) { try { send(); } catch (err) { console.error(err); } }
  };
  d.send = (fn) => {   // after the next frame (or 100 ms: a hidden page draws none), in order
    d.outbox.push(fn);
    if (d.outbox.length > 1) return;
    const g = d.gen;
    requestAnimationFrame(() => setTimeout(() => flush(g), 0));
    setTimeout(() => flush(g), 100);
  };
  d.replay = (b) => () => { d.replaying = true; try { b.click(); } finally { d.replaying = false; } };
  // presses not sent yet are not saved: leaving the page (reload, closing the tab) asks first
  window.addEventListener('beforeunload', (e) => { if (d.outbox.length) { e.preventDefault(); e.returnValue = ''; } });
  window.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest(ORDERED);
    if (!b || d.replaying) return;
    e.preventDefault(); e.stopImmediatePropagation();
    if (b.disabled || d.canvases.some(c => c.refuse(b))) return;
    if (b.id in ACTS) d.presses += 1;
    if (b.id === 'btn-next' || b.id === 'btn-prev') d.navs += 1;
    let send = null;
    for (const c of d.canvases) send = c.press(b) || send;
    d.send(send || d.replay(b));
  }, true);
  return d;
})());

function parse(t) { try { return JSON.parse(t || '{}'); } catch (e) { return {}; } }
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const im = new Image(); im.onload = () => resolve(im); im.onerror = reject; im.src = url;
  });
}
async function bitmapOf(im) {   // decoded once: drawing an ImageBitmap copies pixels, nothing more
  try { return await createImageBitmap(im); } catch (err) { return im; }
}
function stateOf(inst) { const m = marks.get(inst.id); return m ? m.state : inst.state; }   // 'deleted': a Delete not answered yet
function labelOf(inst) { const m = marks.get(inst.id); return m ? inst.label.replace(/ [?✓✗]$/, '') + ' ' + MARKS[m.state] : inst.label; }
function decode(entry, colour) {   // a masks-file entry (box, runs) as a mask (see ``sprites``)
  const [x, y, w, h] = entry, bits = new Uint8Array(w * h);
  let p = 0, on = 0;
  for (let k = 4; k < entry.length; k++) { if (on) bits.fill(1, p, p + entry[k]); p += entry[k]; on ^= 1; }
  return sprites(x, y, w, h, bits, colour);
}
// A mask ((w, h) ``bits`` at image point (x, y)) and its bitmaps, made once: ``sprite`` is how the
// base layer draws it (the fill at FILL alpha under its opaque edge: one draw a mask), ``edge`` its
// edge, ``white`` its edge in white (the selection). ImageBitmaps: drawing them copies no canvas.
const FILL = 0.4, SELECTED = 0.6;
function sprites(x, y, w, h, bits, colour) {
  const W = Math.max(w, 1), H = Math.max(h, 1);
  const s = new ImageData(W, H), b = new ImageData(W, H), c2 = new ImageData(W, H), fa = Math.round(255 * FILL);
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
    const i = r * w + c;
    if (!bits[i]) continue;
    const o = 4 * i;
    s.data[o] = colour[0]; s.data[o + 1] = colour[1]; s.data[o + 2] = colour[2]; s.data[o + 3] = fa;
    if (c === 0 || r === 0 || c === w - 1 || r === h - 1 || !bits[i - 1] || !bits[i + 1] || !bits[i - w] || !bits[i + w]) {
      s.data[o + 3] = 255;
      b.data[o] = colour[0]; b.data[o + 1] = colour[1]; b.data[o + 2] = colour[2]; b.data[o + 3] = 255;
      c2.data[o] = c2.data[o + 1] = c2.data[o + 2] = c2.data[o + 3] = 255;
    }
  }
  const bitmap = (im) => { const o = new OffscreenCanvas(W, H); o.getContext('2d').putImageData(im, 0, 0); return o.transferToImageBitmap(); };
  return {x, y, w, h, bits, sprite: bitmap(s), edge: bitmap(b), white: bitmap(c2)};
}
function maskOf(inst) { return pendingMask && pendingMask.target === inst.id ? pendingMask.m : masks.get(inst.key); }
function shown() {
  if (!data) return [];
  // the selected instance stays in sight when rejected (a quick A after R acts on what is shown)
  return data.instances.filter(i => stateOf(i) !== 'deleted' && !(stateOf(i) === 'rejected' && !showRejected && i.id !== selected) &&
                                    !(stateOf(i) === 'proposed' && !i.placed && (i.score ?? 0) < minScore - 1e-9) &&
                                    masks.has(i.key));
}
function hits(x, y) {
  const out = [];
  for (const inst of shown()) {
    const m = maskOf(inst);
    const c = x - m.x, r = y - m.y;
    if (c >= 0 && r >= 0 && c < m.w && r < m.h && m.bits[r * m.w + c]) out.push(inst.id);
  }
  return out;
}
function fill() {   // the stage takes the viewport's height below its top (the page needs no scrolling)
  if (stage.offsetParent === null) return;
  const top = stage.getBoundingClientRect().top + window.scrollY;
  const h = Math.max(280, Math.floor(window.innerHeight - top - 10));
  if (stage.style.height !== `${h}px`) stage.style.height = `${h}px`;
}
function resize() {
  const r = stage.getBoundingClientRect(), d = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * d)), h = Math.max(1, Math.round(r.height * d));
  if (cv.width !== w || cv.height !== h) { cv.width = w; cv.height = h; }
  return r;
}
function fit() {
  if (!data) return;
  fill();
  const r = resize();
  const s = Math.min(r.width / data.width, r.height / data.height);
  fittedWidth = r.width;
  fitted = true;
  view = {s, ox: (r.width - data.width * s) / 2, oy: (r.height - data.height * s) / 2};
  draw();
}
function toPoint(e) {   // the image point under the pointer (continuous: pixel (c, r) spans [c, c+1))
  const r = cv.getBoundingClientRect();
  return {x: (e.clientX - r.left - view.ox) / view.s, y: (e.clientY - r.top - view.oy) / view.s};
}
function toImage(e) { const p = toPoint(e); return {x: Math.floor(p.x), y: Math.floor(p.y)}; }
function overlaps(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }
function label(inst, strong, placed) {   // placed: rectangles taken already (null: draw where it fits best)
  const m = maskOf(inst), d = window.devicePixelRatio || 1;
  const text = labelOf(inst);
  ctx.font = `${12 * d}px sans-serif`;
  const tw = ctx.measureText(text).width + 8 * d, th = 16 * d;
  const left = (m.x * view.s + view.ox) * d, top = (m.y * view.s + view.oy) * d, bottom = ((m.y + m.h) * view.s + view.oy) * d;
  // above the box, inside its top, below it, inside its bottom: the first that covers no other label
  const spots = [top - th, top, bottom, bottom - th].map(y => ({x: Math.min(Math.max(0, left), cv.width - tw), y, w: tw, h: th}))
    .filter(r => r.y >= 0 && r.y + th <= cv.height);
  const spot = placed ? spots.find(r => !placed.some(o => overlaps(r, o))) : (spots[0] || {x: Math.max(0, left), y: Math.max(0, top), w: tw, h: th});
  if (!spot) return false;
  if (placed) placed.push(spot);
  const {x, y} = spot;
  ctx.fillStyle = strong ? 'rgba(255,255,255,0.92)' : 'rgba(0,0,0,0.72)';
  ctx.fillRect(x, y, tw, th);
  ctx.fillStyle = strong ? '#000' : '#fff';
  ctx.fillText(text, x + 4 * d, y + 12 * d);
  return true;
}
function layer(c) { return c && c.width === cv.width && c.height === cv.height ? c : new OffscreenCanvas(cv.width, cv.height); }
function paintImage(d) {   // the picture alone, for this view
  imageLayer = layer(imageLayer);
  const ix = imageLayer.getContext('2d');
  ix.setTransform(1, 0, 0, 1, 0, 0);
  ix.clearRect(0, 0, imageLayer.width, imageLayer.height);
  if (!data || !img) return;
  ix.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
  ix.imageSmoothingEnabled = view.s < 1;
  ix.drawImage(img, 0, 0);
}
function paintScene(list, d) {   // the picture and every shown mask, for this view (no selection, no hover)
  scene = layer(scene);
  const sx = scene.getContext('2d');
  sx.setTransform(1, 0, 0, 1, 0, 0);
  sx.clearRect(0, 0, scene.width, scene.height);
  if (!data || !img) return;
  sx.drawImage(imageLayer, 0, 0);
  sx.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
  sx.imageSmoothingEnabled = false;
  const editing = edit && !pendingMask ? edit.target : undefined;   // the mask being edited is drawn from the buffer
  const saving = pendingMask ? pendingMask.target : undefined;        // an applied edit: drawn last, on top
  for (let k = list.length - 1; k >= 0; k--) {
    const inst = list[k], m = masks.get(inst.key);
    if (inst.id === editing || inst.id === saving) continue;
    if (stateOf(inst) === 'rejected') {   // the fill at half FILL, the edge opaque
      sx.globalAlpha = 0.5; sx.drawImage(m.sprite, m.x, m.y); sx.globalAlpha = 1; sx.drawImage(m.edge, m.x, m.y);
    } else sx.drawImage(m.sprite, m.x, m.y);
  }
  if (pendingMask) {   // the applied strokes as the instance's new mask until the server answers
    const m = pendingMask.m;
    sx.drawImage(m.sprite, m.x, m.y);
  }
}
function overlays(d) {   // on top of the scene: the edit buffer, the polygon, the brush outline
  if (!data || !img) return;
  ctx.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
  ctx.imageSmoothingEnabled = false;
  if (edit && edit.shown && !pendingMask) {
    const [x0, y0, x1, y1] = edit.shown;
    ctx.globalAlpha = 0.6;
    ctx.drawImage(edit.layer, x0, y0, x1 - x0, y1 - y0, x0, y0, x1 - x0, y1 - y0);
    ctx.globalAlpha = 1;
  }
  ctx.setTransform(d, 0, 0, d, 0, 0);
  const screen = (p) => [p.x * view.s + view.ox, p.y * view.s + view.oy];
  if (poly.length) {
    ctx.strokeStyle = '#fff'; ctx.fillStyle = '#fff'; ctx.lineWidth = 2;
    ctx.beginPath();
    poly.forEach((p, k) => { const [sx, sy] = screen(p); k ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy); });
    if (cursor) { const [sx, sy] = screen(cursor); ctx.lineTo(sx, sy); }
    ctx.stroke();
    for (const p of poly) { const [sx, sy] = screen(p); ctx.fillRect(sx - 3, sy - 3, 6, 6); }
    if (poly.length >= 3) {   // the first corner's handle: a click on it closes the polygon
      const [sx, sy] = screen(poly[0]);
      ctx.strokeStyle = '#ffd400'; ctx.lineWidth = 2;
      ctx.strokeRect(sx - HANDLE, sy - HANDLE, 2 * HANDLE, 2 * HANDLE);
    }
  }
  if (cursor && PAINT.has(tool())) {
    const [sx, sy] = screen(cursor);
    ctx.strokeStyle = tool() === 'eraser' ? '#fff' : '#000'; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(sx, sy, Math.max(1, brush / 2 * view.s), 0, 2 * Math.PI); ctx.stroke();
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
}
function draw() {
  resize();
  const d = window.devicePixelRatio || 1;
  const list = shown();
  const imageK = [imgUrl, view.s, view.ox, view.oy, cv.width, cv.height].join('|');
  if (imageK !== imageKey) { paintImage(d); imageKey = imageK; sceneKey = ''; }
  const key = [dataGen, minScore, showRejected, edit && !pendingMask ? edit.target : 'none',
               pendingMask ? pendingMask.seq : 0].join('|');
  if (key !== sceneKey) { paintScene(list, d); sceneKey = key; }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, cv.width, cv.height);
  if (scene) ctx.drawImage(scene, 0, 0);
  if (data && img) {   // the selected and the hovered one on top of the cached scene
    const open = edit && !pendingMask ? edit.target : undefined;
    ctx.setTransform(view.s * d, 0, 0, view.s * d, view.ox * d, view.oy * d);
    ctx.imageSmoothingEnabled = false;
    const sel = list.find(i => i.id === selected && i.id !== open);
    if (sel) {   // the fill from FILL to SELECTED alpha (rejected: as it is), the edge white
      const m = maskOf(sel);
      if (stateOf(sel) !== 'rejected') { ctx.globalAlpha = (1 - (1 - SELECTED) / (1 - FILL)) / FILL; ctx.drawImage(m.sprite, m.x, m.y); }
      ctx.globalAlpha = 1;
      ctx.drawImage(m.white, m.x, m.y);
    }
    const hov = list.find(i => i.id === hover && i.id !== selected && i.id !== open);
    if (hov) {   // brighter (the fill 0.35 more), outlined
      const m = maskOf(hov);
      ctx.globalAlpha = 0.35 / FILL;
      ctx.drawImage(m.sprite, m.x, m.y);
      ctx.globalAlpha = 1;
      ctx.drawImage(m.edge, m.x, m.y);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }
  overlays(d);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  let labelled = [], placed = [];
  if (allLabels.checked)    // top first: the topmost instances get their labels where they fit
    labelled = list.filter(i => i.id !== hover && i.id !== selected && label(i, false, placed)).map(i => i.id);
  for (const id of [hover, selected]) {
    const inst = list.find(i => i.id === id);
    if (inst) label(inst, id === selected, null);
  }
  cv.dataset.labels = labelled.join(',');
  cv.dataset.labelBoxes = placed.map(r => [r.x, r.y, r.w, r.h].map(Math.round).join(',')).join(';');
  frame += 1;
  cv.dataset.frame = String(frame);
  cv.dataset.token = data ? data.token : '';
  cv.dataset.selected = selected == null ? '' : String(selected);
  cv.dataset.hover = hover == null ? '' : String(hover);
  cv.dataset.shown = list.map(i => i.id).join(',');
  cv.dataset.states = data ? data.instances.map(i => `${i.id}:${stateOf(i)}`).join(',') : '';
  cv.dataset.view = `${view.s},${view.ox},${view.oy}`;
  cv.dataset.brush = String(brush);
  cv.dataset.edit = edit ? (edit.target == null ? 'new' : String(edit.target)) : '';
  cv.dataset.unsaved = String(edit ? edit.ops.length : 0);
  cv.dataset.pending = pendingMask ? (pendingMask.target == null ? 'new' : String(pendingMask.target)) : '';
  cv.dataset.corners = String(poly.length);
  cv.dataset.opening = opening && data ? data.token : '';
  cv.dataset.ahead = ['next', 'prev'].map(d => { const a = ahead(d); return a ? `${d}:${a.token}` : ''; }).filter(Boolean).join(',');
  openingInfo.textContent = opening ? `opening ${opening.name} …` : '';
  root.classList.toggle('correct', !!data && data.mode === 'correct');
  if (data) info.textContent = `${list.length} shown of ${data.instances.length} · ${Math.round(view.s * 100)}%`;
  if (notice) editInfo.textContent = notice;
  else if (!edit) editInfo.textContent = poly.length ? `polygon: ${poly.length} corners` + (poly.length >= 3 ? ' · Enter, a double click or the yellow first corner closes' : '') : '';
  else editInfo.textContent = `${edit.target == null ? 'new mask' : '#' + edit.target}: ` +
                              (edit.pendingSeq ? 'applied, saving…' : `${edit.ops.length} unsaved · Enter applies, Esc discards`);
}
function later() { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; draw(); }); } }
function say(text) { notice = text; draw(); }   // shown until the next drawing action

// ------------------------------------------------------------------ drawing on the mask buffer
function grow(b, x0, y0, x1, y1) {
  return b ? [Math.min(b[0], x0), Math.min(b[1], y0), Math.max(b[2], x1), Math.max(b[3], y1)] : [x0, y0, x1, y1];
}
function repaint(x0, y0, x1, y1) {   // the buffer's pixels in [x0, x1) x [y0, y1) onto its layer
  if (x1 <= x0 || y1 <= y0) return;
  const w = x1 - x0, h = y1 - y0, W = data.width, im = new ImageData(w, h), c = edit.colour, bits = edit.bits;
  for (let r = 0; r < h; r++) {
    const base = (y0 + r) * W + x0;
    for (let k = 0; k < w; k++) if (bits[base + k]) {
      const o = 4 * (r * w + k);
      im.data[o] = c[0]; im.data[o + 1] = c[1]; im.data[o + 2] = c[2]; im.data[o + 3] = 255;
    }
  }
  edit.layer.getContext('2d').putImageData(im, x0, y0);
  edit.shown = grow(edit.shown, x0, y0, x1, y1);
}
function startEdit(kind) {   // the open edit, or a new one for this tool (null: none possible)
  if (edit) {
    if (kind === 'new' && edit.target != null) { say('apply (Enter) or discard (Esc) the open edit first'); return null; }
    return edit;
  }
  let target = null;
  if (kind === 'brush' || kind === 'eraser') {   // they edit the selected mask; a new object: the new-mask tool
    target = data.instances.find(i => i.id === selected && masks.has(i.key)) || null;
    if (!target) {
      say(`nothing selected: select an instance to ${kind === 'brush' ? 'paint on' : 'erase from'} ` +
          '(a new object: the new mask or polygon tool)');
      return null;
    }
  }
  const W = data.width, H = data.height;
  edit = {target: target ? target.id : null, token: data.token, image: data.image, bits: new Uint8Array(W * H),
          layer: new OffscreenCanvas(W, H), colour: target ? target.colour : NEW_COLOUR, ops: [], box: null,
          shown: null, pendingSeq: 0};
  if (target) {
    const m = masks.get(target.key);
    for (let r = 0; r < m.h; r++) edit.bits.set(m.bits.subarray(r * m.w, (r + 1) * m.w), (m.y + r) * W + m.x);
    repaint(m.x, m.y, m.x + m.w, m.y + m.h);
  }
  return edit;
}
function setPixel(op, i, v) { if (edit.bits[i] !== v) { edit.bits[i] = v; op.idx.push(i); } }
function segment(a, b, op) {   // every pixel whose centre is within brush/2 of the segment a-b
  const r = op.radius, r2 = r * r, W = data.width, H = data.height;
  const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - r)), x1 = Math.min(W, Math.ceil(Math.max(a.x, b.x) + r) + 1);
  const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - r)), y1 = Math.min(H, Math.ceil(Math.max(a.y, b.y) + r) + 1);
  if (x0 >= x1 || y0 >= y1) return;
  const dx = b.x - a.x, dy = b.y - a.y, L = dx * dx + dy * dy;
  for (let row = y0; row < y1; row++) {
    const py = row + 0.5;
    for (let c = x0; c < x1; c++) {
      const px = c + 0.5;
      let t = L > 0 ? ((px - a.x) * dx + (py - a.y) * dy) / L : 0;
      t = t < 0 ? 0 : (t > 1 ? 1 : t);
      const qx = a.x + t * dx - px, qy = a.y + t * dy - py;
      if (qx * qx + qy * qy <= r2) setPixel(op, row * W + c, op.value);
    }
  }
  op.box = grow(op.box, x0, y0, x1, y1);
  edit.box = grow(edit.box, x0, y0, x1, y1);
  repaint(x0, y0, x1, y1);
}
function fillPolygon(pts, op) {   // every pixel whose centre is inside (even-odd rule)
  const W = data.width, H = data.height, n = pts.length;
  const ys = pts.map(p => p.y), xs = pts.map(p => p.x);
  const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(H, Math.ceil(Math.max(...ys)) + 1);
  const x0 = Math.max(0, Math.floor(Math.min(...xs))), x1 = Math.min(W, Math.ceil(Math.max(...xs)) + 1);
  if (x0 >= x1 || y0 >= y1) return;
  for (let row = y0; row < y1; row++) {
    const py = row + 0.5, cross = [];
    for (let k = 0; k < n; k++) {
      const a = pts[k], b = pts[(k + 1) % n];
      if ((a.y > py) !== (b.y > py)) cross.push(a.x + (py - a.y) * (b.x - a.x) / (b.y - a.y));
    }
    cross.sort((u, v) => u - v);
    for (let j = 0; j + 1 < cross.length; j += 2) {
      const xa = cross[j], xb = cross[j + 1];
      for (let c = Math.max(x0, Math.floor(xa) - 1); c < Math.min(x1, Math.ceil(xb) + 1); c++) {
        const px = c + 0.5;
        if (px >= xa && px < xb) setPixel(op, row * W + c, 1);
      }
    }
  }
  op.box = [x0, y0, x1, y1];
  edit.box = grow(edit.box, x0, y0, x1, y1);
  repaint(x0, y0, x1, y1);
}
function unapplied() { return !!(edit && edit.ops.length && !edit.pendingSeq); }
// what leaving the image would drop: strokes not applied, or a polygon's corners not closed
function unsaved() { return unapplied() || poly.length > 0; }
function unsavedWhat() {
  if (poly.length) return `the polygon being clicked out (${poly.length} corners) is not closed`;
  return `the strokes on ${edit.target == null ? 'a new mask' : '#' + edit.target} are not applied`;
}
function startStroke(t, e) {
  notice = '';
  if (edit && edit.pendingSeq) { say('saving the last edit…'); return false; }
  if (unapplied() && t !== 'new' && (selected ?? null) !== edit.target) {   // strokes stay with their instance
    say(`the open strokes are on ${edit.target == null ? 'a new mask' : '#' + edit.target}: apply (Enter) or ` +
        `discard (Esc) them before drawing on ${selected == null ? 'a new mask' : '#' + selected}`);
    return false;
  }
  if (!startEdit(t)) return false;
  const p = toPoint(e), value = t === 'eraser' ? 0 : 1;
  stroke = {last: p, op: {kind: 'stroke', value, radius: brush / 2, idx: [], box: null}};
  segment(p, p, stroke.op);
  later();
  return true;
}
function extendStroke(e) {
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const ev of (events.length ? events : [e])) {
    const p = toPoint(ev);
    if (p.x !== stroke.last.x || p.y !== stroke.last.y) { segment(stroke.last, p, stroke.op); stroke.last = p; }
  }
  cursor = stroke.last;
  later();
}
function endStroke(e) {
  extendStroke(e);
  edit.ops.push(stroke.op);
  stroke = null;
  draw();
}
function closePolygon() {
  if (poly.length < 3) { say('a polygon needs at least 3 corners'); return; }
  if (edit && edit.pendingSeq) { say('saving the last edit…'); return; }
  if (unapplied()) {
    say('apply (Apply button) or discard the open strokes first: Esc drops the corners, then Enter applies ' +
        'or Esc discards the strokes');
    return;
  }
  const fresh = !edit;
  if (!startEdit('polygon')) return;
  const op = {kind: 'polygon', value: 1, idx: [], box: null};
  fillPolygon(poly, op);
  edit.ops.push(op);
  poly = [];
  if (fresh) apply(); else draw();
}
function undoOp() {
  const op = edit.ops.pop();
  for (const i of op.idx) edit.bits[i] = op.value ? 0 : 1;
  if (op.box) repaint(...op.box);
  if (!edit.ops.length && edit.target == null) edit = null;
  draw();
}
function discard() { edit = null; stroke = null; poly = []; notice = ''; draw(); }
function apply() {   // the buffer inside the box of everything drawn goes to the server as runs
  if (!edit || !edit.box || !edit.ops.length || edit.pendingSeq) return;
  if (opening) { say('the image is still opening: apply (Enter) once it has'); return; }
  const [x0, y0, x1, y1] = edit.box, W = data.width, bits = edit.bits, runs = [];
  let on = 0, n = 0;
  for (let r = y0; r < y1; r++) {
    const base = r * W;
    for (let c = x0; c < x1; c++) { const v = bits[base + c]; if (v !== on) { runs.push(n); n = 0; on = v; } n++; }
  }
  runs.push(n);
  seq += 1;
  notice = '';
  edit.pendingSeq = seq;
  pendingMask = {seq, target: edit.target, m: bufferMask()};   // drawn now, until the server answers
  const how = edit.ops.every(op => op.kind === 'polygon') ? 'polygon' : 'brush';
  const sent = {kind: 'mask', target: edit.target, box: [x0, y0, x1 - x0, y1 - y0], runs, token: edit.token, how, seq};
  desk.send(() => trigger('select', sent));
  draw();
}
function bufferMask() {   // the edit buffer inside all it has shown (the old mask's box and the strokes') as a mask
  const [x0, y0, x1, y1] = edit.shown, w = x1 - x0, h = y1 - y0, W = data.width, bits = new Uint8Array(w * h);
  for (let r = 0; r < h; r++) bits.set(edit.bits.subarray((y0 + r) * W + x0, (y0 + r) * W + x1), r * w);
  return sprites(x0, y0, w, h, bits, edit.colour);
}
function setBrush(v) {
  brush = Math.max(1, Math.min(200, Math.round(v)));
  sizeInput.value = String(brush);
  sizeText.textContent = `${brush} px`;
  draw();
}
function chooseTool(name) {   // through the page's tool radio, so that the server knows it too
  const input = document.querySelector(`#tool input[value="${name}"]`);
  if (input && !input.checked) input.click();
}
function toggleEraser() { chooseTool(tool() === 'eraser' ? 'brush' : 'eraser'); }

async function load() {
  const v = parse(props.value);
  if (opening) {   // an answer to an event from before the press: the image drawn ahead stays
    if ((v.moved ?? 0) < opening.press && performance.now() - opening.since < 30000) return;
    opening = null;  // the answer to the press (or none for 30 s): draw what the server says
  }
  const mine = ++gen;
  // the server's selection counts from now (a key pressed while this value's masks load acts on it)
  if (v.token && (v.seq ?? 0) >= seq) selected = v.selected ?? null;
  if (!v.token) { data = null; img = null; imgUrl = null; edit = null; pendingMask = null; poly = []; info.textContent = 'no image'; draw(); return; }
  // the picture and the masks are fetched at the same time
  const picture = v.image !== imgUrl ? (pre.images.get(v.image) || loadImage(v.image).then(bitmapOf)) : null;
  for (const inst of v.instances) if (!masks.has(inst.key) && pre.masks.has(inst.key)) masks.set(inst.key, pre.masks.get(inst.key));
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
  if (edit) {   // an applied edit ends when its revision arrives; a refused one stays to fix or discard
    const answered = edit.pendingSeq && (v.seq ?? 0) >= edit.pendingSeq;
    const refused = answered && (v.refused ?? 0) >= edit.pendingSeq;
    if (v.image !== edit.image || (answered && !refused && v.token !== edit.token)) edit = null;
    else {
      if (answered) edit.pendingSeq = 0;
      edit.token = v.token;
      if (edit.target != null && !v.instances.some(i => i.id === edit.target)) {   // its instance went away:
        // the strokes (and the mask they were drawn on) stay, as a new mask to apply or discard
        notice = `#${edit.target} no longer exists (deleted or undone): your strokes are kept as a new mask; ` +
                 'Enter adds it, Esc discards it';
        edit.target = null; edit.colour = NEW_COLOUR;
      }
    }
  }
  if (!edit || !edit.pendingSeq) pendingMask = null;   // answered: the stored revision, or the strokes again
  if (fresh) poly = [];
  data = v;
  dataGen += 1;
  for (const [id, m] of [...marks]) if ((v.acted ?? 0) >= m.press) marks.delete(id);
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
function polygonClick(e) {   // a corner, or the close when the click is on the first corner's handle
  const p = toPoint(e), within = (q, px) => Math.max(Math.abs(q.x - p.x), Math.abs(q.y - p.y)) * view.s <= px;
  if (poly.length >= 3 && within(poly[0], HANDLE)) { closePolygon(); return; }
  // the second click of a double click lands on the corner the first one added: that double click closes
  if (poly.length && within(poly[poly.length - 1], 0.5)) return;
  poly.push(p);
  notice = '';
  draw();
}
function click(e) {
  if (!data) return;
  const t = tool();
  if (t === 'polygon') { polygonClick(e); return; }
  const p = toImage(e);
  if (p.x < 0 || p.y < 0 || p.x >= data.width || p.y >= data.height) return;
  if (opening && t !== 'select') { say('the image is still opening: click again once it has'); return; }
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
  const sent = {x: p.x, y: p.y, tool: t, pick, seq};
  desk.send(() => trigger('select', sent));
}
function zoomAt(factor, sx, sy) {
  fitted = false;
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
  e.preventDefault();   // no text selection or native drag starts from here (it cancelled strokes)
  stage.focus({preventScroll: true});
  try { stage.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer */ }
  if (data && e.button === 0 && PAINT.has(tool()) && startStroke(tool(), e)) return;
  drag = {x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy, moved: false, button: e.button};
});
stage.addEventListener('pointermove', (e) => {
  if (stroke) { extendStroke(e); return; }
  if (drag) {
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.moved || Math.abs(dx) + Math.abs(dy) > 4) {
      drag.moved = true; fitted = false; view.ox = drag.ox + dx; view.oy = drag.oy + dy; draw();
    }
    return;
  }
  if (!data || pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const t = tool();
    if (PAINT.has(t) || t === 'polygon' || cursor) { cursor = toPoint(e); later(); }
    const p = toImage(e);
    const h = hits(p.x, p.y)[0] ?? null;
    if (h !== hover) { hover = h; draw(); }
  });
});
stage.addEventListener('pointerup', (e) => {
  if (stroke) { endStroke(e); return; }
  const d = drag; drag = null;
  if (d && !d.moved && d.button === 0) click(e);
});
// a pointer the browser takes over (a native drag, a gesture): the stroke so far is kept, not lost
stage.addEventListener('pointercancel', () => { if (stroke) { edit.ops.push(stroke.op); stroke = null; draw(); } drag = null; });
stage.addEventListener('dblclick', (e) => { if (tool() === 'polygon' && poly.length >= 3) { e.preventDefault(); closePolygon(); } });
stage.addEventListener('contextmenu', (e) => { if (tool() !== 'select') e.preventDefault(); });
stage.addEventListener('pointerleave', () => { cursor = null; if (hover !== null) hover = null; draw(); });
element.querySelector('.anncanvas-fit').addEventListener('click', fit);
allLabels.addEventListener('change', () => draw());
element.querySelector('.anncanvas-zoom-in').addEventListener('click', () => { const r = cv.getBoundingClientRect(); zoomAt(1.25, r.width / 2, r.height / 2); });
element.querySelector('.anncanvas-zoom-out').addEventListener('click', () => { const r = cv.getBoundingClientRect(); zoomAt(0.8, r.width / 2, r.height / 2); });
element.querySelector('.anncanvas-apply').addEventListener('click', () => { if (poly.length) closePolygon(); else apply(); });
element.querySelector('.anncanvas-discard').addEventListener('click', discard);
sizeInput.addEventListener('input', () => setBrush(Number(sizeInput.value)));
function onFilter(e) {   // the filter inputs as they move (read from the event: the page updates later)
  const t = e.target;
  if (!t.closest) return;
  if (t.closest('#min-score') && t.type !== 'checkbox') {
    const v = Number(t.value);
    if (t.value !== '' && !isNaN(v)) { minScore = v; draw(); }
  } else if (t.closest('#show-rejected') && t.type === 'checkbox') { showRejected = t.checked; draw(); }
  else if (t.closest('#tool') && t.value !== 'polygon' && poly.length) { poly = []; draw(); }
}
document.addEventListener('input', onFilter, true);
document.addEventListener('change', onFilter, true);
// the drawing keys, before the page's own (they act only where this canvas shows the Correct view)
document.addEventListener('keydown', (ev) => {
  if (!data || data.mode !== 'correct' || cv.offsetParent === null) return;
  const t = ev.target;
  const typing = t && (t.isContentEditable || ['TEXTAREA', 'SELECT'].includes(t.tagName) ||
                      (t.tagName === 'INPUT' && !['radio', 'checkbox', 'button'].includes(t.type)));
  if (typing) return;   // a key typed into a box is the box's (a focused tool radio is not)
  const overlay = document.getElementById('keys-overlay');
  if (overlay && !overlay.hidden) return;
  const mod = ev.ctrlKey || ev.metaKey, open = edit && edit.ops.length;
  let done = true;
  if (ev.key === 'Enter' && !mod) { if (poly.length) closePolygon(); else if (open) apply(); else done = false; }
  else if (ev.key === 'Escape') { if (poly.length) { poly = []; draw(); } else if (edit) discard(); else done = false; }
  else if (mod && ev.key.toLowerCase() === 'z' && !ev.shiftKey) {
    if (poly.length) { poly.pop(); draw(); } else if (open && !edit.pendingSeq) undoOp(); else done = false;
  }
  else if (mod || ev.altKey) done = false;
  else if (ev.key === 'e' || ev.key === 'E') toggleEraser();
  else if (ev.key === 'b' || ev.key === 'B') chooseTool('brush');
  else if (ev.key === ']') setBrush(Math.max(brush + 1, brush * 1.25));
  else if (ev.key === '[') setBrush(Math.min(brush - 1, brush / 1.25));
  else if (unsaved() && 'nNpPmM'.includes(ev.key)) say(poly.length ? 'close (Enter) or drop (Esc) the polygon first'
                                                                      : 'apply (Enter) or discard (Esc) the strokes first');
  else done = false;
  if (done) { ev.preventDefault(); ev.stopImmediatePropagation(); }
}, true);
window.addEventListener('beforeunload', (ev) => {   // strokes not applied, corners not closed: ask before leaving
  if ((edit && edit.ops.length) || poly.length) { ev.preventDefault(); ev.returnValue = ''; }
});
setBrush(brush);
// a fitted image stays fitted when the stage changes size; a zoomed or panned one keeps its view
new ResizeObserver(() => { if (data && fitFor === data.image && view.s) { if (fitted) fit(); else draw(); } }).observe(stage);
// the page above the stage changes height (status lines, questions): the stage follows
new ResizeObserver(fill).observe(document.querySelector('.gradio-container') || document.body);
new ResizeObserver(fill).observe(element.querySelector('.anncanvas-bar'));   // the Correct tools wrap it
window.addEventListener('resize', () => { fill(); if (data) fit(); });
// fitted while hidden (a tab not shown yet has no size): fit again once it shows
new IntersectionObserver((seen) => { if (seen.some(s => s.isIntersecting)) { fill(); if (data && fittedWidth < 2) fit(); } }).observe(stage);
function ahead(dir) {   // the image ``dir`` ('next' / 'prev') of the one drawn, when all its files are here
  if (!data) return null;
  const around = pre.ahead.get(data.token.split(':')[0]), a = around && around[dir];
  if (!a || !a.masks || !pre.ready.has(a.image) || a.instances.some(i => !pre.masks.has(i.key))) return null;
  return a;
}
function openAhead(a, press) {   // draw image ``a`` now, kept until the answer to ``press`` arrives
  gen += 1;   // a value still loading is older than the press
  for (const inst of a.instances) masks.set(inst.key, pre.masks.get(inst.key));
  img = pre.ready.get(a.image); imgUrl = a.image;
  data = {...a, selected: null, min_score: data.min_score, show_rejected: data.show_rejected, mode: data.mode,
          seq: data.seq, acted: data.acted, moved: press};
  opening = {press, name: a.name, since: performance.now()};
  selected = null; hover = null; poly = []; edit = null; pendingMask = null; notice = '';
  dataGen += 1;
  fitFor = a.image;
  fit();
}
// while an image drawn ahead is opening, edits wait: requests sent close together can reach the
// server in either order, so an edit could land on the image before, which the person no longer sees
const EDITS = '#btn-accept, #btn-reject, #btn-delete, #btn-relabel, #btn-accept-all, #btn-keep-one, ' +
              '#btn-reviewed, #btn-reopen, #btn-undo, #btn-redo, #btn-predict';
function refuse(b) {   // a press held back here (said why): true when it must not be sent
  if (opening && b.matches(EDITS)) { say(`${opening.name} is still opening: nothing was changed, press again once it has`); return true; }
  if (!b.matches('#btn-next, #btn-prev, #btn-reviewed, #btn-predict') || !unsaved()) return false;
  const what = unsavedWhat();   // strokes not applied, corners not closed: moving on asks first
  if (window.confirm(`${what[0].toUpperCase()}${what.slice(1)}. Discard it and go on?`)) { discard(); return false; }
  say(poly.length ? 'close (Enter) or drop (Esc) the polygon first' : 'apply (Enter) or discard (Esc) the strokes first');
  return true;
}
// an ordered press (see ``desk``), drawn now by the canvas shown: next / previous draw the image
// loaded ahead; accept, reject and delete mark the selected instance until the answer to that
// press arrives. Returns how to send it: an action naming the instance shown selected (null:
// nothing here to draw, the button's own click goes)
function press(b) {
  if (!data || stage.offsetParent === null) return null;
  if (b.id === 'btn-next' || b.id === 'btn-prev') {
    const a = !stroke && !unsaved() && ahead(b.id === 'btn-next' ? 'next' : 'prev');
    if (a) openAhead(a, desk.navs);
    return null;
  }
  const act = ACTS[b.id];
  if (!act) return null;
  const inst = data.instances.find(i => i.id === selected && stateOf(i) !== 'deleted') || null;
  // an instance the server just selected whose mask is still loading (a placed query) is named too
  const loading = !inst && selected != null && !data.instances.some(i => i.id === selected);
  const state = {accept: 'accepted', reject: 'rejected', delete: 'deleted'}[act];
  if (inst && state) { marks.set(inst.id, {state, press: desk.presses}); dataGen += 1; }
  if (inst && act === 'delete') selected = null;
  seq += 1;
  const sent = {kind: 'action', action: act, target: inst ? inst.id : (loading ? selected : null), token: data.token, seq};
  draw();
  return () => trigger('select', sent);
}
desk.canvases.push({refuse, press});
// the image picker opens another image too: choosing one with work not saved asks first
function pickerGuard(e) {
  const inPicker = e.target.closest && e.target.closest('#image-picker');
  if (!inPicker || !unsaved() || stage.offsetParent === null) return;
  if (e.type === 'keydown' ? e.key !== 'Enter' : !e.target.closest('li, [role=option]')) return;
  const what = unsavedWhat();
  if (window.confirm(`${what[0].toUpperCase()}${what.slice(1)}. Discard it and open the other image?`)) { discard(); return; }
  e.preventDefault(); e.stopImmediatePropagation();
  say(poly.length ? 'close (Enter) or drop (Esc) the polygon first' : 'apply (Enter) or discard (Esc) the strokes first');
}
for (const type of ['mousedown', 'click', 'keydown']) document.addEventListener(type, pickerGuard, true);
function loadAhead(a) {   // one image's picture and masks, loaded and decoded ahead
  if (!pre.images.has(a.image)) {
    if (pre.images.size > 6) { const old = pre.images.keys().next().value; pre.images.delete(old); pre.ready.delete(old); }
    const im = loadImage(a.image).then(bitmapOf);
    im.then((i) => { if (pre.images.get(a.image) === im) pre.ready.set(a.image, i); }, () => pre.images.delete(a.image));
    pre.images.set(a.image, im);
  }
  const todo = a.instances.filter(i => !pre.masks.has(i.key));
  const runs = a.masks && todo.length ? fetch(a.masks).then(r => r.json()).then((all) => {
    if (pre.masks.size > 2000) pre.masks.clear();
    for (const inst of todo) if (all[inst.id]) pre.masks.set(inst.key, decode(all[inst.id], inst.colour));
  }) : null;
  return Promise.all([pre.images.get(a.image), runs]).catch(() => { /* a hint only: the value's own files are fetched then */ });
}
async function prefetch(e) {   // the next and previous images of the one shown, loaded ahead
  const p = parse(e.detail);
  if (p.from == null) return;
  if (pre.ahead.size > 64) pre.ahead.delete(pre.ahead.keys().next().value);
  pre.ahead.set(String(p.from), p);
  await Promise.all([p.next, p.prev].filter(Boolean).map(loadAhead));
  window.dispatchEvent(new Event('anncanvas-ready'));
}
if (!window.__anncanvasPrefetch) { window.__anncanvasPrefetch = true; window.addEventListener('anncanvas-prefetch', prefetch); }
window.addEventListener('anncanvas-ready', () => { if (data) later(); });
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


def instance_rows(instances: Sequence[Instance], masks: Masks) -> list[dict[str, Any]]:
    """The ``instances`` field of a value (see the module doc), in the given order."""
    return [{"id": i.id, "label": instance_label(i), "score": i.score, "state": i.state,
             "placed": i.placed_at is not None, "colour": list(colour_for(i.id)), "key": masks.keys[i.id]}
            for i in instances]


def value(*, token: str, image_path: str, size: tuple[int, int], masks: Masks,
          instances: Sequence[Instance], selected: int | None, min_score: float, show_rejected: bool,
          mode: str, seq: int = 0, acted: int = 0, moved: int = 0, refused: int = 0) -> str:
    """The canvas's value (see the module doc). ``size`` is the image's (H, W); ``instances``
    are all of the image's, top first; ``refused`` the counter of the last applied edit the
    server refused (its strokes stay in the browser to apply again or discard)."""
    return json.dumps({"token": token, "image": file_url(image_path), "width": size[1], "height": size[0],
                       "masks": file_url(masks.path), "instances": instance_rows(instances, masks),
                       "selected": selected, "min_score": round(float(min_score), 4),
                       "show_rejected": bool(show_rejected), "mode": mode, "seq": seq, "acted": acted,
                       "moved": moved, "refused": refused}, separators=(",", ":"))


@dataclass(frozen=True)
class Ahead:
    """An image the page may load ahead: its token ("<image id>:<revision>"), file name, size
    (H, W) and picture file, and its masks (None: not predicted yet) with every instance, top first."""

    token: str
    name: str
    size: tuple[int, int]
    image_path: str
    masks: Masks | None
    instances: Sequence[Instance]

    def entry(self) -> dict[str, Any]:
        """The JSON of one image in ``prefetch_value``."""
        rows = [] if self.masks is None else instance_rows(self.instances, self.masks)
        return {"token": self.token, "name": self.name, "image": file_url(self.image_path),
                "width": self.size[1], "height": self.size[0],
                "masks": None if self.masks is None else file_url(self.masks.path), "instances": rows}


def prefetch_value(shown_id: int, following: Ahead | None, previous: Ahead | None) -> str:
    """What the browser may load ahead while image ``shown_id`` is shown (see the module doc): the
    following and the previous image (None: none, or unreadable)."""
    return json.dumps({"from": shown_id, "next": following and following.entry(),
                       "prev": previous and previous.entry()}, separators=(",", ":"))


@dataclass(frozen=True)
class Click:
    """A click on the canvas: image pixel (x, y), the tool, the browser's pick and its counter."""

    x: int
    y: int
    tool: str
    pick: int | None
    seq: int


def read_click(data: Any) -> Click:
    """The event data of a canvas click as a Click (ValueError when malformed)."""
    if not isinstance(data, dict):
        raise ValueError("the canvas sent a click without data")
    pick = data.get("pick")
    return Click(int(data["x"]), int(data["y"]), str(data.get("tool") or "select"),
                 None if pick is None else int(pick), int(data.get("seq") or 0))


@dataclass(frozen=True)
class MaskEdit:
    """A drawn edit: inside ``box`` (x, y, w, h; image pixels) the mask becomes ``crop`` ((h, w)
    bool); outside it stays as stored. ``target``: the instance edited, None for a new one;
    ``image_id``: the image it was drawn on (None: not said, an API call); ``how``: "brush" or
    "polygon"; ``seq``: the browser's event counter (0 from the API)."""

    target: int | None
    box: tuple[int, int, int, int]
    crop: np.ndarray
    image_id: int | None = None
    how: str = "brush"
    seq: int = 0

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` ((H, W) bool, not changed) with the box replaced by the crop; ValueError
        when the box does not lie inside the image."""
        x, y, w, h = self.box
        height, width = mask.shape
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"the edit's box {list(self.box)} does not lie inside the {width}x{height} image")
        out = mask.copy()
        out[y:y + h, x:x + w] = self.crop
        return out


def runs_to_crop(runs: Sequence[int], w: int, h: int) -> np.ndarray:
    """Row-major runs (0s first, as ``mask_runs`` writes them) as an (h, w) bool crop;
    ValueError when they do not add up to w*h pixels or one is negative."""
    counts = np.asarray(runs, np.int64)
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != w * h:
        raise ValueError(f"the edit's runs cover {int(counts.sum()) if counts.ndim == 1 else '?'} pixels, "
                         f"its {w}x{h} box {w * h}")
    return np.repeat(np.arange(counts.size) % 2 == 1, counts).reshape(h, w)


def read_edit(data: Any) -> MaskEdit:
    """An applied edit's JSON (a dict, or its text from the API; see the module doc) as a
    MaskEdit (ValueError when malformed)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"the edit is not JSON: {e}") from None
    if not isinstance(data, dict) or "box" not in data or "runs" not in data:
        raise ValueError("the edit needs a box [x, y, w, h] and runs")
    try:
        x, y, w, h = (int(v) for v in data["box"])
    except (TypeError, ValueError):
        raise ValueError(f"the edit's box must be 4 integers [x, y, w, h], not {data['box']!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"the edit's box {[x, y, w, h]} is empty")
    token, target = str(data.get("token") or ""), data.get("target")
    image_id = int(token.split(":")[0]) if token else None
    return MaskEdit(None if target is None else int(target), (x, y, w, h), runs_to_crop(data["runs"], w, h),
                    image_id, str(data.get("how") or "brush"), int(data.get("seq") or 0))


ACTIONS = ("accept", "reject", "delete", "relabel", "keep_one")   # also their buttons' names in app.ui


@dataclass(frozen=True)
class Action:
    """A press of an action on the instance the page shows selected (A, R, Del, L, K or its
    button): ``target`` the instance (None: none was selected), ``image_id`` the image the page
    showed (from its token), ``seq`` the browser's event counter."""

    action: str
    target: int | None
    image_id: int | None
    seq: int


def read_action(data: dict[str, Any]) -> Action:
    """An action's JSON (see the module doc) as an Action (ValueError when malformed)."""
    action, target, token = data.get("action"), data.get("target"), str(data.get("token") or "")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    return Action(str(action), None if target is None else int(target),
                  int(token.split(":")[0]) if token else None, int(data.get("seq") or 0))


def read_event(data: Any) -> Click | MaskEdit | Action:
    """A canvas ``select`` event's data: a click, an applied edit or an action on the selected
    instance (ValueError when malformed)."""
    if isinstance(data, dict) and data.get("kind") == "mask":
        return read_edit(data)
    if isinstance(data, dict) and data.get("kind") == "action":
        return read_action(data)
    return read_click(data)


def edit_value(mask: np.ndarray, target: int | None = None) -> str:
    """What an API client sends to ``/save_mask`` or ``/add_mask``: the whole (H, W) bool ``mask``
    as an edit of ``target`` (None: a new instance)."""
    height, width = mask.shape
    box = (0, 0, width, height)
    return json.dumps({"target": target, "box": list(box), "runs": mask_runs(mask, box)}, separators=(",", ":"))


def build(elem_id: str) -> Any:
    """The canvas component (value: see ``value``)."""
    import gradio as gr
    return gr.HTML("", html_template=TEMPLATE, css_template=CSS, js_on_load=JS, elem_id=elem_id,
                   container=False)
