"""Seeded random sequences of real clicks and keys in the browser (Playwright's mouse and keyboard:
CDP input events), at a person's speed (150-300 ms apart) and faster (0-30 ms), checked after
each sequence against an independent model of the store and the screen.

``Person`` is a small state machine written here from the studio's promises, not from its code:
a click selects the topmost shown instance under the pointer (nothing there: no selection); A, R,
Delete, L and K act on the instance shown selected (none: nothing changes); a rejected instance
is shown while it is selected or "show rejected" is on; Shift+A accepts every shown proposal;
every action is one undo step of its image (undo / redo step whole actions; the model's
proposals are not undone); N and P open the next / previous image (wrapping) with nothing
selected. The drawing tools (README's Correct row, ``app.correct_view``'s docstrings): B, a brush
stroke and Enter grows the selected instance's mask by the stroke (the pixels whose centre lies
within the brush radius of the stroke, as ``test_app_browser_draw`` checks), one undo step, and a
proposal a person brushes becomes theirs, accepted (a stroke that changes nothing is refused and
kept: the person presses Esc); the brush with nothing selected says so and stores nothing; a
polygon clicked out and closed with Enter is a new accepted instance of the person's, selected,
unless it near-duplicates an accepted object (mask IoU >= 0.9): that object is selected instead,
nothing is stored and the person drops the polygon with Esc; the query tool clicked inside an
accepted object selects it. A sequence starts with N, P or nothing (then the page catches up:
edits wait while an image opens) and goes on with a quick burst of clicks, keys and tool actions.
After each sequence the store's annotations (every image: state, source, mask) and the canvas's
states, selection, shown instances and image must be the model's (a new instance's id is the
store's: the model's new instances are matched to the ids the store added, in order).
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from test_app_browser import TIMEOUT, browser, expect_canvas  # noqa: F401 - fixture
from test_app_browser_draw import View, brush_radius, choose, polygon_pixels, stroke, stroke_pixels
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


# polygons clicked out in the strip below the squares (image points): two overlap in part (IoU 0.43)
POLYGONS = [[(20.5, 200.5), (70.5, 200.5), (70.5, 234.5), (20.5, 234.5)],
            [(120.5, 200.5), (170.5, 203.5), (165.5, 234.5), (120.5, 232.5)],
            [(100.5, 198.5), (150.5, 198.5), (150.5, 230.5), (100.5, 230.5)]]
DUP_IOU = 0.9       # the session's near-duplicate setting (its default)
NEW = 10 ** 6       # the model's ids of the instances a person adds: NEW, NEW + 1, ... (see ``check``)


@dataclass
class Ann:
    state: str
    source: str = "predicted"
    mask: np.ndarray = field(default_factory=lambda: np.zeros(SIZE, bool))
    score: float | None = None


@dataclass
class Image:
    anns: dict[int, Ann]
    undo: list[dict[int, Ann]] = field(default_factory=list)
    redo: list[dict[int, Ann]] = field(default_factory=list)


def square_mask(k: int) -> np.ndarray:
    x0, y0, w, h, _ = SQUARES[k]
    mask = np.zeros(SIZE, bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


class Person:
    """The model of the store and the screen (see the module docstring)."""

    def __init__(self, ids: dict[int, list[int]], show_rejected: bool) -> None:
        self.images = {i: Image({a: Ann("proposed", mask=square_mask(k), score=SQUARES[k][4])
                                 for k, a in enumerate(anns)}) for i, anns in ids.items()}
        self.ids, self.order = ids, list(ids)
        self.current, self.selected, self.last_click = self.order[0], None, None
        self.show_rejected, self.added, self.inside_ok = show_rejected, 0, None

    @property
    def image(self) -> Image:
        return self.images[self.current]

    def shown(self) -> list[int]:
        """Ids drawn, top first: accepted first, then by score (a person's: 1), then by id."""
        anns = self.image.anns
        order = sorted(anns, key=lambda a: (anns[a].state != "accepted",
                                            -(1.0 if anns[a].score is None else anns[a].score), a))
        return [a for a in order if anns[a].state != "rejected" or self.show_rejected or a == self.selected]

    def under(self, x: float, y: float) -> list[int]:
        """Shown ids covering image point (x, y), top first."""
        return [a for a in self.shown() if self.image.anns[a].mask[int(y), int(x)]]

    def click(self, x: float, y: float) -> None:
        under = self.under(x, y)
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
                self.edit({a: Ann("accepted", img.anns[a].source, img.anns[a].mask, img.anns[a].score) for a in todo})
            return
        if sel is None or sel not in img.anns:
            return
        ann = img.anns[sel]
        if key in ("a", "r"):
            self.edit({sel: Ann("accepted" if key == "a" else "rejected", ann.source, ann.mask, ann.score)})
        elif key == "l":     # relabel (to the same class here): the class only; a proposal stays undecided, the person's
            claimed = ann.source == "predicted" and ann.state == "proposed"
            self.edit({sel: Ann(ann.state, "human" if claimed else ann.source, ann.mask, ann.score)})
        elif key == "k":     # keep this one: its near-duplicates (proposed or accepted, one class) rejected, it accepted
            dups = [a for a in self.shown() if a != sel and img.anns[a].state != "rejected"
                    and iou(img.anns[a].mask, ann.mask) >= DUP_IOU]
            if dups:
                change = {a: Ann("rejected", img.anns[a].source, img.anns[a].mask, img.anns[a].score) for a in dups}
                if ann.state == "proposed":
                    change[sel] = Ann("accepted", ann.source, ann.mask, ann.score)
                self.edit(change)
        elif key == "Delete":
            self.image.undo.append(copy.deepcopy(img.anns))
            img.redo.clear()
            del img.anns[sel]
            self.selected = None

    def brush(self, painted: np.ndarray) -> bool:
        """Brush strokes painting ``painted`` (H, W bool), then Enter; False when they are refused
        and kept (they change nothing), for the person to discard. Nothing selected: nothing."""
        ann = self.image.anns.get(self.selected)
        if ann is None:
            return True
        mask = ann.mask | painted
        if (mask == ann.mask).all():
            return False
        adopted = ann.source == "predicted" and ann.state == "proposed"
        self.edit({self.selected: Ann("accepted" if adopted else ann.state, "human" if adopted else ann.source,
                                      mask, ann.score)})
        return True

    def polygon(self, mask: np.ndarray) -> bool:
        """A polygon filling ``mask`` closed with Enter; False when it is not stored (a near-duplicate
        of an accepted object, then selected; or inside one, asked once), for the person to drop."""
        accepted = [(a, ann) for a, ann in sorted(self.image.anns.items()) if ann.state == "accepted"]
        twin = max(((iou(mask, ann.mask), a) for a, ann in accepted), default=(0.0, None))
        if twin[0] >= DUP_IOU:
            self.selected = twin[1]
            return False
        area = int(mask.sum())
        outer = max((((mask & ann.mask).sum(), a) for a, ann in accepted), default=(0, None))
        if outer[0] >= 0.9 * area and self.inside_ok != outer[1]:
            self.inside_ok = outer[1]
            return False
        new = NEW + self.added
        self.added += 1
        self.edit({new: Ann("accepted", "human", mask, None)})
        self.selected = new
        return True

    def query(self, x: float, y: float) -> bool:
        """The query tool clicked at (x, y): inside an accepted object it selects it (True); elsewhere
        the model's proposal there is not the model's to know (False: the person does not click there)."""
        inside = [a for a, ann in sorted(self.image.anns.items())
                  if ann.state == "accepted" and ann.mask[int(y), int(x)]]
        if len(inside) != 1:
            return False
        self.selected = inside[0]
        return True

    def move(self, step: int) -> None:
        self.current = self.order[(self.order.index(self.current) + step) % len(self.order)]
        self.selected, self.last_click = None, None


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


def run(browser, studio, seed: int, sequences: int, tools: bool = False) -> list[str]:
    """``sequences`` sequences with "show rejected" off, then as many with it on (a new page on the
    same project: the store and the model go on), half of them at a person's speed; ``tools``:
    brush, polygon and query actions among the clicks and keys."""
    project, url, ids = studio
    rng = random.Random(seed)
    person = Person({i: list(a) for i, a in ids.items()}, False)
    log: list[str] = []
    for show_rejected in (False, True):
        person.show_rejected, person.selected, person.last_click = show_rejected, None, None
        person.inside_ok = None                                   # a new page is a new session
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            pg = context.new_page()
            pg.set_default_timeout(TIMEOUT)
            pg.goto(f"{url}?image={person.current}&tab=correct&t=0.3&rej={int(show_rejected)}")
            expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
            cv = expect_canvas(pg, "correct-image")
            for n in range(sequences):
                fast = (n + seed) % 2 == 0
                sequence(pg, rng, person, fast, log, tools)
                settle(pg)
                check(project, cv, person, f"seed {seed}, show rejected {show_rejected}, sequence {n} "
                                           f"({'fast' if fast else 'human'}): " + " ".join(log)
                      + f" [status: {pg.locator('#status').inner_text()}]")
                log.append("|")
        finally:
            context.close()
    return log


def sequence(pg, rng: random.Random, person: Person, fast: bool, log: list[str], tools: bool) -> None:
    """N, P or nothing (then the page catches up), and a burst of 3-7 clicks, keys (and with
    ``tools`` tool actions), each done to the page and to the model."""
    step = rng.choice([0, 0, 1, -1])
    if step:
        pg.keyboard.press("n" if step == 1 else "p")
        person.move(step)
        log.append("N" if step == 1 else "P")
        settle(pg)
    view = View(pg)
    gap = (lambda: rng.randint(0, 30)) if fast else (lambda: rng.randint(150, 300))  # noqa: E731
    for _ in range(rng.randint(3, 7)):
        pg.wait_for_timeout(gap())
        if tools and rng.random() < 0.25:
            log.append(rng.choice([brush, brush, polygon, query])(pg, rng, person, gap))
            view = View(pg)
        elif rng.random() < 0.3:
            k = rng.randrange(len(POINTS))
            pg.mouse.click(*view.page(POINTS[k][0] + 0.5, POINTS[k][1] + 0.5))
            person.click(POINTS[k][0] + 0.5, POINTS[k][1] + 0.5)
            log.append(f"click {k}")
        else:
            key = rng.choice(KEYS)
            pg.keyboard.press(key)
            person.key(key)
            log.append(key)


def brush(pg, rng: random.Random, person: Person, gap) -> str:
    """B, a stroke from inside the selected mask (nothing selected: from a square) out into the
    space between the rows, Enter (Esc when the strokes are refused), back to the select tool."""
    ann = person.image.anns.get(person.selected)
    what = "brush" if ann is not None else "brush (none selected)"
    if ann is None:
        x, y = POINTS[rng.randrange(len(POINTS))]
    else:
        ys, xs = np.nonzero(ann.mask)
        x, y = float(xs.mean()), float(ys.mean())
    end = (x + rng.uniform(-8, 8), y + (35 if y < 105 else -35))
    pg.keyboard.press("b")
    view = View(pg)
    got = stroke(pg, view, [(x, y), ((x + end[0]) / 2, (y + end[1]) / 2), end])
    painted = stroke_pixels(SIZE, got, brush_radius(pg))
    pg.wait_for_timeout(gap())
    pg.keyboard.press("Enter")
    kept = not person.brush(painted)
    if kept:
        pg.wait_for_timeout(gap())
        pg.keyboard.press("Escape")
    choose(pg, "select")
    return f"{what} ({x:.0f}, {y:.0f})->({end[0]:.0f}, {end[1]:.0f}) Enter" + (" Esc" if kept else "")


def polygon(pg, rng: random.Random, person: Person, gap) -> str:
    """The polygon tool, one of POLYGONS clicked out quickly, Enter (Esc when it is not stored),
    back to the select tool."""
    j = rng.randrange(len(POLYGONS))
    choose(pg, "polygon")
    view = View(pg)
    points = [view.page(x, y) for x, y in POLYGONS[j]]
    for p in points:
        pg.mouse.click(*p, delay=20)
        pg.wait_for_timeout(gap())
    pg.keyboard.press("Enter")
    dropped = not person.polygon(polygon_pixels(SIZE, [view.image(*p) for p in points]))
    if dropped:
        pg.wait_for_timeout(gap())
        pg.keyboard.press("Escape")
    choose(pg, "select")
    return f"polygon {j} Enter" + (" Esc" if dropped else "")


def query(pg, rng: random.Random, person: Person, gap) -> str:
    """The query tool clicked at one of POINTS inside exactly one accepted object (the person looks;
    none there: no click), back to the select tool."""
    choose(pg, "query")
    view = View(pg)
    inside = [(x + 0.5, y + 0.5) for x, y in POINTS
              if sum(ann.state == "accepted" and ann.mask[y, x] for ann in person.image.anns.values()) == 1]
    if inside:
        x, y = rng.choice(inside)
        pg.mouse.click(*view.page(x, y))
        assert person.query(x, y)
        person.last_click = (x, y)
        pg.wait_for_timeout(gap())
    choose(pg, "select")
    return f"query ({x:.0f}, {y:.0f})" if inside else "query -"


def check(project, cv, person: Person, what: str) -> None:
    name = {}                                   # the model's new ids -> the store's
    for image_id, img in person.images.items():
        anns = {a.id: a for a in project.store.annotations(image_id, include_rejected=True)}
        added = sorted(a for a in anns if a not in person.ids[image_id])
        mine = sorted(a for a in img.anns if a >= NEW)
        assert len(added) == len(mine), f"{what}: image {image_id} the store added {added}, the model {mine}"
        name.update(zip(mine, added))
        stored = {a: (ann.state, ann.source) for a, ann in anns.items()}
        want = {name.get(a, a): (ann.state, ann.source) for a, ann in img.anns.items()}
        assert stored == want, f"{what}: image {image_id} stored {stored}, the model says {want}"
        for a, ann in img.anns.items():
            got = project.store.annotation(name.get(a, a)).mask
            assert np.array_equal(got, ann.mask), \
                (f"{what}: image {image_id} #{name.get(a, a)}: {int((got & ~ann.mask).sum())} pixels stored only, "
                 f"{int((ann.mask & ~got).sum())} in the model only (the canvas: unsaved "
                 f"{cv.get_attribute('data-unsaved')}, edit {cv.get_attribute('data-edit')!r})")
    assert cv.get_attribute("data-token").split(":")[0] == str(person.current), what
    states = dict(s.split(":") for s in cv.get_attribute("data-states").split(",") if s)
    want_states = {str(name.get(a, a)): ann.state for a, ann in person.image.anns.items()}
    assert states == want_states, f"{what}: the canvas draws {states}, the model says {want_states}"
    selected = "" if person.selected is None else str(name.get(person.selected, person.selected))
    assert cv.get_attribute("data-selected") == selected, f"{what}: selected"
    shown = [s for s in cv.get_attribute("data-shown").split(",") if s]
    want_shown = [str(name.get(a, a)) for a in person.shown()]
    assert shown == want_shown, f"{what}: shown {shown}, the model says {want_shown}"


def test_random_clicks_and_keys_end_as_the_model_says(browser, studio) -> None:
    """Seed 3: among others, R then another key on the same selection with rejected hidden, twice."""
    run(browser, studio, seed=3, sequences=3)


def test_random_clicks_keys_and_tools_end_as_the_model_says(browser, studio) -> None:
    """Brush, polygon and query actions among quick clicks and keys (seed 11: keys right
    after choosing a tool on the toolbar, a brush with nothing selected, a polygon near-duplicating
    an accepted one, a query click inside an accepted object)."""
    log = " ".join(run(browser, studio, seed=11, sequences=3, tools=True))
    print(log)
    for done in ("brush (4", "brush (none selected)", "polygon 0 Enter a", "Enter Esc", "query ("):
        assert done in log, f"seed 11 no longer does {done!r}: {log}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 4, 5, 6, 7, 8, 9, 10])
def test_random_clicks_and_keys_long(browser, studio, seed) -> None:
    run(browser, studio, seed, sequences=10)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [12, 13, pytest.param(14, marks=pytest.mark.xfail(strict=True, reason=(
    "open: in the last sequence (show rejected on) 'click 0, B, stroke (44, 50)->(46, 84), Enter, polygon "
    "tool, polygon 0, Enter, Esc' at a person's speed leaves #1 without the 109 stroked pixels and no open "
    "strokes: the applied stroke is lost (app bug or a model gap, not yet told apart)"))), 15, 16, 17])
def test_random_clicks_keys_and_tools_long(browser, studio, seed) -> None:
    run(browser, studio, seed, sequences=10, tools=True)
