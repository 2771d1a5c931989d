"""The annotation canvas in a real browser (headless Debian Chromium via Playwright): hover,
click-to-select with cycling through overlapping instances, zoom and pan, and the threshold filter
drawn in the browser; what the canvas shows is checked against the store, and every selection
must reach the server (the instance picker follows)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from app.inspect_view import visible_instances
from test_app_browser import TIMEOUT, browser, canvas_point, click_pixel, expect_canvas, set_number  # noqa: F401
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url, (top, below)): one predicted image with two overlapping hand-drawn squares."""
    project = make_project(tmp_path_factory.mktemp("canvas"), num_images=1, size=(240, 320))
    image_id = project.images()[0].id
    project.predict(image_id)
    ids = []
    for x0, y0 in ((200, 150), (230, 170)):
        mask = np.zeros((240, 320), bool)
        mask[y0:y0 + 50, x0:x0 + 60] = True
        ids.append(project.add_instance(image_id, mask, project.class_names()[0], project.image(image_id).revision))
    with served(project) as url:
        yield project, url, tuple(ids)


@pytest.fixture
def page(browser, studio):
    _, url, _ = studio
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    pg.goto(url)
    expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
    expect_canvas(pg, "inspect-image")
    yield pg
    context.close()


def under(project, x: int, y: int, min_score: float) -> list[int]:
    """Ids of the shown instances covering pixel (x, y), top first (the oracle for clicks)."""
    image_id = project.images()[0].id
    return [i.id for i in visible_instances(project.instances(image_id), min_score) if i.mask[y, x]]


def expect_selected(pg, ann_id: int) -> None:
    expect(pg.locator("#inspect-image canvas")).to_have_attribute("data-selected", str(ann_id))
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"^#{ann_id} "))


def test_hover_and_click_cycle_through_overlapping_instances(page, studio) -> None:
    project, _, (top, below) = studio
    canvas = page.locator("#inspect-image canvas")
    page.mouse.move(*canvas_point(page, "inspect-image", 210, 160))
    expect(canvas).to_have_attribute("data-hover", str(under(project, 210, 160, 0.5)[0]))
    stack = under(project, 240, 180, 0.5)          # where the squares overlap
    assert stack[:2] == [top, below]
    for k in range(len(stack) + 1):                # the same place again: the next one below, then round
        click_pixel(page, "inspect-image", 240, 180)
        expect_selected(page, stack[k % len(stack)])
    click_pixel(page, "inspect-image", 285, 215)   # a place only the lower square covers
    expect_selected(page, under(project, 285, 215, 0.5)[0])
    page.mouse.move(5, 5)
    expect(canvas).to_have_attribute("data-hover", "")


def test_zoom_and_pan_keep_clicks_on_the_right_pixel(page, studio) -> None:
    project, _, (top, below) = studio
    canvas = page.locator("#inspect-image canvas")
    before = canvas.get_attribute("data-view")
    page.mouse.move(*canvas_point(page, "inspect-image", 240, 180))
    page.mouse.wheel(0, -600)                      # zoom in around the overlap
    expect(canvas).not_to_have_attribute("data-view", before)
    scale = float(canvas.get_attribute("data-view").split(",")[0])
    assert scale > 2 * float(before.split(",")[0])
    x, y = canvas_point(page, "inspect-image", 240, 180)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 120, y - 60, steps=6)      # a drag pans, it does not select
    page.mouse.up()
    expect(canvas).to_have_attribute("data-selected", "")
    click_pixel(page, "inspect-image", 232, 172)   # one pixel inside the lower square's corner
    expect_selected(page, under(project, 232, 172, 0.5)[0])
    page.click("#inspect-image .anncanvas-fit")
    expect(canvas).to_have_attribute("data-view", before)


def test_threshold_and_show_rejected_are_drawn_in_the_browser(page, studio) -> None:
    project, _, _ = studio
    image_id = project.images()[0].id
    canvas = page.locator("#inspect-image canvas")
    for t in (0.05, 0.9, 0.3):
        set_number(page, "min-score", t)
        shown = visible_instances(project.instances(image_id), t)
        expect(canvas).to_have_attribute("data-shown", ",".join(str(i.id) for i in shown))
    proposal = next(i for i in visible_instances(project.instances(image_id), 0.3) if i.state == "proposed")
    page.locator("#instance-picker input").fill(f"#{proposal.id} ")   # pick it from the list
    page.locator("#instance-picker input").press("ArrowDown")
    page.locator("#instance-picker input").press("Enter")
    expect(canvas).to_have_attribute("data-selected", str(proposal.id))
    page.locator("#inspect-image .anncanvas-info").click()
    page.keyboard.press("r")
    expect(page.locator("#status")).to_contain_text("rejected")
    # rejected, it stays in sight while it is selected (a quick A after R acts on what is shown) ...
    expect(canvas).to_have_attribute("data-shown", re.compile(rf"(^|,){proposal.id}(,|$)"))
    expect(canvas).to_have_attribute("data-selected", str(proposal.id))
    assert not under(project, 2, 2, 0.3), "the test clicks a place no instance covers"
    click_pixel(page, "inspect-image", 2, 2)                 # ... and goes once the selection moves on
    expect(canvas).to_have_attribute("data-selected", "")
    expect(canvas).not_to_have_attribute("data-shown", re.compile(rf"(^|,){proposal.id}(,|$)"))
    page.locator("#show-rejected input").check()
    expect(canvas).to_have_attribute("data-shown", re.compile(rf"(^|,){proposal.id}(,|$)"))


def test_keys_work_on_the_inspect_canvas_and_the_class_picker_follows(page, studio) -> None:
    project, _, (top, below) = studio
    image_id = project.images()[0].id
    names = project.class_names()
    status = page.locator("#status")
    picker = page.locator("#class-picker input")
    # Enter in the confidence box applies the typed number (the server's table follows)
    box = page.locator("#min-score input[type=number]")
    box.fill("0.05")
    box.press("Enter")
    rows = len(visible_instances(project.instances(image_id), 0.05))
    expect(page.locator("#instance-table [role=grid]")).to_have_attribute("aria-rowcount", str(rows + 1))
    # the Class picker follows the selection, and L relabels with what it shows
    click_pixel(page, "inspect-image", 205, 155)            # only the top square there
    expect_selected(page, top)
    expect(picker).to_have_value(names[0])                 # the squares were drawn as the first class
    picker.fill(names[1])
    picker.press("ArrowDown")
    picker.press("Enter")
    page.locator("#inspect-image .anncanvas-info").click()
    page.keyboard.press("l")
    expect(status).to_contain_text(f"#{top}: {names[0]} → {names[1]}")
    click_pixel(page, "inspect-image", 285, 215)            # the lower square: its class shows
    expect_selected(page, below)
    expect(picker).to_have_value(names[0])
    click_pixel(page, "inspect-image", 205, 155)
    expect(picker).to_have_value(names[1])
    # A, Delete, Ctrl+Z and Shift+A on the Inspect view, pressed quickly
    proposal = next(i for i in visible_instances(project.instances(image_id), 0.05) if i.state == "proposed")
    page.locator("#instance-picker input").fill(f"#{proposal.id} ")
    page.locator("#instance-picker input").press("ArrowDown")
    page.locator("#instance-picker input").press("Enter")
    expect_selected(page, proposal.id)
    page.locator("#inspect-image .anncanvas-info").click()
    page.keyboard.press("a")
    expect(status).to_contain_text(f"#{proposal.id} {proposal.class_name}: accepted")
    page.keyboard.press("Delete")
    expect(status).to_contain_text(f"deleted #{proposal.id}")
    page.keyboard.press("Control+z")
    expect(status).to_contain_text("undo")
    assert project.store.annotation(proposal.id).state == "accepted"
    todo = [i for i in visible_instances(project.instances(image_id), 0.05) if i.state == "proposed"]
    page.keyboard.press("Shift+A")
    expect(status).to_contain_text(f"accept {len(todo)} shown proposals")
    assert all(project.store.annotation(i.id).state == "accepted" for i in todo)
    # "?" shows the shortcuts, Esc hides them
    overlay = page.locator("#keys-overlay")
    expect(overlay).to_be_hidden()
    page.keyboard.press("?")
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text("accept the selected instance")
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()
