"""The studio's layout and the canvas's answers that do not wait for the server, in a real browser
(headless Debian Chromium via Playwright): at 1440x900 and 1920x1080, in Inspect and in Correct,
the canvas fills the viewport without scrolling, beside the instance list; accept and reject are
drawn at once and then confirmed (or taken back when the server refuses); the next and previous
images are loaded ahead and drawn before the server answers."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app.inspect_view import visible_instances
from test_app_browser import TIMEOUT, browser, expect_canvas  # noqa: F401
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url): three 480x640 images, the first two predicted."""
    project = make_project(tmp_path_factory.mktemp("layout"), num_images=3, size=(480, 640))
    for entry in project.images()[:2]:
        project.predict(entry.id)
    with served(project) as url:
        yield project, url


def open_page(browser, url: str, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    pg.goto(url)
    expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
    return context, pg


def box(pg, selector: str) -> dict[str, float]:
    b = pg.locator(selector).first.bounding_box()
    assert b is not None, f"{selector} is not shown"
    return b


def inside(b: dict[str, float], width: int, height: int) -> bool:
    return b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["width"] <= width and b["y"] + b["height"] <= height


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two boxes share more than a pixel's sliver."""
    return min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"]) > 1 and \
        min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"]) > 1


# what a labeler works with, each in its own place: the header's controls and the actions on the
# selected instance (one row each), the canvas, the instance list beside it
CONTROLS = ("#status", "#review-state", "#btn-keys-help",
            "#image-picker", "#btn-prev", "#btn-next", "#btn-predict", "#btn-reviewed", "#btn-undo", "#btn-redo",
            "#model-picker", "#instance-picker", "#min-score", "#show-rejected", "#btn-accept", "#btn-reject",
            "#btn-delete", "#btn-accept-all", "#class-picker", "#btn-relabel")
VIEWS = {"inspect": "#instance-table", "correct": "#correct-table"}   # the view and its instance list
STATE_CELL = re.compile(r"^\s*[?✓✗] (proposed|accepted|rejected)\s*$")


@pytest.mark.parametrize("width,height", [(1440, 900), (1920, 1080)])
def test_the_canvas_fills_the_viewport_beside_the_instance_list(browser, studio, width, height) -> None:
    """In Inspect and in Correct: the canvas takes at least 70% of the window's height and 55% of
    its width, its bottom edge inside the window with the page not scrolled; the instance list
    (state icons, and the legend in its label) beside it and inside the window; Correct's tools
    in one row above the canvas; nothing covers anything else."""
    _, url = studio
    context, pg = open_page(browser, url, width, height)
    try:
        for view, listed in VIEWS.items():
            pg.click(f"#tab-{view}-button")
            expect_canvas(pg, f"{view}-image")
            expect(pg.locator(f"{listed} .cell-wrap >> visible=true").filter(has_text=STATE_CELL)).not_to_have_count(0)
            pg.wait_for_timeout(300)
            assert pg.evaluate("window.scrollY") == 0
            cv = box(pg, f"#{view}-image canvas")
            assert inside(cv, width, height), (view, cv)            # the bottom edge without scrolling
            assert cv["height"] >= 0.70 * height, (view, cv["height"] / height)
            assert cv["width"] >= 0.55 * width, (view, cv["width"] / width)
            side = box(pg, listed)
            assert inside(side, width, height), (view, side)
            assert side["x"] >= cv["x"] + cv["width"], (view, "the list is not beside the canvas", side, cv)
            assert side["y"] < cv["y"] + cv["height"] and cv["y"] < side["y"] + side["height"], (view, side, cv)
            expect(pg.locator(listed)).to_contain_text("? proposed · ✓ accepted · ✗ rejected")   # the legend
            flag = box(pg, f"{listed} th >> text=flag")       # the near-duplicate flag without scrolling the list
            assert flag["x"] + flag["width"] <= side["x"] + side["width"], (view, flag, side)
            if view == "correct":                              # nothing below the canvas: the page cannot scroll
                assert pg.evaluate("document.documentElement.scrollHeight") <= height, view
            placed = {listed: side, "canvas": cv}
            if view == "correct":
                tools = box(pg, "#tool")
                assert tools["y"] + tools["height"] <= cv["y"] and tools["height"] <= 48, ("tools", tools, cv)
                assert tools["x"] < cv["x"] + cv["width"] and tools["x"] + tools["width"] <= side["x"], tools
                placed["#tool"] = tools
            for control in CONTROLS:
                placed[control] = box(pg, control)
                assert inside(placed[control], width, height), (view, control)
            rows = {round(placed[c]["y"] + placed[c]["height"] / 2) for c in CONTROLS[3:]}
            assert max(rows) - min(rows) < 2 * 48, (view, "the header takes more than two rows", rows)
            names = list(placed)
            for k, a in enumerate(names):
                for b in names[k + 1:]:
                    assert not overlap(placed[a], placed[b]), (view, a, placed[a], b, placed[b])
    finally:
        context.close()


def select(pg, ann_id: int) -> None:
    picker = pg.locator("#instance-picker input")
    picker.fill(f"#{ann_id} ")
    picker.press("ArrowDown")
    picker.press("Enter")
    expect(pg.locator("#inspect-image canvas")).to_have_attribute("data-selected", str(ann_id))


def state_of(pg, ann_id: int) -> str:
    states = dict(s.split(":") for s in pg.locator("#inspect-image canvas").get_attribute("data-states").split(","))
    return states[str(ann_id)]


def test_accept_is_drawn_at_once_and_a_refused_one_is_taken_back(browser, studio) -> None:
    project, url = studio
    image_id = project.images()[0].id
    context, pg = open_page(browser, url, 1440, 900)
    try:
        cv = expect_canvas(pg, "inspect-image")
        first, second = [i for i in visible_instances(project.instances(image_id), 0.05)
                         if i.state == "proposed"][:2]
        pg.locator("#min-score input[type=number]").fill("0.05")
        pg.locator("#min-score input[type=number]").press("Tab")
        select(pg, first.id)
        token = cv.get_attribute("data-token")
        frame = int(cv.get_attribute("data-frame"))
        pg.locator("#project-info").click()
        # the key pressed in the page and the canvas read in the same task: drawn before any answer
        # from the server can arrive (the token is the old one); a frame read later could already
        # hold the saved revision on a quick machine
        marked = pg.evaluate("""() => {
            document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', bubbles: true}));
            const c = document.querySelector('#inspect-image canvas');
            return [c.dataset.token, c.dataset.states, Number(c.dataset.frame)]; }""")
        assert marked[0] == token and f"{first.id}:accepted" in marked[1].split(","), marked
        assert marked[2] > frame
        expect(cv).not_to_have_attribute("data-token", token)      # the saved revision
        assert state_of(pg, first.id) == "accepted"
        assert next(i for i in project.instances(image_id) if i.id == first.id).state == "accepted"

        # someone else changes the image: the session's revision is stale, the server refuses
        select(pg, second.id)
        mask = np.zeros((480, 640), bool)
        mask[5:25, 5:25] = True
        project.add_instance(image_id, mask, project.class_names()[0], project.image(image_id).revision)
        revision = project.image(image_id).revision
        pg.keyboard.press("r")
        expect(pg.locator("#status")).to_contain_text("⚠")
        expect(cv).to_have_attribute("data-states", re.compile(rf"(^|,){second.id}:proposed(,|$)"))
        assert project.image(image_id).revision == revision
        assert next(i for i in project.instances(image_id) if i.id == second.id).state == "proposed"
    finally:
        context.close()


# one step in the page: the key pressed as a person does (KEYS_JS clicks the button), then what the
# canvas and the server-drawn header show at once, before any answer from the server can arrive
PRESS_AND_READ = """(key) => {
  document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
  const c = document.querySelector('#inspect-image canvas');
  return {token: c.dataset.token, opening: c.dataset.opening, shown: c.dataset.shown,
          marker: document.querySelector('#inspect-image .anncanvas-opening').innerText,
          header: document.querySelector('#review-state').innerText};
}"""


def test_the_next_image_is_drawn_before_the_server_answers(browser, studio) -> None:
    project, url = studio
    first, second, third = project.images()
    context, pg = open_page(browser, url, 1440, 900)
    try:
        cv = expect_canvas(pg, "inspect-image")
        # the page loads the next (predicted) image's picture and masks ahead, and the previous one's
        # picture (the third image, not predicted yet: no masks)
        expect(cv).to_have_attribute("data-ahead", re.compile(rf"(^|,)next:{second.id}:"))
        ahead = json.loads(pg.locator("#canvas-prefetch textarea").input_value())
        assert ahead["from"] == first.id
        assert {i["key"] for i in ahead["next"]["instances"]} <= set(pg.evaluate("[...window.__anncanvasPre.masks.keys()]"))
        assert len(ahead["next"]["instances"]) == len(project.instances(second.id)) > 0
        assert ahead["prev"]["masks"] is None and ahead["prev"]["instances"] == []
        pg.locator("#project-info").click()
        now = pg.evaluate(PRESS_AND_READ, "n")
        assert now["token"] == ahead["next"]["token"] == now["opening"], "not drawn in the press's own task"
        assert first.file_name in now["header"], "the server answered within the key press?"
        assert second.file_name in now["marker"]
        assert now["shown"] == ",".join(str(i.id) for i in visible_instances(project.instances(second.id), 0.5))
        # the server's answer: the same image, the marker gone, the header follows
        expect(pg.locator("#review-state")).to_contain_text(second.file_name)
        expect(cv).to_have_attribute("data-opening", "")
        expect(pg.locator("#inspect-image .anncanvas-opening")).to_be_hidden()
        assert cv.get_attribute("data-token") == now["token"]
        # back with P: the previous image was loaded ahead as well
        expect(cv).to_have_attribute("data-ahead", re.compile(rf"(^|,)prev:{first.id}:"))
        back = pg.evaluate(PRESS_AND_READ, "p")
        assert back["token"].startswith(f"{first.id}:") and back["opening"] == back["token"]
        expect(pg.locator("#review-state")).to_contain_text(first.file_name)
        expect(cv).to_have_attribute("data-opening", "")
        # to the second image again: its next one (not predicted) has no masks to draw ahead
        pg.keyboard.press("n")
        expect(cv).to_have_attribute("data-opening", "")
        expect(pg.locator("#review-state")).to_contain_text(second.file_name)
        expect(cv).to_have_attribute("data-token", re.compile(rf"^{second.id}:"))
        pg.wait_for_function(f"() => JSON.parse(document.querySelector('#canvas-prefetch textarea').value || '{{}}')"
                             f".from === {second.id}")
        later = json.loads(pg.locator("#canvas-prefetch textarea").input_value())
        assert later["next"]["masks"] is None and later["next"]["instances"] == []
        assert not re.search(r"(^|,)next:", cv.get_attribute("data-ahead") or "")
    finally:
        context.close()


def drawn_project(folder, size: tuple[int, int], objects: int):
    """A project of one image of ``size`` (H, W): ``objects`` filled ellipses of random colours
    on a smooth background, each stored as a proposal of the current model (random scores)."""
    import cv2
    from app.config import StudioConfig
    from app.startup import open_project
    from test_app_support import model_weights
    rng = np.random.default_rng(0)
    height, width = size
    picture = cv2.resize(rng.integers(60, 200, (30, 40, 3), dtype=np.uint8), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    masks = np.zeros((objects, height, width), bool)
    for k in range(objects):
        mask = np.zeros((height, width), np.uint8)
        centre = (int(rng.integers(200, width - 200)), int(rng.integers(200, height - 200)))
        axes = (int(rng.integers(40, 200)), int(rng.integers(40, 200)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        masks[k] = mask.astype(bool)
        picture[masks[k]] = rng.integers(0, 256, 3)
    (folder / "images").mkdir()
    cv2.imwrite(str(folder / "images" / "photo.png"), picture[:, :, ::-1])
    project = open_project(StudioConfig(images=folder / "images", weights=model_weights(folder),
                                        data_dir=folder / "data", device="cpu"), log=lambda m: None)
    entry = project.images()[0]
    cats = [project.category_id(project.class_names()[k % len(project.class_names())]) for k in range(objects)]
    scores = rng.uniform(0.05, 1.0, objects).round(3).tolist()
    project.store.replace_predictions(entry.id, masks, cats, scores, project.model.version, entry.revision)
    return project


@pytest.mark.slow
def test_a_4000x3000_image_with_100_instances(browser, tmp_path) -> None:
    """Open, hover, select, threshold and accept on a 12-megapixel photo with 100 proposals; what
    the canvas shows is checked against the store."""
    from test_app_browser import canvas_point, click_pixel
    project = drawn_project(tmp_path, (3000, 4000), 100)
    image_id = project.images()[0].id
    instances = project.instances(image_id)
    assert len(instances) == 100
    with served(project) as url:
        context, pg = open_page(browser, url, 1440, 900)
        try:
            cv = expect_canvas(pg, "inspect-image")
            expect(cv).to_have_attribute("data-shown", ",".join(
                str(i.id) for i in visible_instances(project.instances(image_id), 0.5)))
            shown = visible_instances(instances, 0.5)
            target = next(i for i in shown if i.area > 2000)
            ys, xs = np.nonzero(target.mask)
            k = len(xs) // 2
            x, y = int(xs[k]), int(ys[k])
            top = next(i for i in shown if i.mask[y, x])
            pg.mouse.move(*canvas_point(pg, "inspect-image", x, y))
            expect(cv).to_have_attribute("data-hover", str(top.id))
            click_pixel(pg, "inspect-image", x, y)
            expect(cv).to_have_attribute("data-selected", str(top.id))
            expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"^#{top.id} "))
            pg.locator("#min-score input[type=number]").fill("0.9")
            pg.locator("#min-score input[type=number]").press("Tab")
            expect(cv).to_have_attribute("data-shown", ",".join(str(i.id) for i in visible_instances(instances, 0.9)))
            proposal = visible_instances(instances, 0.9)[0]
            select(pg, proposal.id)
            token = cv.get_attribute("data-token")
            pg.locator("#project-info").click()
            pg.keyboard.press("a")
            expect(cv).not_to_have_attribute("data-token", token)
            assert state_of(pg, proposal.id) == "accepted"
            assert next(i for i in project.instances(image_id) if i.id == proposal.id).state == "accepted"
        finally:
            context.close()


def test_all_labels_cover_no_other_label(browser, studio) -> None:
    project, url = studio
    image_id = project.images()[0].id
    context, pg = open_page(browser, url, 1440, 900)
    try:
        cv = expect_canvas(pg, "inspect-image")
        pg.locator("#min-score input[type=number]").fill("0.05")
        pg.locator("#min-score input[type=number]").press("Tab")
        shown = [i.id for i in visible_instances(project.instances(image_id), 0.05)]
        expect(cv).to_have_attribute("data-shown", ",".join(map(str, shown)))
        assert cv.get_attribute("data-labels") == ""
        pg.locator("#inspect-image .anncanvas-labels").check()
        expect(cv).not_to_have_attribute("data-labels", "")
        labelled = [int(v) for v in cv.get_attribute("data-labels").split(",")]
        assert set(labelled) <= set(shown) and len(labelled) >= min(2, len(shown))
        boxes = [[float(v) for v in b.split(",")] for b in cv.get_attribute("data-label-boxes").split(";")]
        for k, (x, y, w, h) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[k + 1:]:
                assert x + w <= x2 + 1 or x2 + w2 <= x + 1 or y + h <= y2 + 1 or y2 + h2 <= y + 1, (boxes, k)
    finally:
        context.close()
