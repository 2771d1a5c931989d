"""End-to-end: headless Chromium (Debian ``chromium``) driven by Playwright clicks through the
Inspect, Explain and Correct views of a launched studio, checks what the page shows and what the
store holds, and saves screenshots under ``test-artifacts/``."""
from __future__ import annotations

import shutil
import re
from pathlib import Path

import numpy as np
import pytest

from annotations import NotFoundError
from fastinst import visualize
from app.inspect_view import visible_instances
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT = 30_000  # ms; the CPU is shared
expect.set_options(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url) of a served project whose first image is already predicted."""
    project = make_project(tmp_path_factory.mktemp("browser"), num_images=2, size=(240, 320))
    project.predict(project.images()[0].id)
    with served(project) as url:
        yield project, url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail("Chromium is missing: install it with `bash scripts/setup.sh --dev` (Debian chromium)")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, studio):
    """A fresh session on the studio, loaded and showing the first image."""
    _, url = studio
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    pg.goto(url)
    try:
        expect(pg.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
    except AssertionError as e:
        shot(pg, "failed-load")
        raise AssertionError(f"page did not load; status: {pg.inner_text('#status')!r}") from e
    expect_canvas(pg, "inspect-image")
    yield pg
    context.close()


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_number(pg, elem_id: str, value: float) -> None:
    """Type into a slider's number box and leave it (Gradio then fires the release event)."""
    box = pg.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def expect_canvas(pg, elem_id: str):
    """Wait until the annotation canvas ``elem_id`` has drawn an image; returns its <canvas>."""
    cv = pg.locator(f"#{elem_id} canvas")
    expect(cv).to_have_attribute("data-token", re.compile(r"^\d+:\d+$"))
    return cv


def canvas_point(pg, elem_id: str, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y)'s centre where the canvas ``elem_id`` draws it now
    (its ``data-view``: screen = image * scale + offset)."""
    cv = expect_canvas(pg, elem_id)
    cv.scroll_into_view_if_needed()
    s, ox, oy = (float(v) for v in cv.get_attribute("data-view").split(","))
    box = cv.bounding_box()
    return box["x"] + ox + (x + 0.5) * s, box["y"] + oy + (y + 0.5) * s


def click_pixel(pg, elem_id: str, x: int, y: int) -> None:
    """Click image pixel (x, y) on the canvas ``elem_id``, wherever it is drawn (zoomed, panned)."""
    pg.mouse.click(*canvas_point(pg, elem_id, x, y))


def inner_pixel(masks: np.ndarray, index: int) -> tuple[int, int] | None:
    """A pixel where instance ``index`` is on top, away from its edges (x, y); None when another
    instance covers it (a model may predict the same shape twice, under two classes)."""
    import cv2
    own = (visualize.instance_id_map(masks) == index).astype(np.uint8)
    dist = cv2.distanceTransform(own, cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (int(x), int(y)) if dist[y, x] >= 2 else None


def expect_rows(pg, n: int) -> None:
    """The instance table holds ``n`` rows (the grid counts its header row too; rows beyond the
    viewport are virtualised, so count them by the grid's aria-rowcount)."""
    expect(pg.locator("#instance-table [role=grid]")).to_have_attribute("aria-rowcount", str(n + 1))


def shown_now(project, image_id: int, min_score: float = 0.05) -> list:
    return visible_instances(project.instances(image_id), min_score)


def select_by_click(pg, project, image_id: int, elem_id: str, index: int = 0) -> int:
    """Click the first clickable shown instance from the ``index``-th on; returns its id."""
    shown = shown_now(project, image_id)
    masks = np.stack([i.mask for i in shown])
    k, point = next((k, p) for k in range(index, len(shown)) if (p := inner_pixel(masks, k)) is not None)
    click_pixel(pg, elem_id, *point)
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"#{shown[k].id} "), timeout=TIMEOUT)
    return shown[k].id


def test_inspect_filters_and_selects_by_click(page, studio) -> None:
    project, _ = studio
    image_id = project.images()[0].id
    set_number(page, "min-score", 0.05)
    shown = shown_now(project, image_id)
    expect_rows(page, len(shown))
    canvas = expect_canvas(page, "inspect-image")   # the canvas draws what the filter shows, top first
    expect(canvas).to_have_attribute("data-shown", ",".join(str(i.id) for i in shown))
    chosen = select_by_click(page, project, image_id, "inspect-image", index=1)
    expect(page.locator("#instance-info")).to_contain_text(f"#{chosen} ")
    set_number(page, "min-score", 1.0)
    expect_rows(page, len(visible_instances(project.instances(image_id), 1.0)))
    expect(canvas).to_have_attribute("data-shown", ",".join(str(i.id) for i in shown_now(project, image_id, 1.0)))
    set_number(page, "min-score", 0.05)
    expect_rows(page, len(shown))
    shot(page, "inspect")
    # next image with the N key, back through the gallery
    page.locator("#inspect-image .anncanvas-info").click()   # focus off the number box
    page.keyboard.press("n")
    expect(page.locator("#review-state")).to_contain_text("000001.png")
    page.locator("#gallery-box").get_by_text("All images").click()
    page.locator("#gallery button.thumbnail-item").first.click()
    expect(page.locator("#review-state")).to_contain_text("000000.png")


def test_explain_shows_activation_queries_and_layers(page, studio) -> None:
    project, _ = studio
    image_id = project.images()[0].id
    set_number(page, "min-score", 0.05)
    expect_rows(page, len(shown_now(project, image_id)))
    chosen = select_by_click(page, project, image_id, "inspect-image", index=0)
    page.click("#tab-explain-button")
    expect(page.locator("#explain-heatmap img")).to_be_visible()
    expect(page.locator("#explain-info")).to_contain_text("query")
    heads = project.model.predictor.num_layers
    layers = page.locator("#explain-layers .xlayers")
    expect(layers.locator(".xlayers-strip button")).to_have_count(heads)
    expect(layers.locator(".xlayers-help .xlayers-swatch")).to_have_count(2)    # the legend's colours
    expect(layers).to_have_attribute("data-shown", str(heads - 1))              # the last head first
    for img in layers.locator(".xlayers-main img").all():                       # every panel loaded once
        expect(img).to_have_js_property("complete", True)
    # switching the layer is answered in the browser: quick keys and clicks, no request to the server
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    main = layers.locator(".xlayers-main")
    main.click()
    shown = lambda: page.evaluate("""() => { const e = document.querySelector('#explain-layers .xlayers');
        const vis = [...e.querySelectorAll('.xlayers-main img')].filter(i => !i.hidden && i.offsetParent !== null);
        return [e.dataset.shown, vis.length, vis[0] && vis[0].src, e.querySelector('.xlayers-caption').textContent]; }""")
    srcs = [img.evaluate("i => i.src") for img in layers.locator(".xlayers-main img").all()]
    for _ in range(heads + 2):                     # past the first: stays on the first
        page.keyboard.press("ArrowLeft")
    assert shown()[:3] == ["0", 1, srcs[0]]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("]")
    assert shown()[:3] == ["2", 1, srcs[2]] and "px" in shown()[3]
    page.keyboard.press("[")
    assert shown()[0] == "1"
    # a click on a thumbnail shows that head, timed in the page as the benchmark does
    took = page.evaluate("""() => { const t0 = performance.now();
        document.querySelectorAll('#explain-layers .xlayers-strip button')[0].click();
        const e = document.querySelector('#explain-layers .xlayers');
        return [e.dataset.shown, performance.now() - t0]; }""")
    assert took[0] == "0"
    page.keyboard.press("End")
    assert shown()[0] == str(heads - 1)
    assert not [u for u in requests if "gradio_api" in u], requests
    print(f"layer switch by a click, in the page: {took[1]:.1f} ms")
    # another heatmap redraws the heatmap only: the panels and the chosen head stay
    main.click()
    page.keyboard.press("Home")
    token, heat = layers.get_attribute("data-token"), page.locator("#explain-heatmap img").get_attribute("src")
    page.locator("#activation-choice label").nth(1).click()   # first class instead of foreground
    expect(page.locator("#explain-heatmap img")).not_to_have_attribute("src", heat)
    assert f"#{chosen}" in page.inner_text("#explain-info")
    assert layers.get_attribute("data-token") == token and shown()[0] == "0"
    shot(page, "explain")


def test_correct_with_keys_polygon_and_eraser(page, studio) -> None:
    project, _ = studio
    image_id = project.images()[0].id
    set_number(page, "min-score", 0.05)
    page.click("#tab-correct-button")
    expect_canvas(page, "correct-image")
    status = page.locator("#status")

    # accept with the A key
    accepted = select_by_click(page, project, image_id, "correct-image", index=0)
    page.keyboard.press("a")
    expect(status).to_contain_text("accepted")
    assert project.store.annotation(accepted).state == "accepted"
    # delete with the Delete key, then undo with Ctrl+Z
    doomed = select_by_click(page, project, image_id, "correct-image", index=1)
    page.keyboard.press("Delete")
    expect(status).to_contain_text("deleted")
    with pytest.raises(NotFoundError):
        project.store.annotation(doomed)
    page.keyboard.press("Control+z")
    expect(status).to_contain_text("undo")
    assert project.store.annotation(doomed).id == doomed

    # a polygon clicked out on the image, closed with Enter (tests/test_app_browser_draw.py checks
    # every drawing tool pixel for pixel)
    page.locator("#tool label", has_text="polygon").click()
    corners = [(20, 20), (90, 20), (90, 70), (20, 70)]
    canvas = page.locator("#correct-image canvas")
    for k, (x, y) in enumerate(corners):
        click_pixel(page, "correct-image", x, y)
        expect(canvas).to_have_attribute("data-corners", str(k + 1))
    page.keyboard.press("Enter")
    expect(status).to_contain_text("from a polygon")
    new_id = max(a.id for a in project.store.annotations(image_id))
    drawn = project.store.annotation(new_id).mask
    target = visualize.polygon_mask(corners, drawn.shape)
    assert (drawn & target).sum() / (drawn | target).sum() > 0.9

    # the eraser on the new instance (selected): a vertical band through its middle, applied with Enter
    page.keyboard.press("e")
    expect(page.locator("#tool input[value=eraser]")).to_be_checked()
    page.mouse.move(*canvas_point(page, "correct-image", 55, 5))
    page.mouse.down()
    page.mouse.move(*canvas_point(page, "correct-image", 55, 85), steps=8)
    page.mouse.up()
    page.keyboard.press("Enter")
    expect(status).to_contain_text("mask saved")
    cut = project.store.annotation(new_id).mask
    assert not cut[45, 55] and cut[45, 25] and cut[45, 85], "the band was erased where it was painted"
    assert (cut & ~drawn).sum() == 0, "erasing added nothing"

    page.keyboard.press("m")             # proposals are still undecided: it asks first
    expect(page.locator("#ask-text")).to_contain_text("undecided")
    assert project.image(image_id).review_state != "reviewed"
    page.click("#btn-ask-undecided-accept")
    expect(page.locator("#review-state")).to_contain_text(re.compile(r"(?<!un)reviewed"))
    assert project.image(image_id).review_state == "reviewed"
    assert not [a for a in project.store.annotations(image_id) if a.state == "proposed"]
    shot(page, "correct")
