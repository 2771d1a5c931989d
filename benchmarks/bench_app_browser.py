"""The latency a person sees in the studio: real input to the frame that shows the change
(headless Debian Chromium, Playwright).

    .venv/bin/python benchmarks/bench_app_browser.py [--repeats 6] [--trace DIR]

Every interaction is real input: Playwright's ``page.mouse`` and ``page.keyboard`` send CDP
``Input.dispatchMouseEvent`` / ``Input.dispatchKeyEvent``, which Chromium handles as it handles a
person's mouse and keys (hit testing, focus, default actions, the page's own listeners). The clock
starts at the input event's own ``event.timeStamp`` (the browser's time of the input, recorded by
a capture listener on ``window``) and stops at the frame that shows the change: the later of the
first ``requestAnimationFrame`` callback after the page shows it (a mutation observer and a 4 ms
poll look for the change; the frame's callbacks run just before it is painted) and the end of the
input event's Event Timing entry (``PerformanceEventTiming``: startTime is the event's timeStamp,
startTime + duration the next frame presented after its handlers ran; reported from 16 ms up,
rounded to 8 ms), which also counts page work that holds back the frame after its callbacks. Between interactions the
benchmark waits until the page has sent every press and shown every answer.

Two projects: the demo (128x128 shapes, the demo model's own predictions) and a generated one of
1280x960 images with 50 objects each (their masks stored as the current model's proposals, random
scores). Interactions (the event that starts the clock in brackets):

* select: a click on an instance until the canvas draws it selected (pointerup: a click selects on
  release);
* threshold drag: the slider's thumb dragged until the canvas draws what the new threshold shows
  (the pointermove);
* layer switch (demo, Explain): a click on a decoder head's thumbnail until that head's panel is
  the one shown large (pointerup);
* accept: the A key until the canvas draws the selected proposal accepted (keydown); "accept,
  saved": until it draws the revision the server stored;
* brush commit: a stroke drawn with the mouse (the "new mask" tool), then Enter, until the canvas
  draws it as a new mask (keydown);
* polygon close: four corners clicked, then Enter, until the canvas draws the polygon as a new
  mask (keydown);
* next image: the N key to an image already predicted, until the canvas draws it (keydown); after
  each the benchmark waits until the following image is loaded ahead, as while a person looks;
  "next image, server": until the header names it.

Printed: p50 / p90 per interaction and project, the number of timings, and the machine's load
average (1 minute) before and after each project. ``--trace DIR`` also writes a Chromium
performance trace of each project's run (open it in chrome://tracing or Perfetto) and prints, for
each key press, how long its own task on the page's main thread took and the long tasks (over
30 ms) that followed it within 400 ms: page work that can hold back the frame.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage"]
LARGE = (960, 1280)        # (H, W) of the generated project's images
GOALS = {"select": 50, "threshold drag": 50, "layer switch": 50, "accept": 100, "brush commit": 100,
         "polygon close": 100, "next image": 150}   # p50 goals, ms

# ``__arm(types, checks, limit)``: from now on the timeStamp of the last input event of ``types``
# (capture listener on window) is the start; each check (a function body returning true once the
# page shows the change) gets the time from the start to the first animation frame after it held.
# ``__timed`` resolves with those times (-1: not within ``limit`` ms).
PROBE_JS = """
() => {
  window.__arm = (types, checks, limit) => {
    const fns = checks.map((c) => new Function(c)), times = fns.map(() => null);
    let t0 = null, over = false, resolve, painted = null;
    window.__timed = new Promise((r) => { resolve = r; });
    const start = (e) => { if (times.every((t) => t === null)) t0 = e.timeStamp; };
    // the Event Timing entry of the input event (its startTime is the event's timeStamp): the
    // time to the next frame presented after its handlers ran (reported from 16 ms up)
    const timing = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (t0 !== null && Math.abs(e.startTime - t0) < 0.5)
        painted = Math.max(painted ?? 0, e.duration);
    });
    timing.observe({type: 'event', durationThreshold: 16});
    const done = () => { obs.disconnect(); clearInterval(poll); timing.disconnect();
      for (const t of types) window.removeEventListener(t, start, true);
      resolve([times.map((t) => t ?? -1), painted ?? -1]); };
    const finish = (wait) => { if (over) return; over = true; setTimeout(done, wait); };
    const check = () => {
      if (over || t0 === null) return;
      fns.forEach((f, k) => {
        let ok = false;
        try { ok = times[k] === null && f(); } catch (e) { ok = false; }
        if (ok) { times[k] = -2; requestAnimationFrame(() => { times[k] = performance.now() - t0;
          if (times.every((t) => t !== null && t >= 0)) finish(300); }); }   // 300 ms: the Event Timing entry comes later
      });
    };
    for (const t of types) window.addEventListener(t, start, true);
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, attributes: true, childList: true, characterData: true});
    const poll = setInterval(check, 4);
    setTimeout(() => finish(0), limit);
  };
  window.__cv = (sel) => document.querySelector(sel + ' canvas');
}
"""
# the page has sent every press and shown every answer (app/event_order.py's queue, app/canvas.py's outbox)
SETTLED = ("() => (!window.__studioOrder || window.__studioOrder.open.length <= 1) && "
           "!(window.__studioOutbox && window.__studioOutbox.length)")


def demo_project(folder: Path) -> Any:
    from app.config import StudioConfig
    from app.startup import open_project
    return open_project(StudioConfig(data_dir=folder, device="cpu"), log=lambda m: None)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Page:
    """One studio page in headless Chromium, with the probe and real input."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        pg.evaluate(PROBE_JS)

    def timed(self, types: list[str], act: Callable[[], None], *checks: str, limit: int = 20_000) -> list[float]:
        """Arm the probe, do ``act`` (real input), return the ms to each check's frame (-1: not
        within ``limit``). The first is the later of that frame and the input event's own Event
        Timing (its next frame presented: the change drawn in the input's handlers shows there)."""
        self.pg.evaluate("([t, c, l]) => __arm(t, c, l)", [types, list(checks), limit])
        act()
        times, painted = self.pg.evaluate("() => window.__timed")
        if times[0] >= 0:
            times[0] = max(times[0], painted)
        return times

    def settle(self) -> None:
        for _ in range(2):
            self.pg.wait_for_function(SETTLED, timeout=60_000)
            self.pg.wait_for_timeout(250)

    def view(self, sel: str) -> tuple[float, float, float, float, float]:
        """(scale, offset x, offset y, canvas left, canvas top) of the canvas in ``sel``, once still."""
        before = None
        for _ in range(20):
            now = self.pg.evaluate(f"""() => {{ const c = __cv('{sel}'), r = c.getBoundingClientRect();
                return [...c.dataset.view.split(',').map(Number), r.left, r.top]; }}""")
            if now == before:
                break
            before = now
            self.pg.wait_for_timeout(150)
        return tuple(now)

    def point(self, sel: str, x: float, y: float) -> tuple[float, float]:
        s, ox, oy, left, top = self.view(sel)
        return left + ox + (x + 0.5) * s, top + oy + (y + 0.5) * s


def tops(project: Any, image_id: int, min_score: float) -> list[tuple[int, int, int, str]]:
    """(id, x, y, state) of shown instances with a pixel where each is on top, top first."""
    import numpy as np
    from app.inspect_view import visible_instances
    shown = visible_instances(project.instances(image_id), min_score)
    out = []
    for inst in shown:
        ys, xs = np.nonzero(inst.mask)
        for k in (len(xs) // 2, len(xs) // 3, 2 * len(xs) // 3):
            top = next(i for i in shown if i.mask[ys[k], xs[k]])
            if top.id == inst.id:
                out.append((inst.id, int(xs[k]), int(ys[k]), inst.state))
                break
    return out


def run_project(project: Any, repeats: int, layers: bool, trace: Path | None) -> dict[str, list[float]]:
    """Every interaction on ``project`` in one headless Chromium page; ms lists by name."""
    import numpy as np
    from playwright.sync_api import sync_playwright
    from app.inspect_view import visible_instances
    from test_app_support import served
    every = project.images()
    # the first image: of the first two, the one with the most distinct scores (a threshold drag
    # changes what it shows); N then goes through the images after it, predicted already
    spread = lambda e: len({i.score for i in visible_instances(project.instances(e.id), 0.05)})  # noqa: E731
    start = max(range(2), key=lambda k: (spread(every[k]), -k))
    images = [e for e in every[start:] if not project.needs_prediction(e.id)]
    first = images[0]
    out: dict[str, list[float]] = {}

    def add(key: str, values: list[float]) -> None:
        out.setdefault(key, []).append(values[0])
        if len(values) > 1:   # the server's answer: the stored revision, the header
            out.setdefault(f"{key}, {'server' if key == 'next image' else 'saved'}", []).append(values[1])

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(served(project))
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 900})
        pg.set_default_timeout(60_000)
        if trace is not None:
            browser.start_tracing(page=pg, path=str(trace), screenshots=False)
        pg.goto(f"{url}?image={first.id}&t=0.30")
        pg.wait_for_function("() => document.querySelector('#status')?.innerText.includes('opened')")
        page = Page(pg)
        page.settle()
        pg.wait_for_timeout(500)
        sel = "#inspect-image"
        points = tops(project, first.id, 0.3)
        covered = np.any([i.mask for i in visible_instances(project.instances(first.id), 0.05)], axis=0)
        empty = tuple(int(v) for v in np.argwhere(~covered)[0][::-1])   # (x, y) no instance covers
        # select: a click on an instance (never the same place twice running: that cycles below)
        for k in range(repeats):
            ann, x, y, _ = points[k % len(points)]
            at = page.point(sel, x, y)
            before = pg.evaluate(f"__cv('{sel}').dataset.selected")
            if before == str(ann):       # selected already (one instance to click): first select nothing
                pg.mouse.click(*page.point(sel, *empty))
                page.settle()
            add("select", page.timed(["pointerup"], lambda: pg.mouse.click(*at),
                                     f"return __cv('{sel}').dataset.selected === '{ann}'"))
            page.settle()
        # threshold: the slider's thumb dragged (the server hears of it on release)
        track = pg.locator("#min-score input[type=range]")
        box = track.bounding_box()
        lo, hi = float(track.get_attribute("min")), float(track.get_attribute("max"))
        x_of = lambda v: box["x"] + 8 + (v - lo) / (hi - lo) * (box["width"] - 16)  # noqa: E731 - thumb centre
        shown_at = lambda v: [i.id for i in visible_instances(project.instances(first.id), v)]  # noqa: E731
        other = next((v for v in (0.75, 0.5, 0.9, 0.97, 0.15, 0.6) if shown_at(v) != shown_at(0.3)), None)
        for k in range(repeats if other is not None else 0):   # (an image whose every score is alike: none)
            start, end = (0.3, other) if k % 2 == 0 else (other, 0.3)
            cy = box["y"] + box["height"] / 2
            pg.mouse.move(x_of(start), cy)
            pg.mouse.down()
            pg.wait_for_timeout(200)
            before = pg.evaluate(f"__cv('{sel}').dataset.shown")
            add("threshold drag", page.timed(["pointermove"], lambda: pg.mouse.move(x_of(end), cy),
                                             f"return __cv('{sel}').dataset.shown !== {before!r}"))
            pg.mouse.up()
            page.settle()
        set_threshold(pg, 0.3)
        page.settle()
        if layers:
            layer_switch(page, project, first.id, points, repeats, add)
        pg.click("#tab-correct-button")
        sel = "#correct-image"
        pg.wait_for_function(f"() => __cv('{sel}') && __cv('{sel}').offsetParent && __cv('{sel}').dataset.token")
        page.settle()
        proposals = [q for q in tops(project, first.id, 0.3) if q[3] == "proposed"]
        for k in range(min(repeats, len(proposals))):
            ann, x, y, _ = proposals[k]
            pg.mouse.click(*page.point(sel, x, y))
            pg.wait_for_function(f"() => __cv('{sel}').dataset.selected === '{ann}'")
            page.settle()
            token = pg.evaluate(f"__cv('{sel}').dataset.token")
            add("accept", page.timed(["keydown"], lambda: pg.keyboard.press("a"),
                                     f"return __cv('{sel}').dataset.states.split(',').includes('{ann}:accepted')",
                                     f"return __cv('{sel}').dataset.token !== '{token}'"))
            page.settle()
        draw_new_masks(page, sel, first, repeats, add)
        next_images(page, sel, project, images, repeats, add)
        if trace is not None:
            browser.stop_tracing()
        browser.close()
    return out


def set_threshold(pg: Any, value: float) -> None:
    box = pg.locator("#min-score input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def layer_switch(page: Page, project: Any, image_id: int, points: list, repeats: int, add: Callable) -> None:
    """Explain: the selected instance's decoder heads, a click on one's thumbnail after another."""
    pg = page.pg
    ann, x, y, _ = next(q for q in points if project.instances(image_id)
                        and next(i for i in project.instances(image_id) if i.id == q[0]).query is not None)
    pg.mouse.click(*page.point("#inspect-image", x, y))
    page.settle()
    pg.click("#tab-explain-button")
    panels = "#explain-layers .xlayers"
    heads = len(project.model.predictor.model.decoder.heads)
    pg.wait_for_function(f"() => [...document.querySelectorAll('{panels} .xlayers-main img')]"
                         f".filter(i => i.complete).length === {heads}")
    page.settle()
    for k in range(repeats):
        target = k % heads if k % heads != heads - 1 else 0
        shown = pg.evaluate(f"document.querySelector('{panels}').dataset.shown")
        if str(target) == shown:
            target = (target + 1) % heads
        button = pg.locator(f"{panels} .xlayers-strip button").nth(target)
        button.scroll_into_view_if_needed()
        b = button.bounding_box()
        add("layer switch", page.timed(
            ["pointerup"], lambda: pg.mouse.click(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2),
            f"const r = document.querySelector('{panels}'); const i = r.querySelectorAll('.xlayers-main img')[{target}];"
            f" return r.dataset.shown === '{target}' && !i.hidden && i.complete"))
    pg.click("#tab-inspect-button")
    page.settle()


def draw_new_masks(page: Page, sel: str, first: Any, repeats: int, add: Callable) -> None:
    """A stroke with the "new mask" tool and a polygon, each closed with Enter, ``repeats`` times."""
    pg = page.pg
    w, h = first.width, first.height
    pg.locator("#tool label", has_text="new mask").click()
    pg.wait_for_function("() => document.querySelector('#tool input[value=new]').checked")
    page.settle()
    for k in range(repeats):
        y = h * (0.1 + 0.8 * k / max(1, repeats))
        pts = [page.point(sel, w * f, y + dy) for f, dy in ((0.1, 0), (0.2, 3), (0.3, 0))]
        pg.mouse.move(*pts[0])
        pg.mouse.down()
        for q in pts[1:]:
            pg.mouse.move(*q, steps=4)
        pg.mouse.up()
        pg.wait_for_function(f"() => __cv('{sel}').dataset.unsaved === '1'")
        token = pg.evaluate(f"__cv('{sel}').dataset.token")
        add("brush commit", page.timed(["keydown"], lambda: pg.keyboard.press("Enter"),
                                       f"const c = __cv('{sel}'); return c.dataset.pending === 'new' || "
                                       f"(c.dataset.token !== '{token}' && c.dataset.unsaved === '0')"))
        page.settle()
    pg.locator("#tool label", has_text="polygon").click()
    pg.wait_for_function("() => document.querySelector('#tool input[value=polygon]').checked")
    page.settle()
    for k in range(repeats):
        y = h * (0.1 + 0.8 * k / max(1, repeats))
        x0 = w * 0.55
        for fx, fy in ((0, 0), (0.1, 0), (0.1, 0.06), (0, 0.06)):
            pg.mouse.click(*page.point(sel, x0 + w * fx, y + h * fy))
            pg.wait_for_timeout(120)
        pg.wait_for_function(f"() => __cv('{sel}').dataset.corners === '4'")
        token = pg.evaluate(f"__cv('{sel}').dataset.token")
        add("polygon close", page.timed(["keydown"], lambda: pg.keyboard.press("Enter"),
                                        f"const c = __cv('{sel}'); return c.dataset.corners === '0' && "
                                        f"(c.dataset.pending === 'new' || c.dataset.token !== '{token}')"))
        page.settle()
    pg.locator("#tool label", has_text="select").click()
    page.settle()


def next_images(page: Page, sel: str, project: Any, images: list, repeats: int, add: Callable) -> None:
    """N to the next (predicted) image, after the page has loaded it ahead."""
    pg = page.pg
    for k in range(min(repeats, len(images) - 1)):
        nxt = images[k + 1]
        with contextlib.suppress(Exception):
            pg.wait_for_function(f"() => (__cv('{sel}').dataset.ahead || '').includes('next:{nxt.id}:')",
                                 timeout=10_000)
        pg.locator(f"{sel} .anncanvas-info").click()    # the focus on the page, off any input
        add("next image", page.timed(
            ["keydown"], lambda: pg.keyboard.press("n"),
            f"return (__cv('{sel}').dataset.token || '').startsWith('{nxt.id}:')",
            f"return document.querySelector('#review-state').innerText.includes('{nxt.file_name}')"))
        page.settle()


def measure_all(repeats: int, trace: Path | None) -> dict[str, dict[str, list[float]]]:
    from test_app_support import crowded_project
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        projects = {}
        demo = demo_project(Path(tmp) / "demo")
        for entry in demo.images()[:repeats + 2]:
            demo.predict(entry.id)
        projects["demo 128x128"] = (demo, True)
        large = crowded_project(Path(tmp) / "large", repeats + 2, repeats + 2, 50, LARGE)
        projects["1280x960, 50 objects"] = (large, False)
        for name, (project, layers) in projects.items():
            before = os.getloadavg()[0]
            path = None if trace is None else trace / f"{name.split()[0]}.json"
            results[name] = run_project(project, repeats, layers, path)
            if path is not None:
                print(f"{name}, {path}:", *trace_blocks(path), sep="\n  ", flush=True)
            print(f"{name}: load average {before:.2f} before, {os.getloadavg()[0]:.2f} after "
                  f"({os.cpu_count()} CPUs)", flush=True)
    return results


def trace_blocks(path: Path, window_ms: float = 400, long_ms: float = 30) -> list[str]:
    """From a Chromium trace: for each keydown on the page's main thread, its own task's ms and the
    main-thread tasks over ``long_ms`` that start within ``window_ms`` after it (offset, ms)."""
    events = json.loads(path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    main = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
            and e["args"].get("name") == "CrRendererMain"}
    on_main = [e for e in events if e.get("ph") == "X" and (e["pid"], e["tid"]) in main]
    tasks = [e for e in on_main if e["name"] == "RunTask"]
    keys = sorted((e for e in on_main if e["name"] == "EventDispatch"
                   and e.get("args", {}).get("data", {}).get("type") == "keydown"), key=lambda e: e["ts"])
    lines = []
    for key in keys:
        t0 = key["ts"]
        own = next((t["dur"] for t in tasks if t["ts"] <= t0 <= t["ts"] + t["dur"]), key["dur"])
        later = [f"+{(t['ts'] - t0) / 1000:.0f} ms: {t['dur'] / 1000:.0f} ms" for t in tasks
                 if t0 < t["ts"] <= t0 + window_ms * 1000 and t["dur"] > long_ms * 1000]
        lines.append(f"keydown: its task {own / 1000:.0f} ms; tasks over {long_ms:.0f} ms in the next "
                     f"{window_ms:.0f} ms: {', '.join(later) or 'none'}")
    return lines


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| project | interaction | p50 / p90 ms | n | goal (p50) |", "|---|---|---|---|---|"]
    for project, rows in results.items():
        for name, values in rows.items():
            good = [v for v in values if v >= 0]
            cell = f"{statistics.median(good):.0f} / {pct(good, 0.9):.0f}" if good else "timed out"
            if good and len(good) < len(values):
                cell += f" ({len(values) - len(good)} timed out)"
            goal = GOALS.get(name)
            mark = "" if goal is None else f"<= {goal}" + (" ✓" if good and statistics.median(good) <= goal else " ✗")
            lines.append(f"| {project} | {name} | {cell} | {len(values)} | {mark} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6, help="timings per interaction and project")
    parser.add_argument("--trace", type=Path, help="write a Chromium performance trace per project to this folder")
    args = parser.parse_args()
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
    print(f"headless Chromium, real input (CDP); load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    print(table(measure_all(args.repeats, args.trace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
