"""Seeded random sequences of real clicks and keys in the browser (Playwright's mouse and keyboard:
CDP input events), at a person's speed (150-300 ms apart) and faster (0-30 ms), checked after
each sequence against an independent model of the store and the screen.

``Person`` is a small state machine written here from the studio's promises, not from its code:
a click selects the topmost shown instance under the pointer (nothing there: no selection); A, R,
Delete, L and K act on the instance shown selected (none: nothing changes); a rejected instance
is shown while it is selected or "show rejected" is on; Shift+A accepts every shown proposal;
every action is one undo step of its image (undo / redo step whole actions; the model's
proposals are not undone); N and P open the next / previous image (wrapping) with nothing
selected. A sequence starts with N, P or nothing (then the page catches up: edits wait while an
image opens) and goes on with a quick burst of clicks and keys. After each sequence the store's
annotations (every image) and the canvas's states, selection, shown instances and image must be
the model's.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from test_app_browser import TIMEOUT, browser, expect_canvas  # noqa: F401 - fixture
from test_app_browser_draw import View
from test_app_browser_keys import settle
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect

SIZE = (240, 320)
# (x0, y0, w, h, score) of each image's proposals: five separate squares and a near-duplicate pair
# (same class, mask IoU 0.905: K keeps one); each is clicked at a pixel only it covers
SQUARES = [(15, 20, 60, 60, 0.9), (95, 20, 60, 60, 0.8), (175, 20, 60, 60, 0.7), (15, 130, 60, 60, 0.6),
           (95, 130, 60, 60, 0.55), (200, 130, 60, 60, 0.95), (203, 130, 60, 60, 0.92)]
POINTS = [(45, 50), (125, 50), (205, 50), (45, 160), (125, 160), (201, 160), (262, 160)]
KEYS = ["a", "r", "a", "r", "Delete", "l", "k", "Shift+A", "Control+z", "Control+y"]   # A and R twice as often


@dataclass
class Ann:
    state: str
    source: str = "predicted"


@dataclass
class Image:
    anns: dict[int, Ann]
    undo: list[dict[int, Ann]] = field(default_factory=list)
    redo: list[dict[int, Ann]] = field(default_factory=list)


class Person:
    """The model of the store and the screen (see the module docstring)."""

    def __init__(self, ids: dict[int, list[int]], show_rejected: bool) -> None:
        self.images = {i: Image({a: Ann("proposed") for a in anns}) for i, anns in ids.items()}
        self.ids, self.order = ids, list(ids)
        self.current, self.selected, self.last_click = self.order[0], None, None
        self.show_rejected = show_rejected

    @property
    def image(self) -> Image:
        return self.images[self.current]

    def shown(self) -> list[int]:
        """Ids drawn, top first (accepted first, then by score: the squares' order is their scores')."""
        anns, ids = self.image.anns, self.ids[self.current]
        order = sorted((k for k in range(len(ids)) if ids[k] in anns),
                       key=lambda k: (anns[ids[k]].state != "accepted", -SQUARES[k][4]))
        return [ids[k] for k in order if anns[ids[k]].state != "rejected" or self.show_rejected
                or ids[k] == self.selected]

    def click(self, k: int) -> None:
        ids = self.ids[self.current]
        x, y = POINTS[k]
        under = [a for a in self.shown() if inside(SQUARES[ids.index(a)], x, y)]
        again = self.last_click == (x, y) and self.selected in under
        self.selected = (under[(under.index(self.selected) + 1) % len(under)] if again
                         else (under[0] if under else None))
        self.last_click = (x, y)

    def edit(self, change: dict[int, Ann]) -> None:
        self.image.undo.append(copy.deepcopy(self.image.anns))
        self.image.redo.clear()
        self.image.anns.update(change)

    def key(self, key: str) -> None:
        img, sel = self.image, self.selected
        if key in ("Control+z", "Control+y"):
            source, target = (img.undo, img.redo) if key == "Control+z" else (img.redo, img.undo)
            if source:
                target.append(copy.deepcopy(img.anns))
                img.anns = source.pop()
            return
        if key == "Shift+A":
            todo = [a for a in self.shown() if img.anns[a].state == "proposed"]
            if todo:
                self.edit({a: Ann("accepted", img.anns[a].source) for a in todo})
            return
        if sel is None or sel not in img.anns:
            return
        ann = img.anns[sel]
        if key in ("a", "r"):
            self.edit({sel: Ann("accepted" if key == "a" else "rejected", ann.source)})
        elif key == "l":     # relabel (to the same class here): the class only; a proposal stays undecided, the person's
            claimed = ann.source == "predicted" and ann.state == "proposed"
            self.edit({sel: Ann(ann.state, "human" if claimed else ann.source)})
        elif key == "k":     # keep this one: its near-duplicates (proposed or accepted) rejected, it accepted
            ids = self.ids[self.current]
            dups = [a for a in self.shown() if a != sel and img.anns[a].state != "rejected"
                    and {ids.index(a), ids.index(sel)} == {5, 6}]
            if dups:
                change = {a: Ann("rejected", img.anns[a].source) for a in dups}
                if ann.state == "proposed":
                    change[sel] = Ann("accepted", ann.source)
                self.edit(change)
        elif key == "Delete":
            self.image.undo.append(copy.deepcopy(img.anns))
            img.redo.clear()
            del img.anns[sel]
            self.selected = None

    def move(self, step: int) -> None:
        self.current = self.order[(self.order.index(self.current) + step) % len(self.order)]
        self.selected, self.last_click = None, None


def inside(square: tuple, x: int, y: int) -> bool:
    x0, y0, w, h, _ = square
    return x0 <= x < x0 + w and y0 <= y < y0 + h


@pytest.fixture
def studio(tmp_path):
    """(project, url, ids): three images, each with SQUARES proposed by the current model (a fresh
    project for each run: its undo history starts empty)."""
    project = make_project(tmp_path, num_images=3, size=SIZE)
    masks = np.zeros((len(SQUARES), *SIZE), bool)
    for k, (x0, y0, w, h, _) in enumerate(SQUARES):
        masks[k, y0:y0 + h, x0:x0 + w] = True
    cid = project.category_id(project.class_names()[0])
    ids = {}
    for entry in project.images():
        ids[entry.id] = project.store.replace_predictions(entry.id, masks, [cid] * len(SQUARES),
                                                          [s[4] for s in SQUARES], project.model.version,
                                                          entry.revision)
    with served(project) as url:
        yield project, url, ids


def run(browser, studio, seed: int, sequences: int) -> None:
    """``sequences`` sequences with "show rejected" off, then as many with it on (a new page on the
    same project: the store and the model go on), half of them at a person's speed."""
    project, url, ids = studio
    rng = random.Random(seed)
    person = Person({i: list(a) for i, a in ids.items()}, False)
    log: list[str] = []
    for show_rejected in (False, True):
        person.show_rejected, person.selected, person.last_click = show_rejected, None, None
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            pg = context.new_page()
            pg.set_default_timeout(TIMEOUT)
            pg.goto(f"{url}?image={person.current}&tab=correct&t=0.3&rej={int(show_rejected)}")
            expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
            cv = expect_canvas(pg, "correct-image")
            for n in range(sequences):
                fast = (n + seed) % 2 == 0
                sequence(pg, rng, person, fast, log)
                settle(pg)
                check(project, cv, person, f"seed {seed}, show rejected {show_rejected}, sequence {n} "
                                           f"({'fast' if fast else 'human'}): " + " ".join(log))
                log.append("|")
        finally:
            context.close()


def sequence(pg, rng: random.Random, person: Person, fast: bool, log: list[str]) -> None:
    """N, P or nothing (then the page catches up), and a burst of 3-7 clicks and keys, each done to
    the page and to the model."""
    step = rng.choice([0, 0, 1, -1])
    if step:
        pg.keyboard.press("n" if step == 1 else "p")
        person.move(step)
        log.append("N" if step == 1 else "P")
        settle(pg)
    view = View(pg)
    for _ in range(rng.randint(3, 7)):
        pg.wait_for_timeout(rng.randint(0, 30) if fast else rng.randint(150, 300))
        if rng.random() < 0.3:
            k = rng.randrange(len(POINTS))
            pg.mouse.click(*view.page(POINTS[k][0] + 0.5, POINTS[k][1] + 0.5))
            person.click(k)
            log.append(f"click {k}")
        else:
            key = rng.choice(KEYS)
            pg.keyboard.press(key)
            person.key(key)
            log.append(key)


def check(project, cv, person: Person, what: str) -> None:
    for image_id, img in person.images.items():
        stored = {a.id: (a.state, a.source) for a in project.store.annotations(image_id, include_rejected=True)}
        want = {a: (ann.state, ann.source) for a, ann in img.anns.items()}
        assert stored == want, f"{what}: image {image_id} stored {stored}, the model says {want}"
    assert cv.get_attribute("data-token").split(":")[0] == str(person.current), what
    states = dict(s.split(":") for s in cv.get_attribute("data-states").split(",") if s)
    want_states = {str(a): ann.state for a, ann in person.image.anns.items()}
    assert states == want_states, f"{what}: the canvas draws {states}, the model says {want_states}"
    selected = "" if person.selected is None else str(person.selected)
    assert cv.get_attribute("data-selected") == selected, f"{what}: selected"
    shown = [s for s in cv.get_attribute("data-shown").split(",") if s]
    assert shown == [str(a) for a in person.shown()], f"{what}: shown {shown}, the model says {person.shown()}"


def test_random_clicks_and_keys_end_as_the_model_says(browser, studio) -> None:
    """Seed 3: among others, R then another key on the same selection with rejected hidden, twice."""
    run(browser, studio, seed=3, sequences=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 4, 5, 6, 7, 8, 9, 10])
def test_random_clicks_and_keys_long(browser, studio, seed) -> None:
    run(browser, studio, seed, sequences=10)
