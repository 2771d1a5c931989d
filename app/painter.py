"""The mask painter: a brush / eraser canvas at the image's own resolution, built on ``gr.HTML``.

Why not ``gr.ImageEditor``: in Gradio 6.31 it draws a loaded layer that is smaller than its
canvas shifted by half the canvas (and exports it shifted once edited), and after it has been read
by an event it stops loading new values. The painter is small and exact instead:

* the server sends a JSON value ``{"token", "width", "height", "background", "mask"}`` where
  ``background`` and ``mask`` are URLs of PNG files (the mask opaque where set, transparent
  elsewhere); the browser draws the background and puts the mask on a paint canvas of exactly
  ``width`` x ``height`` pixels, so a stored mask and what is painted line up pixel for pixel;
* the brush paints, the eraser removes (both round, any size), Undo takes a stroke back;
* after every stroke the browser sets the value to the same JSON plus ``"paint"``: the paint
  canvas as a PNG data URL, which events read back with ``decode``.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from app.project import StudioError

PAINT_RGBA = (255, 59, 48, 255)

TEMPLATE = """
<div class="painter">
  <div class="painter-tools">
    <label><input type="radio" name="painter-tool" value="brush" checked> Brush</label>
    <label><input type="radio" name="painter-tool" value="eraser"> Eraser</label>
    <label>size <input class="painter-size" type="range" min="1" max="60" value="8"></label>
    <button type="button" class="painter-undo">Undo stroke</button>
    <button type="button" class="painter-clear">Clear</button>
    <span class="painter-status">no image loaded</span>
  </div>
  <div class="painter-stage">
    <canvas class="painter-bg"></canvas>
    <canvas class="painter-paint"></canvas>
  </div>
</div>
"""

CSS = """
.painter-tools { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
.painter-tools button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 2px 10px; }
.painter-stage { position: relative; width: 100%; max-width: 720px; }
.painter-stage canvas { width: 100%; display: block; image-rendering: pixelated; }
.painter-paint { position: absolute; left: 0; top: 0; opacity: 0.55; cursor: crosshair; touch-action: none; }
.painter-status { color: var(--body-text-color-subdued); font-size: 0.9em; }
"""

JS = """
const bg = element.querySelector('.painter-bg');
const paint = element.querySelector('.painter-paint');
const status = element.querySelector('.painter-status');
const sizeInput = element.querySelector('.painter-size');
const pctx = paint.getContext('2d');
let session = null, drawing = false, last = null, history = [];

function parse(text) { try { return JSON.parse(text || '{}'); } catch (e) { return {}; } }
function tool() { return element.querySelector('input[name=painter-tool]:checked').value; }
function publish() {
  const value = Object.assign({}, session, {paint: paint.toDataURL('image/png')});
  props.value = JSON.stringify(value);
}
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = url;
  });
}
async function load() {
  const v = parse(props.value);
  if (!v.background || (session && session.token === v.token)) return;
  session = {token: v.token, width: v.width, height: v.height, background: v.background, mask: v.mask};
  history = [];
  status.textContent = 'loading';
  bg.width = paint.width = v.width;
  bg.height = paint.height = v.height;
  const base = await loadImage(v.background);
  bg.getContext('2d').drawImage(base, 0, 0);
  pctx.clearRect(0, 0, v.width, v.height);
  if (v.mask) { pctx.drawImage(await loadImage(v.mask), 0, 0); }
  sizeInput.value = Math.max(2, Math.round(Math.min(v.width, v.height) / 40));
  status.textContent = 'ready ' + v.token;
  publish();
}
function at(e) {
  const r = paint.getBoundingClientRect();
  return {x: (e.clientX - r.left) * paint.width / r.width, y: (e.clientY - r.top) * paint.height / r.height};
}
function stroke(a, b) {
  pctx.globalCompositeOperation = tool() === 'eraser' ? 'destination-out' : 'source-over';
  pctx.strokeStyle = 'rgba(255, 59, 48, 1)';
  pctx.lineWidth = 2 * Number(sizeInput.value);
  pctx.lineCap = 'round';
  pctx.lineJoin = 'round';
  pctx.beginPath(); pctx.moveTo(a.x, a.y); pctx.lineTo(b.x + 0.01, b.y); pctx.stroke();
}
paint.addEventListener('pointerdown', (e) => {
  if (!session) return;
  drawing = true; paint.setPointerCapture(e.pointerId);
  history.push(pctx.getImageData(0, 0, paint.width, paint.height));
  if (history.length > 30) history.shift();
  last = at(e); stroke(last, last);
});
paint.addEventListener('pointermove', (e) => { if (!drawing) return; const p = at(e); stroke(last, p); last = p; });
function end() { if (!drawing) return; drawing = false; status.textContent = 'strokes: ' + history.length; publish(); }
paint.addEventListener('pointerup', end);
paint.addEventListener('pointercancel', end);
element.querySelector('.painter-undo').addEventListener('click', () => {
  if (!history.length) return;
  pctx.putImageData(history.pop(), 0, 0); status.textContent = 'strokes: ' + history.length; publish();
});
element.querySelector('.painter-clear').addEventListener('click', () => {
  if (!session) return;
  history.push(pctx.getImageData(0, 0, paint.width, paint.height));
  pctx.clearRect(0, 0, paint.width, paint.height); publish();
});
watch('value', load);
load();
"""


def file_url(path: str) -> str:
    """The URL (relative to the app) under which Gradio serves an allowed file."""
    return f"gradio_api/file={path}"


def value(token: int, background_path: str, mask_path: str | None, width: int, height: int) -> str:
    """The painter's value for a new editing session (``token`` must change every time)."""
    return json.dumps({"token": token, "width": width, "height": height,
                       "background": file_url(background_path),
                       "mask": file_url(mask_path) if mask_path else None})


def mask_rgba(mask: np.ndarray) -> np.ndarray:
    """(H,W) bool -> (H,W,4) uint8: the paint colour where the mask is, transparent elsewhere."""
    out = np.zeros((*mask.shape, 4), np.uint8)
    out[mask] = PAINT_RGBA
    return out


def decode(text: str | None, size: tuple[int, int]) -> np.ndarray:
    """The painted pixels of a painter value as an (H,W) bool mask (alpha >= 128: the brush's
    anti-aliased rim counts half). ``size`` is the image's (H, W)."""
    data = json.loads(text or "{}") if isinstance(text, str) else {}
    paint = data.get("paint")
    if not paint:
        raise StudioError("the painter holds no image: load the selected mask or start a new one")
    header, _, payload = paint.partition(",")
    if header != "data:image/png;base64":
        raise StudioError("the painter sent something other than a PNG")
    with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
        rgba = np.asarray(im.convert("RGBA"))
    if rgba.shape[:2] != tuple(size):
        raise StudioError(f"the painted mask is {rgba.shape[1]}x{rgba.shape[0]}, the image "
                          f"{size[1]}x{size[0]}: load the image into the painter again")
    return rgba[:, :, 3] >= 128


def encode_paint(mask: np.ndarray, base: dict[str, Any] | None = None) -> str:
    """A painter value whose paint is ``mask`` (what the browser sends; used by API clients)."""
    buffer = io.BytesIO()
    Image.fromarray(mask_rgba(mask), "RGBA").save(buffer, "png")
    data = dict(base or {})
    data["paint"] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return json.dumps(data)
