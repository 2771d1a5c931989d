"""Screenshots of the Inspect, Explain and Correct views for the README, taken in headless
Chromium from a studio serving the demo project (the demo model on its held-out images): the
whole 1440x900 window, as a person sees it without scrolling (Explain: the whole view, which is
taller).

    .venv/bin/python tests/browser/make_screenshots.py [--out docs/screenshots] [--weights FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from app.config import StudioConfig  # noqa: E402
from app.demo import DEMO_WEIGHTS  # noqa: E402
from app.inspect_view import visible_instances  # noqa: E402
from app.startup import open_project  # noqa: E402
from test_app_browser import ARGS, CHROMIUM, inner_pixel, click_pixel, expect_canvas, set_number  # noqa: E402
from test_app_support import served  # noqa: E402

VIEWPORT = {"width": 1440, "height": 900}


def busiest_image(project) -> tuple[int, float]:
    """(image, confidence threshold): a demo image showing 2 to 5 instances, at the highest
    threshold that finds one (predicting the first images of the project)."""
    entries = project.images()[:24]
    for entry in entries:
        project.predict(entry.id)
    for threshold in (0.5, 0.3, 0.15):
        counts = {e.id: len(visible_instances(project.instances(e.id), threshold)) for e in entries}
        fitting = [i for i, n in counts.items() if 2 <= n <= 5]
        if fitting:
            return max(fitting, key=counts.get), threshold
    return entries[0].id, 0.05


def open_image(pg, project, image_id: int) -> None:
    """Press N until the page shows ``image_id``."""
    name = project.image(image_id).file_name
    for _ in range(len(project.images())):
        if name in pg.inner_text("#review-state"):
            return
        pg.locator("#project-info").click()
        pg.keyboard.press("n")
        pg.wait_for_timeout(700)
    raise RuntimeError(f"could not open {name}")


def shoot(pg, path: Path, selector: str | None = None) -> None:
    """The window as it is at the top of the page, or the whole element ``selector``."""
    pg.evaluate("window.scrollTo(0, 0)")
    if selector is None:
        pg.screenshot(path=str(path))
    else:
        pg.locator(selector).screenshot(path=str(path))
    print("wrote", path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        project = open_project(StudioConfig(weights=args.weights, data_dir=Path(tmp), device="cpu"),
                               log=print)
        image_id, min_score = busiest_image(project)
        shown = visible_instances(project.instances(image_id), min_score)
        with served(project) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pg = browser.new_page(viewport=VIEWPORT)
            pg.set_default_timeout(60_000)
            pg.goto(url)
            expect(pg.locator("#review-state")).to_contain_text("rev", timeout=120_000)
            open_image(pg, project, image_id)
            set_number(pg, "min-score", min_score)
            pg.wait_for_timeout(1500)
            x, y = inner_pixel(np.stack([i.mask for i in shown]), 0) or (0, 0)
            click_pixel(pg, "inspect-image", x, y)
            expect(pg.locator("#instance-info")).to_contain_text(f"#{shown[0].id} ")
            pg.wait_for_timeout(800)
            shoot(pg, args.out / "inspect.png")
            pg.click("#tab-explain-button")
            expect(pg.locator("#explain-layers .xlayers-main img:not([hidden])")).to_be_visible()
            pg.wait_for_timeout(1500)
            shoot(pg, args.out / "explain.png", "#views")   # taller than the window
            pg.click("#tab-correct-button")
            expect_canvas(pg, "correct-image")
            pg.locator("#tool label", has_text="brush").click()   # a stroke on the selected mask, not applied
            stage = pg.locator("#correct-image .anncanvas-stage").bounding_box()
            x0, y0 = stage["x"] + stage["width"] * 0.3, stage["y"] + stage["height"] * 0.5
            pg.mouse.move(x0, y0)
            pg.mouse.down()
            pg.mouse.move(x0 + stage["width"] * 0.2, y0 + stage["height"] * 0.1, steps=10)
            pg.mouse.up()
            pg.wait_for_timeout(1000)
            shoot(pg, args.out / "correct.png")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
