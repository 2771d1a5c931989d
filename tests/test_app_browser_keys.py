"""The last key wins: quick sequences of real key presses (Playwright's keyboard, CDP input events)
on one selected instance end in the state of the last key, in the store and on the canvas, with
and without "show rejected"; the action lands on the instance the canvas shows selected.

The oracle is the sequence itself: A accepts, R rejects, Delete deletes, Ctrl+Z takes the last of
these back (a small stack kept here), whatever the server's answers to the earlier keys say.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from test_app_browser import TIMEOUT, browser, expect_canvas  # noqa: F401 - fixture
from test_app_browser_draw import View
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect

# the page has sent every action and shown every answer (the ordered queue is empty)
SETTLED = ("() => (!window.__studioOrder || window.__studioOrder.open.length <= 1) && "
           "!(window.__studioOutbox && window.__studioOutbox.length)")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url, points): two images, each with eight separate squares proposed by the current
    model; ``points`` maps image id to [(annotation id, (x, y) inside it)]."""
    project = make_project(tmp_path_factory.mktemp("keys"), num_images=2, size=(240, 320))
    masks = np.zeros((8, 240, 320), bool)
    for k in range(8):
        r, c = divmod(k, 4)
        masks[k, 20 + 110 * r:90 + 110 * r, 15 + 75 * c:75 + 75 * c] = True
    points = {}
    for entry in project.images():
        ids = project.store.replace_predictions(entry.id, masks, [project.category_id(project.class_names()[0])] * 8,
                                                [0.9] * 8, project.model.version, entry.revision)
        points[entry.id] = [(ann, (45 + 75 * (k % 4), 55 + 110 * (k // 4))) for k, ann in enumerate(ids)]
    with served(project) as url:
        yield project, url, points


def expected_state(keys: list[str]) -> str | None:
    """What the sequence leaves, from the keys alone: a state, or None (deleted)."""
    state, undo = "proposed", []
    for key in keys:
        if key == "Control+z":
            if undo:
                state = undo.pop()
            continue
        if state is None:
            continue                  # nothing selected any more: the key changes nothing
        undo.append(state)
        state = {"a": "accepted", "r": "rejected", "Delete": None}[key]
    return state


def settle(pg) -> None:
    """Wait until every press was sent and answered, and the page stayed so for a moment."""
    for _ in range(2):
        pg.wait_for_function(SETTLED, timeout=2 * TIMEOUT)
        pg.wait_for_timeout(400)


CASES = [   # (keys, gaps in ms before each key after the first)
    (["r", "a"], [300]),                                   # the report
    (["a", "r", "a"], [150, 150]),                         # within a second
    (["r", "a", "r", "a"], [0, 0, 0]),                     # faster than a person
    (["a", "r"], [0]),
    (["r", "a", "Control+z"], [0, 0]),                     # undo takes the accept back: rejected
    (["a", "Control+z"], [20]),
    (["Delete", "Control+z"], [150]),
    (["r", "Delete", "a"], [0, 0]),                        # after Delete, A has nothing to act on
]


@pytest.mark.parametrize("show_rejected", [False, True], ids=["hidden-rejected", "shown-rejected"])
def test_the_last_key_wins(browser, studio, show_rejected) -> None:
    """Each sequence on another of the image's squares, selected by a click."""
    project, url, points = studio
    image_id = list(points)[int(show_rejected)]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    wrong = []
    try:
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(f"{url}?image={image_id}&tab=correct&t=0.05&rej={int(show_rejected)}")
        expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
        cv = expect_canvas(pg, "correct-image")
        for (keys, gaps), (ann, (x, y)) in zip(CASES, points[image_id]):
            pg.mouse.click(*View(pg).page(x + 0.5, y + 0.5))
            expect(cv).to_have_attribute("data-selected", str(ann))
            expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"^#{ann} "))
            for key, gap in zip(keys, [0, *gaps]):
                if gap:
                    pg.wait_for_timeout(gap)
                pg.keyboard.press(key)
            settle(pg)
            want = expected_state(keys)
            stored = {a.id: a.state for a in project.store.annotations(image_id, include_rejected=True)}.get(ann)
            states = dict(s.split(":") for s in cv.get_attribute("data-states").split(",") if s)
            seen = (stored, states.get(str(ann)))
            if want is not None and "Delete" not in keys:   # the instance acted on stays selected and drawn
                seen += (cv.get_attribute("data-selected") == str(ann),
                         str(ann) in cv.get_attribute("data-shown").split(","))
            if seen != (want, want, True, True)[:len(seen)]:
                wrong.append(f"{'-'.join(keys)} (gaps {gaps} ms): store, canvas[, selected, drawn] = {seen}, "
                             f"the last key says {want}; status {pg.inner_text('#status')!r}")
    finally:
        context.close()
    assert not wrong, "\n".join(wrong)
