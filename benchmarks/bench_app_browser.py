"""Click-to-visible latency of the studio in a real browser (headless Debian Chromium, Playwright).

    .venv/bin/python benchmarks/bench_app_browser.py [--repeats 12] [--baseline DIR]

Two projects: the demo (128x128 shapes, the demo model's own predictions) and a generated one of
1280x960 images with 50 objects each (their masks stored as the current model's proposals, random
scores). A click is a real mouse click timed from its pointer press; the other interactions are started
inside the page (a synthetic pointer or key event: the browser's own input latency, the same for
any page, is not counted); each is timed with ``performance.now()`` until the page shows the
result and the next frame is drawn:

* hover: the canvas highlights the instance under the pointer;
* select: the canvas draws the selection; "select, server" until the instance details (server)
  follow;
* threshold: a press on the slider (input, change and release events at once) until the canvas
  draws what the new threshold shows; "threshold, server" until the instance table (server)
  follows; "threshold, dragged": the thumb moved (input events only, as while a person drags it;
  the release, which sends the server its event, comes later) until the canvas draws it;
* layer switch (demo only): a click on a head's thumbnail in Explain until that head's panel is
  the one shown large (all panels are in the page; before: the server-drawn PNG of the slider's head);
* accept (A key): the canvas draws the instance accepted (drawn at once, before the server answers);
  "accept, saved" until the canvas draws the image's new revision from the server;
* brush-stroke commit: a stroke drawn with the "new mask" tool, applied with Enter, until the
  canvas draws it as a new mask, pending (drawn at once, before the server answers; a canvas
  without ``data-pending``: the stored revision); "brush-stroke commit, server" until the canvas
  draws the revision that stores it (the browser encodes the stroke's box as runs, the server
  stores the mask and sends the revision's masks back);
* next image (N key), already predicted / not yet: the canvas draws the next image with its
  proposals (not yet predicted: "image" when the picture shows, "predicted" when the model's
  proposals are drawn); "next image (predicted), server" until the server's answer shows (the
  header names the image, the canvas's "opening" marker is gone). After each, the benchmark waits
  (up to 5 s) until the page has loaded the following image ahead, as while a person looks.

``--baseline DIR``: also run the same interactions against the code in DIR (e.g. a worktree of
the commit before the canvas, where the studio draws every picture on the server and the page
shows a PNG); "visible" there is the new PNG loaded. Both are measured in the same invocation
on the same projects; the shared 2-core machine makes bare times noisy, compare the ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage"]
LARGE = (960, 1280)        # (H, W) of the generated project's images
HUGE = (3000, 4000)        # (H, W) of the --huge project's (100 objects each)

# In-page timer (``__measure``): run ``act`` (or wait for the next real pointer press, when
# ``onInput``) and resolve with the ms from then until each predicate in ``done`` holds (each one's
# own time, taken on the next animation frame after it first held; checked on every DOM change and
# every 4 ms; -1: not within ``limit`` ms).
MEASURE_JS = """
() => { window.__measure = (act, done, limit, onInput) => new Promise((resolve) => {
  const checks = done.map((d) => new Function(d));
  const times = checks.map(() => null);
  let over = false, t0 = onInput ? null : performance.now();
  const finish = () => { over = true; obs.disconnect(); clearInterval(poll); resolve(times.map((t) => t ?? -1)); };
  const check = () => {
    if (over || t0 === null) return;
    checks.forEach((c, k) => {
      let ok = false;
      try { ok = times[k] === null && c(); } catch (e) { ok = false; }
      if (ok) { times[k] = -2; requestAnimationFrame(() => { times[k] = performance.now() - t0;
                                                              if (times.every((t) => t !== null && t >= 0)) finish(); }); }
    });
  };
  if (onInput) document.addEventListener('pointerdown', (e) => { t0 = e.timeStamp; }, {capture: true, once: true});
  const obs = new MutationObserver(check);
  obs.observe(document.body, {subtree: true, attributes: true, childList: true, characterData: true});
  const poll = setInterval(check, 4);   // input values change without a DOM mutation
  if (act) new Function(act)();
  check();
  setTimeout(() => { if (!over) finish(); }, limit);
}); }
"""

HELPERS_JS = """
() => {
  window.__view = (sel) => document.querySelector(sel + ' canvas') || document.querySelector(sel + ' img');
  // page point of image pixel (x, y) on the canvas (its data-view) or the old PNG (drawn `zoom` times)
  window.__pt = (sel, x, y, width) => {
    const el = __view(sel), r = el.getBoundingClientRect();
    if (el.tagName === 'CANVAS') {
      const [s, ox, oy] = el.dataset.view.split(',').map(Number);
      return [r.left + ox + (x + 0.5) * s, r.top + oy + (y + 0.5) * s];
    }
    const scale = Math.min(r.width / el.naturalWidth, r.height / el.naturalHeight);
    const left = r.left + (r.width - el.naturalWidth * scale) / 2, top = r.top + (r.height - el.naturalHeight * scale) / 2;
    const zoom = el.naturalWidth / width;
    return [left + (x + 0.5) * zoom * scale, top + (y + 0.5) * zoom * scale];
  };
  window.__key = (key) => document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
  window.__fresh = (sel, before) => { const el = __view(sel);
    return el && (el.tagName === 'CANVAS' ? el.dataset.token && el.dataset.token !== before
                                          : el.src !== before && el.complete && el.naturalWidth > 0); };
  window.__stamp = (sel) => { const el = __view(sel); return el ? (el.tagName === 'CANVAS' ? el.dataset.token : el.src) : ''; };
}
"""


# A stroke through image points ``pts`` on the canvas ``sel``: pointer down, moves and up on its stage.
STROKE_JS = """
([sel, pts, width]) => {
  const stage = __view(sel).parentElement;
  const at = (k) => { const [x, y] = __pt(sel, pts[k][0], pts[k][1], width); return {clientX: x, clientY: y}; };
  const fire = (type, k) => stage.dispatchEvent(new PointerEvent(type, {...at(k), button: 0, buttons: 1,
                                                                        pointerId: 1, bubbles: true}));
  fire('pointerdown', 0);
  for (let k = 1; k < pts.length; k++) fire('pointermove', k);
  fire('pointerup', pts.length - 1);
}
"""


# ------------------------------------------------------------------------------------ projects

def demo_project(folder: Path) -> Any:
    from app.config import StudioConfig
    from app.startup import open_project
    return open_project(StudioConfig(data_dir=folder, device="cpu"), log=lambda m: None)


def large_project(folder: Path, count: int, predicted: int, objects: int = 50,
                  size: tuple[int, int] = LARGE) -> Any:
    """Images of ``size`` (H, W) with ``objects`` shapes each; the first ``predicted`` get their
    ground truth stored as the current model's proposals (random scores)."""
    from test_app_support import crowded_project
    return crowded_project(folder, count, predicted, objects, size)


# ---------------------------------------------------------------------------------- the run

def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def serve(stack: contextlib.ExitStack, project: Any, tries: int = 3) -> str:
    """Launch the studio (Gradio's start-up check of localhost can time out on a loaded machine:
    try again)."""
    from test_app_support import served
    for attempt in range(tries):
        try:
            return stack.enter_context(served(project))
        except ValueError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def run_project(project: Any, repeats: int, layers: bool, first_id: int | None = None) -> dict[str, list[float]]:
    """Every interaction on ``project`` in one headless Chromium session; ms lists by name."""
    import numpy as np
    from playwright.sync_api import sync_playwright
    from app.inspect_view import visible_instances
    images = project.images()
    predicted = [e for e in images if not project.needs_prediction(e.id)]
    first = project.image(first_id) if first_id is not None else predicted[0]
    width = first.width
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    with contextlib.ExitStack() as stack:
        url = serve(stack, project)
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 900})
        pg.set_default_timeout(120_000)
        pg.goto(f"{url}?image={first.id}&t=0.30")
        pg.wait_for_function("() => document.querySelector('#status')?.innerText.includes('opened')")
        pg.evaluate(HELPERS_JS)
        pg.evaluate(MEASURE_JS)
        pg.wait_for_timeout(1000)

        def measure(act: str, *done: str, limit: int = 20_000) -> list[float]:
            return pg.evaluate("([a, d, l]) => __measure(a, d, l, false)", [act, list(done), limit])

        def measure_click(x: float, y: float, *done: str, limit: int = 20_000) -> list[float]:
            """A real mouse click at page point (x, y), timed from its pointer press."""
            pg.evaluate("([d, l]) => { window.__pending = __measure('', d, l, true); }", [list(done), limit])
            pg.mouse.click(x, y)
            return pg.evaluate("() => window.__pending")

        shown = visible_instances(project.instances(first.id), 0.3)
        points = []
        for inst in shown:
            ys, xs = np.nonzero(inst.mask)
            k = len(xs) // 2
            top = next(i for i in shown if i.mask[ys[k], xs[k]])
            if top.id == inst.id:
                points.append((inst.id, int(xs[k]), int(ys[k])))
        sel = "#inspect-image"
        pg.evaluate(f"document.querySelector('{sel} canvas, {sel} img').scrollIntoView({{block: 'start'}})")
        pg.wait_for_timeout(300)
        canvas = pg.locator(f"{sel} canvas").count() > 0
        for k in range(repeats):
            ann, x, y = points[k % len(points)]
            if canvas:
                t, = measure(f"const [cx, cy] = __pt('{sel}', {x}, {y}, {width}); __view('{sel}').parentElement"
                             f".dispatchEvent(new PointerEvent('pointermove', {{clientX: cx, clientY: cy, bubbles: true}}))",
                             f"return __view('{sel}').dataset.hover === '{ann}'")
                add("hover", t)
            pg.wait_for_function(f"() => {{ const e = __view('{sel}'); return e && (e.tagName === 'CANVAS' || "
                                 "(e.complete && e.naturalWidth > 0)); }")
            before = pg.evaluate(f"__stamp('{sel}')")
            shown_done = (f"return __view('{sel}').dataset.selected === '{ann}'" if canvas
                          else f"return __fresh('{sel}', {json.dumps(before)})")
            px, py = pg.evaluate("([s, x, y, w]) => __pt(s, x, y, w)", [sel, x, y, width])
            t_canvas, t_server = measure_click(
                px, py, shown_done, f"return document.querySelector('#instance-info').innerText.includes('#{ann} ')")
            add("select", t_canvas)
            add("select, server", t_server)
        def ids(threshold: float) -> str:
            return ",".join(str(i.id) for i in visible_instances(project.instances(first.id), threshold))

        drawn = ids(0.3)
        for k in range(repeats):
            t = (0.05, 0.9, 0.3)[k % 3]
            # dragged: the thumb moved (input events only; the server is told on release, below),
            # to a threshold that shows other instances than now and than the release's
            dragged = next((v for v in (0.5, 0.7, 0.2, 0.97, 0.1) if ids(v) not in (drawn, ids(t))), None)
            if canvas and dragged is not None:
                t_drag, = measure(f"const r = document.querySelector('#min-score input[type=range]'); r.value = '{dragged}';"
                                  "r.dispatchEvent(new Event('input', {bubbles: true}))",
                                  f"return __view('{sel}').dataset.shown === '{ids(dragged)}'")
                add("threshold, dragged", t_drag)
            drawn = ids(t)
            expected = visible_instances(project.instances(first.id), t)
            before = pg.evaluate(f"__stamp('{sel}')")
            shown_done = (f"return __view('{sel}').dataset.shown === '{','.join(str(i.id) for i in expected)}'"
                          if canvas else f"return __fresh('{sel}', {json.dumps(before)})")
            rows = len(expected) + 1
            t_canvas, t_server = measure(
                f"const r = document.querySelector('#min-score input[type=range]'); r.value = '{t}';"
                "r.dispatchEvent(new Event('input', {bubbles: true})); r.dispatchEvent(new Event('change', {bubbles: true}));"
                "r.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}))", shown_done,
                f"return document.querySelector('#instance-table [role=grid]').getAttribute('aria-rowcount') === '{rows}'")
            add("threshold", t_canvas)
            add("threshold, server", t_server)
        # accept (A key) and next image (N key) in the Correct view, where the old studio had them
        pg.click("#tab-correct-button")
        sel = "#correct-image"
        pg.wait_for_function(f"() => __view('{sel}') && __stamp('{sel}')")
        pg.wait_for_timeout(1000)
        # the threshold back at 0.3 (the loop above can end elsewhere): the proposals below are shown
        box = pg.locator("#min-score input[type=number]")
        box.fill("0.3")
        box.press("Tab")
        pg.wait_for_timeout(1500)
        proposals = [i for i in visible_instances(project.instances(first.id), 0.3) if i.state == "proposed"]
        for k in range(min(repeats, len(proposals))):
            ann = proposals[k].id
            pg.locator("#instance-picker input").fill(f"#{ann} ")
            pg.locator("#instance-picker input").press("ArrowDown")
            pg.locator("#instance-picker input").press("Enter")
            pg.wait_for_function(f"() => document.querySelector('#instance-picker input').value.startsWith('#{ann} ')")
            if canvas:   # the person sees the selection drawn before pressing A
                pg.wait_for_function(f"() => __view('{sel}').dataset.selected === '{ann}'")
            pg.wait_for_timeout(300)
            before = pg.evaluate(f"__stamp('{sel}')")
            saved = f"return __fresh('{sel}', {json.dumps(before)})"
            if canvas and pg.evaluate(f"__view('{sel}').dataset.states !== undefined"):
                drawn = f"return (__view('{sel}').dataset.states || '').split(',').includes('{ann}:accepted')"
                t, t_saved = measure("__key('a')", drawn, saved)
                add("accept", t)
                add("accept, saved", t_saved)
            else:
                t, = measure("__key('a')", saved)
                add("accept", t)
        if layers and points:
            pg.click("#tab-explain-button")
            heads = len(project.model.predictor.model.decoder.heads)
            panels = "#explain-layers .xlayers"
            pg.wait_for_function("() => document.querySelector('#explain-layers .xlayers-main img, #layer-view img')")
            if pg.locator(panels).count():     # every head's panel in the page: the browser switches
                pg.wait_for_function(f"() => [...document.querySelectorAll('{panels} .xlayers-main img')]"
                                     f".filter(i => i.complete).length === {heads}")
                for k in range(repeats):
                    target = (k + 1) % heads if k % heads == heads - 1 else k % heads
                    t, = measure(
                        f"document.querySelectorAll('{panels} .xlayers-strip button')[{target}].click()",
                        f"const r = document.querySelector('{panels}'); const i = r.querySelectorAll('.xlayers-main img')[{target}];"
                        f" return r.dataset.shown === '{target}' && !i.hidden && i.complete && i.offsetParent !== null")
                    add("layer switch", t)
            else:                              # the server-drawn head image (before)
                pg.wait_for_function("() => document.querySelector('#layer-view img')?.complete")
                for k in range(repeats):
                    before = pg.evaluate("document.querySelector('#layer-view img').src")
                    t, = measure(
                        f"const r = document.querySelector('#layer-slider input[type=range]'); r.value = '{k % heads}';"
                        "r.dispatchEvent(new Event('input', {bubbles: true})); r.dispatchEvent(new Event('change', {bubbles: true}));"
                        "r.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}))",
                        f"const i = document.querySelector('#layer-view img'); return i && i.src !== {json.dumps(before)} && i.complete")
                    if k % heads != heads - 1 or k:
                        add("layer switch", t)
            pg.click("#tab-correct-button")
            pg.wait_for_timeout(1000)
        if canvas:   # a brush stroke drawn as a new mask, applied with Enter, until its revision is drawn
            # (after Explain: the new-mask tool drops the selection Explain's panels need)
            pg.locator("#tool label", has_text="new mask").click()
            pg.wait_for_function("() => document.querySelector('#tool input[value=new]').checked")
            height = first.height
            for k in range(repeats):
                y = height * (0.1 + 0.8 * k / max(1, repeats))
                pg.evaluate(STROKE_JS, [sel, [[width * 0.1, y], [width * 0.2, y + 3], [width * 0.3, y]], width])
                pg.wait_for_function(f"() => __view('{sel}').dataset.unsaved === '1'")
                before = pg.evaluate(f"__stamp('{sel}')")
                stored = (f"__fresh('{sel}', {json.dumps(before)}) && __view('{sel}').dataset.unsaved === '0' && "
                          f"!__view('{sel}').dataset.pending")
                t, t_stored = measure("__key('Enter')", f"return __view('{sel}').dataset.pending === 'new' || ({stored})",
                                      f"return {stored}")
                add("brush-stroke commit", t)
                add("brush-stroke commit, server", t_stored)
            pg.locator("#tool label", has_text="select").click()
        # next image: through the predicted ones, then the ones not predicted yet
        order = [e.id for e in images]
        current = first.id
        for k in range(len(order) - 1 - order.index(first.id)):
            nxt = order[order.index(current) + 1]
            was = not project.needs_prediction(nxt)
            before = pg.evaluate(f"__stamp('{sel}')")
            status = "!document.querySelector('#status').innerText.includes('predicting')"
            if canvas:
                image = f"return (__view('{sel}').dataset.token || '').startsWith('{nxt}:')"
                done = f"return (__view('{sel}').dataset.token || '').startsWith('{nxt}:') && {status}"
            else:
                image = f"return __fresh('{sel}', {json.dumps(before)})"
                done = (f"return __fresh('{sel}', {json.dumps(before)}) && {status} && "
                        f"document.querySelector('#review-state').innerText.includes('{project.image(nxt).file_name}')")
            name = project.image(nxt).file_name
            confirmed = (f"return document.querySelector('#review-state').innerText.includes('{name}') && "
                         f"!(__view('{sel}').dataset.opening) && {status}")
            t_image, t_done, t_confirmed = measure("__key('n')", image, done, confirmed, limit=120_000)
            if was:
                add("next image (predicted)", t_done)
                add("next image (predicted), server", t_confirmed)
            else:
                add("next image (not yet): image", t_image)
                add("next image (not yet): predicted", t_done)
            current = nxt
            # a person looks at the image: the server's answer and the files loaded ahead arrive
            with contextlib.suppress(Exception):
                pg.wait_for_function(f"() => (__view('{sel}').dataset.ahead || '').includes('next:')", timeout=5000)
            pg.wait_for_timeout(300)
            if k + 1 >= repeats + 3:
                break
        browser.close()
    return out


def measure_all(repeats: int, demo_next: int, large_count: int, huge: bool = False) -> dict[str, dict[str, list[float]]]:
    sys.path.insert(0, str(ROOT / "tests"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_project(Path(tmp) / "demo")
        ids = [e.id for e in demo.images()]
        for image_id in ids[:demo_next]:
            demo.predict(image_id)
        from app.inspect_view import visible_instances
        busiest = max(ids[:3], key=lambda i: len(visible_instances(demo.instances(i), 0.3)))
        results["demo 128x128"] = run_project(demo, repeats, layers=True, first_id=busiest)
        large = large_project(Path(tmp) / "large", large_count, large_count - 3)
        results["1280x960, 50 objects"] = run_project(large, repeats, layers=False)
        if huge:
            big = large_project(Path(tmp) / "huge", 5, 3, objects=100, size=HUGE)
            results["4000x3000, 100 objects"] = run_project(big, min(repeats, 4), layers=False)
    return results


def table(new: dict[str, dict[str, list[float]]], old: dict[str, dict[str, list[float]]] | None) -> str:
    lines = ["| project | interaction | this checkout p50 / p90 ms | " + ("baseline p50 / p90 ms | baseline / this, p50 |"
                                                              if old else ""),
             "|---|---|---|" + ("---|---|" if old else "")]
    for project, rows in new.items():
        for name, values in rows.items():
            good = [v for v in values if v >= 0]
            cell = f"{statistics.median(good):.0f} / {pct(good, 0.9):.0f}" if good else "timed out"
            if good and len(good) < len(values):
                cell += f" ({len(values) - len(good)} of {len(values)} timed out)"
            line = f"| {project} | {name} | {cell} |"
            if old:
                before = [v for v in (old.get(project) or {}).get(name, []) if v >= 0]
                if before and good:
                    line += f" {statistics.median(before):.0f} / {pct(before, 0.9):.0f} | " \
                            f"{statistics.median(before) / max(statistics.median(good), 0.1):.1f}x |"
                else:
                    line += " — | — |"
            lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--baseline", type=Path, help="a checkout of the server-drawn studio to compare with")
    parser.add_argument("--json", type=Path, help="write this run's figures here (used for --baseline)")
    parser.add_argument("--baseline-json", type=Path, help="the figures of an earlier --json run to compare with")
    parser.add_argument("--huge", action="store_true", help="also a project of 4000x3000 images, 100 objects each")
    args = parser.parse_args()
    demo_next, large_count = args.repeats + 4, args.repeats + 4
    print("headless Chromium on a shared 2-core machine: bare times are noisy, compare the ratios", flush=True)
    old = json.loads(args.baseline_json.read_text()) if args.baseline_json is not None else None
    if args.baseline is not None:
        out = Path(tempfile.mkdtemp()) / "baseline.json"
        env = dict(os.environ, PYTHONPATH=str(args.baseline))
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--repeats", str(args.repeats),
                        "--json", str(out), *(["--huge"] if args.huge else [])], cwd=args.baseline, env=env,
                       check=True)
        old = json.loads(out.read_text())
    new = measure_all(args.repeats, demo_next, large_count, args.huge)
    if args.json is not None:
        args.json.write_text(json.dumps(new))
        return 0
    print(table(new, old))
    return 0


if __name__ == "__main__":
    sys.exit(main())
