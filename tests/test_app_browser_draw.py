"""Drawing on the annotation canvas in a real browser (headless Debian Chromium via Playwright):
brush, eraser, new mask and polygon, at the fitted zoom and zoomed in, on a small image and on a
4000x3000 photo-sized one. Each test acts like a person (mouse down / move / up, quick keys) and
checks the mask the store holds pixel for pixel against the pixels it drew, computed here from the
page points it moved the mouse to and the canvas's view transform (``data-view``): a pixel is
painted when its centre lies within the brush radius of the stroke's polyline, or inside the
polygon (even-odd rule), as ``app.canvas`` documents."""
from __future__ import annotations

import re

import numpy as np
import pytest

from annotations import NotFoundError
from app import canvas, correct_view
from app.project import StudioError
from app.session import SessionState
from test_app_browser import TIMEOUT, browser, expect_canvas  # noqa: F401 - fixture
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect
SIZE = (240, 320)          # (H, W) of the small image


def squares(project, image_id: int, corners: list[tuple[int, int]], side: tuple[int, int]) -> list[int]:
    """Hand-drawn rectangles (accepted, first class) at ``corners`` (x, y); their ids."""
    entry = project.image(image_id)
    ids = []
    for x0, y0 in corners:
        mask = np.zeros((entry.height, entry.width), bool)
        mask[y0:y0 + side[1], x0:x0 + side[0]] = True
        ids.append(project.add_instance(image_id, mask, project.class_names()[0], project.image(image_id).revision))
    return ids


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url, image id, ids of two rectangles): one predicted 320x240 image."""
    project = make_project(tmp_path_factory.mktemp("draw"), num_images=1, size=SIZE)
    image_id = project.images()[0].id
    project.predict(image_id)
    ids = squares(project, image_id, [(40, 60), (200, 120)], (60, 50))
    with served(project) as url:
        yield project, url, image_id, ids


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def shared(context, studio):
    """One page on the Correct view of the small image, shared by the tests (a page load costs
    seconds here); each test starts from the fitted view with the select tool and no strokes."""
    _, url, image_id, _ = studio
    return open_correct(context, url, image_id, "select")


@pytest.fixture
def pg(shared):
    shared.locator("#correct-image .anncanvas-info").click()
    shared.keyboard.press("Escape")
    choose(shared, "select")
    shared.click("#correct-image .anncanvas-fit")
    expect(shared.locator("#correct-image canvas")).to_have_attribute("data-unsaved", "0")
    return shared


def choose(pg, tool: str) -> None:
    """Pick a tool on the tool radio, as a person does."""
    pg.locator("#tool label", has_text="new mask" if tool == "new" else tool).click()
    expect(pg.locator(f"#tool input[value={tool}]")).to_be_checked()


def select(pg, ann_id: int) -> None:
    """Select ``ann_id`` in the instance list."""
    picker = pg.locator("#instance-picker input")
    picker.fill(f"#{ann_id} ")
    picker.press("ArrowDown")
    picker.press("Enter")
    expect(pg.locator("#correct-image canvas")).to_have_attribute("data-selected", str(ann_id))
    expect(picker).to_have_value(re.compile(f"^#{ann_id} "))


def open_correct(context, url: str, image_id: int, tool: str, selected: int | None = None):
    """A page on the Correct view of ``image_id`` with ``tool`` chosen (and ``selected``), as a
    link to that place opens it."""
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    sel = f"&sel={selected}" if selected is not None else ""
    pg.goto(f"{url}?image={image_id}&tab=correct&tool={tool}{sel}")
    expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
    expect(pg.locator(f"#tool input[value={tool}]")).to_be_checked()
    cv = expect_canvas(pg, "correct-image")
    expect(cv).to_have_attribute("data-selected", "" if selected is None else str(selected))
    pg.locator("#correct-image .anncanvas-stage").evaluate("e => e.scrollIntoView({block: 'center'})")
    return pg


class View:
    """The canvas's view transform as the page holds it now: image point (x, y) is drawn at page
    point (left + ox + x * s, top + oy + y * s)."""

    def __init__(self, pg) -> None:
        cv = pg.locator("#correct-image canvas")
        cv.evaluate("c => { const r = c.getBoundingClientRect();"       # the whole canvas in the window
                    " if (r.top < 0 || r.bottom > innerHeight) c.parentElement.scrollIntoView({block: 'center'}); }")
        # a person clicks where the image is once it stops moving: on a loaded machine the layout
        # can still settle (and the canvas refit) after the image is first drawn
        settled, before = None, None
        for _ in range(25):
            now = (cv.get_attribute("data-view"), cv.evaluate("c => { const r = c.getBoundingClientRect(); "
                                                              "return [r.left, r.top, r.width, r.height]; }"))
            if now == before:
                settled = now
                break
            before = now
            pg.wait_for_timeout(200)
        view, rect = settled or before
        self.s, self.ox, self.oy = (float(v) for v in view.split(","))
        self.left, self.top = rect[0], rect[1]

    def page(self, x: float, y: float) -> tuple[int, int]:
        """The whole page point nearest to image point (x, y) (a mouse moves in whole pixels)."""
        return round(self.left + self.ox + x * self.s), round(self.top + self.oy + y * self.s)

    def image(self, px: int, py: int) -> tuple[float, float]:
        """The image point under page point (px, py), computed as the canvas does."""
        return (px - self.left - self.ox) / self.s, (py - self.top - self.oy) / self.s


def window(shape: tuple[int, int], xs: list[float], ys: list[float], pad: float):
    """Pixel-centre grids (px, py) of the part of the image within ``pad`` of the points, and its slices."""
    h, w = shape
    x0, x1 = max(0, int(np.floor(min(xs) - pad)) - 1), min(w, int(np.ceil(max(xs) + pad)) + 2)
    y0, y1 = max(0, int(np.floor(min(ys) - pad)) - 1), min(h, int(np.ceil(max(ys) + pad)) + 2)
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    return px, py, (slice(y0, y1), slice(x0, x1))


def stroke_pixels(shape: tuple[int, int], points: list[tuple[float, float]], radius: float) -> np.ndarray:
    """The pixels whose centre lies within ``radius`` of the polyline through ``points``."""
    out = np.zeros(shape, bool)
    r2 = radius * radius
    for a, b in zip([points[0], *points[:-1]], points):
        px, py, where = window(shape, [a[0], b[0]], [a[1], b[1]], radius)
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = dx * dx + dy * dy
        t = ((px - a[0]) * dx + (py - a[1]) * dy) / length if length > 0 else np.zeros_like(px)
        t = np.clip(t, 0.0, 1.0)
        qx, qy = a[0] + t * dx - px, a[1] + t * dy - py
        out[where] |= qx * qx + qy * qy <= r2
    return out


def polygon_pixels(shape: tuple[int, int], corners: list[tuple[float, float]]) -> np.ndarray:
    """The pixels whose centre is inside the polygon (even-odd rule: an odd number of its edges
    cross the pixel's row to the right of the centre)."""
    px, py, where = window(shape, [c[0] for c in corners], [c[1] for c in corners], 0)
    crossings = np.zeros(px.shape, np.int64)
    for a, b in zip(corners, [*corners[1:], corners[0]]):
        if a[1] == b[1]:
            continue
        crosses = (a[1] > py) != (b[1] > py)
        x = a[0] + (py - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
        crossings += crosses & (x > px)
    out = np.zeros(shape, bool)
    out[where] = crossings % 2 == 1
    return out


def stroke(pg, view: View, path: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Press, drag through ``path`` (image points) and release, as a person does; returns the
    image points the canvas gets (the page points are whole pixels)."""
    points = [view.page(x, y) for x, y in path]
    pg.mouse.move(*points[0])
    pg.mouse.down()
    for p in points[1:]:
        pg.mouse.move(*p)
    pg.mouse.up()
    return [view.image(*p) for p in points]


def click_corners(pg, view: View, corners: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Click each corner (image points) with a pause a person makes; the image points the canvas gets."""
    points = [view.page(x, y) for x, y in corners]
    for k, p in enumerate(points):
        pg.mouse.click(*p)
        expect(pg.locator("#correct-image canvas")).to_have_attribute("data-corners", str(k + 1))
    return [view.image(*p) for p in points]


def brush_radius(pg) -> float:
    return float(pg.locator("#correct-image canvas").get_attribute("data-brush")) / 2


def zoom_in(pg, at: tuple[float, float], notches: int = 1) -> None:
    """Wheel up over image point ``at``, ``notches`` times (each one zooms by e^0.6, about 1.8x),
    and wait until the canvas has taken every notch."""
    before = View(pg).s
    pg.mouse.move(*View(pg).page(*at))
    for _ in range(notches):
        pg.mouse.wheel(0, -400)
    pg.wait_for_function("(s) => Math.abs(parseFloat(document.querySelector('#correct-image canvas').dataset.view)"
                         " / s - 1) < 1e-6", arg=before * np.exp(0.6 * notches))


def apply_and_expect(pg, text: str) -> None:
    """Enter applies the strokes; the status says ``text`` and the canvas shows the new revision."""
    cv = pg.locator("#correct-image canvas")
    token = cv.get_attribute("data-token")
    pg.keyboard.press("Enter")
    expect(pg.locator("#status")).to_contain_text(text)
    expect(cv).not_to_have_attribute("data-token", token)
    expect(cv).to_have_attribute("data-unsaved", "0")
    expect(cv).to_have_attribute("data-edit", "")


def newest(project, image_id: int):
    return project.store.annotation(max(a.id for a in project.store.annotations(image_id)))


@pytest.mark.parametrize("zoomed", [False, True], ids=["fitted", "zoomed"])
def test_brush_and_eraser_edit_the_selected_mask(pg, studio, zoomed) -> None:
    project, url, image_id, (square, _) = studio
    select(pg, square)
    choose(pg, "brush")
    cv = pg.locator("#correct-image canvas")
    while cv.get_attribute("data-brush") != "12":
        pg.keyboard.press("[" if int(cv.get_attribute("data-brush")) > 12 else "]")
    if zoomed:
        zoom_in(pg, (70, 85))
    pg.keyboard.press("]")
    pg.keyboard.press("]")                                   # a larger brush, quickly
    expect(cv).not_to_have_attribute("data-brush", "12")
    before = project.store.annotation(square).mask
    view = View(pg)
    got = stroke(pg, view, [(45, 100), (60, 118), (80, 121), (98, 130)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    painted = before | stroke_pixels(before.shape, got, brush_radius(pg))
    # a second stroke, taken back before applying (Ctrl+Z while drawing undoes the stroke only)
    stroke(pg, view, [(80, 95), (95, 100)])
    expect(cv).to_have_attribute("data-unsaved", "2")
    pg.keyboard.press("Control+z")
    expect(cv).to_have_attribute("data-unsaved", "1")
    apply_and_expect(pg, f"#{square}: mask saved")
    stored = project.store.annotation(square).mask
    assert np.array_equal(stored, painted), f"{int((stored ^ painted).sum())} pixels differ from the stroke"

    pg.keyboard.press("e")                                   # E: the eraser
    expect(pg.locator("#tool input[value=eraser]")).to_be_checked()
    pg.keyboard.press("[")
    view = View(pg)
    got = stroke(pg, view, [(70, 50), (72, 80), (75, 115)])
    erased = painted & ~stroke_pixels(painted.shape, got, brush_radius(pg))
    apply_and_expect(pg, f"#{square}: mask saved")
    stored = project.store.annotation(square).mask
    assert np.array_equal(stored, erased), f"{int((stored ^ erased).sum())} pixels differ from the erased stroke"
    for back_to in (painted, before):                       # each Apply is one undo step
        token = cv.get_attribute("data-token")
        pg.keyboard.press("Control+z")
        expect(cv).not_to_have_attribute("data-token", token)
        assert np.array_equal(project.store.annotation(square).mask, back_to)
    expect(pg.locator("#status")).to_contain_text("undo")


@pytest.mark.parametrize("zoomed", [False, True], ids=["fitted", "zoomed"])
def test_polygon_becomes_a_new_instance(pg, studio, zoomed) -> None:
    project, url, image_id, _ = studio
    choose(pg, "polygon")
    cv = pg.locator("#correct-image canvas")
    dy = 110 if zoomed else 0      # the second polygon elsewhere: a copy of the first would select it
    if zoomed:
        zoom_in(pg, (150, 60 + dy))
    corners = [(120.3, 30.6 + dy), (190.2, 42.1 + dy), (175.7, 95.4 + dy), (150.1, 70.2 + dy), (118.9, 88.8 + dy)]
    got = click_corners(pg, View(pg), corners)
    count = len(project.store.annotations(image_id, include_rejected=True))
    if zoomed:                                               # closed by clicking the first corner again
        token = cv.get_attribute("data-token")
        pg.mouse.click(*View(pg).page(*corners[0]))
        expect(pg.locator("#status")).to_contain_text("from a polygon")
        expect(cv).not_to_have_attribute("data-token", token)
    else:
        apply_and_expect(pg, "from a polygon")               # Enter closes it
    assert len(project.store.annotations(image_id)) == count + 1
    drawn = newest(project, image_id)
    expected = polygon_pixels(SIZE, got)
    assert np.array_equal(drawn.mask, expected), f"{int((drawn.mask ^ expected).sum())} pixels differ"
    assert drawn.source == "human" and drawn.state == "accepted"
    expect(cv).to_have_attribute("data-selected", str(drawn.id))
    expect(cv).to_have_attribute("data-corners", "0")


def test_new_mask_with_brush_and_eraser_then_esc_discards(pg, studio) -> None:
    project, url, image_id, _ = studio
    names = project.class_names()
    choose(pg, "new")
    cv = pg.locator("#correct-image canvas")
    picker = pg.locator("#class-picker input")
    picker.fill(names[2])
    picker.press("ArrowDown")
    picker.press("Enter")
    expect(picker).to_have_value(names[2])
    pg.locator("#correct-image .anncanvas-info").click()     # back from the picker to the canvas
    view = View(pg)
    got = stroke(pg, view, [(230, 30), (260, 40), (290, 30)])
    expect(cv).to_have_attribute("data-edit", "new")
    painted = stroke_pixels(SIZE, got, brush_radius(pg))
    pg.keyboard.press("e")                                   # the eraser goes on with the new mask
    expect(pg.locator("#tool input[value=eraser]")).to_be_checked()
    got = stroke(pg, view, [(260, 20), (260, 50)])
    drawn = painted & ~stroke_pixels(SIZE, got, brush_radius(pg))
    count = len(project.store.annotations(image_id, include_rejected=True))
    pg.keyboard.press("n")                                   # strokes open: N does not leave the image
    expect(pg.locator("#correct-image .anncanvas-editinfo")).to_contain_text("apply (Enter) or discard")
    apply_and_expect(pg, f"{names[2]} (")
    new = newest(project, image_id)
    assert len(project.store.annotations(image_id)) == count + 1
    assert np.array_equal(new.mask, drawn), f"{int((new.mask ^ drawn).sum())} pixels differ"
    assert project.store.annotation(new.id).category_id == project.category_id(names[2])
    # strokes discarded with Esc store nothing
    choose(pg, "new")
    stroke(pg, View(pg), [(10, 200), (60, 210)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    pg.keyboard.press("Escape")
    expect(cv).to_have_attribute("data-unsaved", "0")
    pg.keyboard.press("Enter")
    pg.wait_for_timeout(300)
    assert len(project.store.annotations(image_id)) == count + 1


def test_strokes_stay_with_their_instance_and_a_refused_apply_keeps_them(pg, studio) -> None:
    """Strokes on one instance: another selected instance cannot take the next stroke, a polygon
    does not join them, Next asks first (dismissed: nothing moves), and when another tab changed the
    image first the refused Apply keeps them, so a second Apply stores exactly what was drawn."""
    project, url, image_id, (square, other) = studio
    select(pg, square)
    choose(pg, "brush")
    cv = pg.locator("#correct-image canvas")
    before = project.store.annotation(square).mask
    view = View(pg)
    got = stroke(pg, view, [(45, 100), (70, 120)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    painted = before | stroke_pixels(before.shape, got, brush_radius(pg))

    select(pg, other)                                          # another instance: its stroke is refused
    choose(pg, "brush")
    stroke(pg, View(pg), [(210, 130), (240, 150)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    expect(pg.locator("#correct-image .anncanvas-editinfo")).to_contain_text(f"the open strokes are on #{square}")
    choose(pg, "polygon")                                      # a polygon would join them: refused
    click_corners(pg, View(pg), [(150, 20), (190, 20), (170, 50)])
    pg.keyboard.press("Enter")
    expect(pg.locator("#correct-image .anncanvas-editinfo")).to_contain_text("discard the open strokes first")
    pg.keyboard.press("Escape")                                # drops the corners, keeps the strokes
    expect(cv).to_have_attribute("data-corners", "0")
    expect(cv).to_have_attribute("data-unsaved", "1")
    count = len(project.store.annotations(image_id, include_rejected=True))
    pg.click("#btn-next")                                      # the page dismisses the question: stays
    expect(pg.locator("#correct-image .anncanvas-editinfo")).to_contain_text("apply (Enter) or discard")
    expect(cv).to_have_attribute("data-unsaved", "1")

    other_tab = project.store.annotation(other)                # another tab changes the image first
    project.store.set_state(other, "rejected" if other_tab.state != "rejected" else "accepted")
    pg.keyboard.press("Enter")
    expect(pg.locator("#status")).to_contain_text("conflict")
    expect(cv).to_have_attribute("data-unsaved", "1")          # the strokes are still there
    assert np.array_equal(project.store.annotation(square).mask, before)
    apply_and_expect(pg, f"#{square}: mask saved")
    stored = project.store.annotation(square).mask
    assert np.array_equal(stored, painted), f"{int((stored ^ painted).sum())} pixels differ from the stroke"
    assert len(project.store.annotations(image_id, include_rejected=True)) == count


# Enter pressed in the page (``press``) and the canvas read in the same task: what the frame after
# the key shows, before any answer from the server can arrive; ``before`` / ``after``: the canvas
# pixel (RGBA) at image point (x, y) before and after the key
APPLY_NOW = """([x, y, press]) => {
    const c = document.querySelector('#correct-image canvas');
    const at = () => { const [s, ox, oy] = c.dataset.view.split(',').map(Number), d = devicePixelRatio || 1;
                       return [...c.getContext('2d').getImageData(Math.floor((ox + (x + 0.5) * s) * d),
                                                                   Math.floor((oy + (y + 0.5) * s) * d), 1, 1).data]; };
    const before = at();
    if (press) document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
    return {before, after: at(), token: c.dataset.token, pending: c.dataset.pending, unsaved: c.dataset.unsaved}; }"""


def test_an_applied_stroke_is_drawn_at_once_and_a_refused_one_keeps_its_strokes(pg, studio) -> None:
    """Enter draws the applied strokes as the selected instance's new mask in the same task (its
    edge white, marked pending in ``data-pending``), before the server answers; refused (another tab
    changed the image), the pending mask goes and the strokes stay; applied again, the stored
    revision replaces the pending mask, and the store holds exactly what was drawn."""
    project, url, image_id, (square, other) = studio
    select(pg, square)
    choose(pg, "brush")
    cv = pg.locator("#correct-image canvas")
    before = project.store.annotation(square).mask
    got = stroke(pg, View(pg), [(90, 100), (90, 140)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    pg.mouse.move(2, 2)                                        # the brush outline leaves with the pointer
    painted = before | stroke_pixels(before.shape, got, brush_radius(pg))
    column = round(got[-1][0] - 0.5)
    row = int(np.flatnonzero(painted[:, column]).max())       # the new mask's lowest pixel there: its edge
    assert not before[row, column]

    other_tab = project.store.annotation(other)                # another tab changes the image first
    project.store.set_state(other, "rejected" if other_tab.state != "rejected" else "accepted")
    token = cv.get_attribute("data-token")
    now = pg.evaluate(APPLY_NOW, [column, row, True])
    assert now["token"] == token and now["pending"] == str(square) and now["unsaved"] == "1", now
    assert min(now["after"][:3]) >= 250 > min(now["before"][:3]), now   # the selected mask's edge: white
    expect(pg.locator("#status")).to_contain_text("conflict")
    expect(cv).to_have_attribute("data-pending", "")            # refused: the strokes again, to apply
    expect(cv).to_have_attribute("data-unsaved", "1")
    expect(cv).to_have_attribute("data-edit", str(square))
    assert np.array_equal(project.store.annotation(square).mask, before)

    token = cv.get_attribute("data-token")
    now = pg.evaluate(APPLY_NOW, [column, row, True])
    assert now["token"] == token and now["pending"] == str(square), now
    expect(pg.locator("#status")).to_contain_text(f"#{square}: mask saved")
    expect(cv).not_to_have_attribute("data-token", token)      # the stored revision replaces it
    expect(cv).to_have_attribute("data-pending", "")
    expect(cv).to_have_attribute("data-unsaved", "0")
    expect(cv).to_have_attribute("data-edit", "")
    stored = project.store.annotation(square).mask
    assert np.array_equal(stored, painted), f"{int((stored ^ painted).sum())} pixels differ from the stroke"
    drawn = pg.evaluate(APPLY_NOW, [column, row, False])
    assert min(drawn["before"][:3]) >= 250, drawn                 # the stored mask's edge, selected


def test_tools_make_no_object_the_person_did_not_ask_for(pg, studio) -> None:
    """Real mouse and keys, quick: the brush with nothing selected says so and makes nothing
    (Enter stores nothing); a polygon corner clicked 6 screen pixels from the first corner (off its
    handle) is a corner, and Enter stores all five; the query tool clicked inside an accepted
    object selects it instead of placing a copy; strokes whose instance another tab deleted stay
    (said so, as a new mask) until Esc."""
    project, url, image_id, (square, other) = studio
    cv = pg.locator("#correct-image canvas")
    info = pg.locator("#correct-image .anncanvas-editinfo")
    count = lambda: len(project.store.annotations(image_id, include_rejected=True))  # noqa: E731
    before = count()
    pg.mouse.click(*View(pg).page(5, 235))                      # an empty place: nothing selected
    expect(cv).to_have_attribute("data-selected", "")
    pg.keyboard.press("b")                                      # B: the brush, at once
    view = View(pg)
    stroke(pg, view, [(95, 80), (110, 85), (120, 95)])         # over the accepted square's edge
    expect(info).to_contain_text("nothing selected")
    expect(cv).to_have_attribute("data-unsaved", "0")
    pg.keyboard.press("Enter")
    pg.wait_for_timeout(300)
    assert count() == before

    choose(pg, "polygon")
    view = View(pg)
    corners = [(12.5, 120.5), (34.5, 118.5), (36.5, 190.5), (14.5, 189.5)]
    points = [view.page(x, y) for x, y in corners]
    near = (points[0][0] + 6, points[0][1] + 2)                 # within 8 screen px of the first corner
    for p in [*points, near]:
        pg.mouse.click(*p, delay=20)
    expect(cv).to_have_attribute("data-corners", "5")
    token = cv.get_attribute("data-token")
    pg.keyboard.press("Enter")
    expect(pg.locator("#status")).to_contain_text("from a polygon")
    expect(cv).not_to_have_attribute("data-token", token)
    drawn = newest(project, image_id)
    expected = polygon_pixels(SIZE, [view.image(*p) for p in [*points, near]])
    assert count() == before + 1 and np.array_equal(drawn.mask, expected), int((drawn.mask ^ expected).sum())

    choose(pg, "query")
    x, y = map(int, np.argwhere(project.store.annotation(square).mask).mean(0)[::-1])
    pg.mouse.click(*View(pg).page(x + 0.5, y + 0.5))
    expect(pg.locator("#status")).to_contain_text(f"inside #{square}")
    expect(cv).to_have_attribute("data-selected", str(square))
    assert count() == before + 1

    select(pg, other)
    choose(pg, "brush")
    stroke(pg, View(pg), [(215, 140), (240, 150)])
    expect(cv).to_have_attribute("data-unsaved", "1")
    project.store.delete_annotation(other)                      # another tab deletes the instance
    try:
        pg.keyboard.press("Enter")
        expect(pg.locator("#status")).to_contain_text(f"#{other} no longer exists")
        expect(info).to_contain_text("strokes are kept")
        expect(cv).to_have_attribute("data-unsaved", "1")
        expect(cv).to_have_attribute("data-edit", "new")
        pg.keyboard.press("Escape")
        expect(cv).to_have_attribute("data-unsaved", "0")
        assert count() == before                                # the polygon in, the deleted one out: no new mask
    finally:
        project.store.undo(image_id)                            # the other tab's delete, for the next tests
    assert project.store.annotation(other).state == "accepted"


def test_leaving_with_strokes_not_applied_asks_first(browser, studio) -> None:
    _, url, image_id, (square, _) = studio
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = open_correct(context, url, image_id, "brush", square)     # a link to this place: tool and selection
    stroke(pg, View(pg), [(50, 70), (90, 90)])
    expect(pg.locator("#correct-image canvas")).to_have_attribute("data-unsaved", "1")
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    pg.close(run_before_unload=True)
    pg.wait_for_timeout(500)
    context.close()
    assert dialogs == ["beforeunload"]


def test_a_polygon_being_clicked_out_holds_keys_back_and_leaving_asks(browser, studio) -> None:
    """Corners clicked but not closed are work too: N, P and M keep them and say why, the Next
    button asks first (staying keeps them), and leaving the page asks."""
    project, url, image_id, _ = studio
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = open_correct(context, url, image_id, "polygon")
    cv = pg.locator("#correct-image canvas")
    click_corners(pg, View(pg), [(20.5, 20.5), (60.5, 25.5), (40.5, 60.5)])
    revision = project.image(image_id).revision
    for key in ("n", "p", "m"):
        pg.keyboard.press(key)
        expect(pg.locator("#correct-image .anncanvas-editinfo")).to_contain_text("close (Enter) or drop (Esc) the polygon")
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
    pg.click("#btn-next")
    expect(cv).to_have_attribute("data-corners", "3")
    assert dialogs and "the polygon being clicked out (3 corners) is not closed" in dialogs[0].lower(), dialogs
    pg.close(run_before_unload=True)
    pg.wait_for_timeout(500)
    context.close()
    assert dialogs[-1].startswith("beforeunload"), dialogs
    assert project.image(image_id).revision == revision and project.image(image_id).review_state != "reviewed"


def test_an_edit_drawn_on_another_image_is_refused(studio) -> None:
    project, _, image_id, (square, _) = studio
    before = project.store.annotation(square).mask
    state = SessionState(image_id=image_id)
    runs = canvas.mask_runs(np.ones((4, 4), bool), (0, 0, 4, 4))
    stale = canvas.MaskEdit(square, (0, 0, 4, 4), np.ones((4, 4), bool), image_id=image_id + 1)
    with pytest.raises(StudioError, match="another image"):
        correct_view.apply_edit(project, state, stale, "", project.image(image_id).revision)
    gone = canvas.read_edit({"target": 10**9, "box": [0, 0, 4, 4], "runs": runs})
    with pytest.raises(StudioError, match="no longer exists"):
        correct_view.apply_edit(project, state, gone, "", project.image(image_id).revision)
    assert np.array_equal(project.store.annotation(square).mask, before)
    with pytest.raises(NotFoundError):
        project.store.annotation(10**9)


LARGE = (3000, 4000)      # (H, W): a photo-sized image


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory):
    """(project, url, image id, rectangle id): one 4000x3000 image, its proposals already stored."""
    project = make_project(tmp_path_factory.mktemp("large"), num_images=1, size=LARGE)
    image_id = project.images()[0].id
    blobs = np.zeros((2, *LARGE), bool)
    blobs[0, 500:900, 600:1400] = True
    blobs[1, 2000:2600, 3000:3700] = True
    cats = [project.category_id(n) for n in project.class_names()[:2]]
    project.store.replace_predictions(image_id, blobs, cats, [0.9, 0.8], project.model.version,
                                      project.image(image_id).revision)
    [rect] = squares(project, image_id, [(1500, 1200)], (900, 700))
    with served(project) as url:
        yield project, url, image_id, rect


@pytest.mark.slow     # 20 s on a quiet machine, 100 s under load: making and serving a 12-megapixel image
def test_large_image_brush_and_polygon(browser, large) -> None:
    project, url, image_id, rect = large
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = open_correct(context, url, image_id, "brush", rect)
    cv = pg.locator("#correct-image canvas")
    before = project.store.annotation(rect).mask
    for _ in range(8):
        pg.keyboard.press("]")
    view = View(pg)
    got = stroke(pg, view, [(1400, 1100), (2000, 1500), (2600, 1300)])
    painted = before | stroke_pixels(LARGE, got, brush_radius(pg))
    apply_and_expect(pg, f"#{rect}: mask saved")
    stored = project.store.annotation(rect).mask
    assert np.array_equal(stored, painted), f"{int((stored ^ painted).sum())} pixels differ from the stroke"
    pg.locator("#tool label", has_text="polygon").click()
    zoom_in(pg, (2800, 520), notches=3)                      # about 6x: nearly one screen pixel a pixel
    corners = [(2700.5, 420.25), (2900.75, 450.5), (2880.0, 640.0), (2710.25, 600.75)]
    got = click_corners(pg, View(pg), corners)
    pg.keyboard.press("Enter")
    expect(pg.locator("#status")).to_contain_text("from a polygon")
    expect(cv).to_have_attribute("data-edit", "")
    drawn = newest(project, image_id).mask
    expected = polygon_pixels(LARGE, got)
    context.close()
    assert np.array_equal(drawn, expected), f"{int((drawn ^ expected).sum())} pixels differ"
