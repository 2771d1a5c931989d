"""A person's labeling work in a real browser (headless Debian Chromium via Playwright): rapid key
presses, predict-again, mark-reviewed questions, undo of a bulk action, reload, two tabs, model
versions, adding images. Each test checks what the page shows against what the store holds and
exports (read back with pycocotools)."""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.inspect_view import visible_instances
from app.project import file_version
from test_app_browser import TIMEOUT, browser, click_pixel, expect_canvas, inner_pixel, shot  # noqa: F401 - fixture
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect
REVIEWED = re.compile(r"(?<!un)reviewed")
SWITCH = 3 * TIMEOUT  # ms: a model switch loads a checkpoint and predicts, behind earlier work in the queue


def second_model(folder: Path, class_names: list[str], seed: int) -> Path:
    """Another real checkpoint with the same classes (freshly initialised tiny FastInst)."""
    import torch
    from fastinst import build_model, save_checkpoint
    torch.manual_seed(seed)
    path = folder / f"other_{seed}.safetensors"
    save_checkpoint(path, build_model("tiny", num_classes=len(class_names)), preset="tiny",
                    class_names=class_names)
    return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, url) of a served 6-image project that nothing has predicted yet."""
    folder = tmp_path_factory.mktemp("work")
    project = make_project(folder, num_images=6, size=(240, 320), seed=11)
    with served(project) as url:
        yield project, url


# records the header's text at every change (``window.__headers``)
HEADERS_SEEN = """() => { const el = document.getElementById('review-state'); window.__headers = [];
  new MutationObserver(() => window.__headers.push(el.innerText))
    .observe(el, {subtree: true, childList: true, characterData: true}); }"""


def open_page(context, url: str, query: str = ""):
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT)
    pg.goto(url + query)
    expect(pg.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
    # the load event ran ... (it waits in the one model queue behind earlier work: as long as the page itself)
    expect(pg.locator("#status")).to_contain_text("opened", timeout=2 * TIMEOUT)
    expect(pg.locator("#status")).not_to_contain_text("predicting")      # ... to its end
    return pg


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1200})
    yield ctx
    ctx.close()


def exported(project, tmp_path: Path, file_name: str) -> list[tuple[int, np.ndarray]]:
    """(category id, mask) of every annotation the store exports for one reviewed image."""
    doc = json.loads(project.store.export_coco(project.dataset_id, tmp_path / "e.json", only_reviewed=True)
                     .read_text())
    image = next(i for i in doc["images"] if i["file_name"] == file_name)
    return [(a["category_id"], mask_utils.decode(a["segmentation"]).astype(bool))
            for a in doc["annotations"] if a["image_id"] == image["id"]]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def table_ids(pg) -> list[int]:
    """The ids in the instance table's first column, as the page shows them."""
    cells = pg.locator("#instance-table tbody tr td:first-child").all_inner_texts()
    return [int(c) for c in cells if c.strip().isdigit()]


def test_rapid_next_presses_predict_every_visited_image(context, studio, tmp_path) -> None:
    project, url = studio
    pg = open_page(context, url)
    images = project.images()
    expect(pg.locator("#review-state")).to_contain_text(images[0].file_name)
    pg.locator("#inspect-image .anncanvas-info").click()
    pg.evaluate(HEADERS_SEEN)
    for _ in range(4):                       # a person pressing N four times, 150 ms apart
        pg.keyboard.press("n")
        pg.wait_for_timeout(150)
    last = images[4]
    expect(pg.locator("#review-state")).to_contain_text(last.file_name)
    expect(pg.locator("#status")).to_contain_text(re.compile(rf"opened {last.file_name} · \d+ proposals from"))
    # every header the page showed on the way, in order: never an image behind one already shown
    names = [e.file_name for e in images]
    seen = [names.index(m) for text in pg.evaluate("window.__headers")
            for m in re.findall(r"\d+\.png", text) if m in names]
    assert seen == sorted(seen), f"the header went back: {[names[i] for i in seen]}"
    version = project.model.version
    for entry in images[:5]:
        assert project.was_predicted(entry.id), f"{entry.file_name} was visited but never predicted"
        runs = [e for e in project.store.history(entry.id) if e.action == "replace_predictions"]
        assert len(runs) == 1, f"{entry.file_name}: predicted {len(runs)} times by one version"
    shown = visible_instances(project.instances(last.id), 0.5)
    assert all(i.model_version == version for i in shown)
    expect(pg.locator("#instance-table [role=grid]")).to_have_attribute("aria-rowcount", str(len(shown) + 1))
    # accept what is shown, reject the rest, and the export is exactly what was shown
    pg.click("#tab-correct-button")
    expect_canvas(pg, "correct-image")
    pg.keyboard.press("Shift+A")
    expect(pg.locator("#status")).to_contain_text(f"accept {len(shown)} shown proposals")
    pg.keyboard.press("m")
    if any(i.state == "proposed" for i in project.instances(last.id)):
        expect(pg.locator("#ask-text")).to_contain_text("undecided")
        pg.click("#btn-ask-undecided-reject")
    expect(pg.locator("#review-state")).to_contain_text(REVIEWED)
    got = exported(project, tmp_path, last.file_name)
    assert len(got) == len(shown)
    for inst in shown:
        assert any(cat == inst.category_id and np.array_equal(m, inst.mask) for cat, m in got)


@pytest.mark.xfail(strict=False, reason="flaky since the presses' page queue landed: on a quiet machine the reload "
                   "sometimes goes through without asking and the waiting presses are lost (2 of 3 runs at the "
                   "session's end, also without its last canvas change); cause not found, issue 20 stays open")
def test_leaving_while_presses_wait_to_be_sent_asks_first(context, studio) -> None:
    """Quick presses wait in the page until the frame that draws them (``app.canvas``'s outbox) and
    the answer to the one before is shown (``app.event_order``): a reload right after them asks
    first; staying, every press is handled."""
    project, url = studio
    pg = open_page(context, url)
    images = project.images()
    expect(pg.locator("#review-state")).to_contain_text(images[0].file_name)
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    waiting = pg.evaluate("""async () => {
        for (const key of ['n', 'n', 'n']) document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
        await new Promise((resolve) => setTimeout(resolve, 0));
        return window.__studioOrder.open.length - 1 + window.__studioOutbox.length; }""")   # (the outbox: app/canvas.py)
    assert waiting >= 1, "no press was waiting: the reload below tests nothing"
    pg.evaluate("() => { setTimeout(() => location.reload(), 0); }")
    expect(pg.locator("#review-state")).to_contain_text(images[3].file_name)   # stayed: all three handled
    assert dialogs == ["beforeunload"]
    expect(pg.locator("#status")).to_contain_text(re.compile(rf"opened {images[3].file_name}"))


def test_choosing_another_image_in_the_picker_with_corners_open_asks_first(context, studio) -> None:
    """Polygon corners clicked but not closed: choosing another image in the Image picker asks
    first (found by a new-user helper: the corners were dropped without a word); staying keeps
    them and the image."""
    from test_app_browser_draw import View, click_corners
    project, url = studio
    entry = project.images()[0]
    pg = open_page(context, url, f"?image={entry.id}&tab=correct&tool=polygon")
    expect(pg.locator("#tool input[value=polygon]")).to_be_checked()
    cv = expect_canvas(pg, "correct-image")
    click_corners(pg, View(pg), [(20.5, 20.5), (80.5, 20.5), (60.5, 70.5)])
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.click("#image-picker input")
    pg.locator("ul[role=listbox] li").nth(2).click()
    pg.wait_for_timeout(500)
    assert dialogs and "the polygon being clicked out (3 corners) is not closed" in dialogs[0].lower(), dialogs
    expect(cv).to_have_attribute("data-corners", "3")
    expect(pg.locator("#review-state")).to_contain_text(entry.file_name)


def test_presses_the_server_never_takes_are_said_to_be_unsaved(context, tmp_path) -> None:
    """The studio stops while a person works (found by a new-user helper: presses after that were
    lost with only Gradio's "connection lost" toast): presses left waiting are said on the page
    to be not saved, after ``STALLED_MS``."""
    from app.event_order import STALLED_MS
    project = make_project(tmp_path, num_images=3, size=(120, 160), seed=3)
    with served(project) as url:
        pg = open_page(context, url)
        note = pg.locator("#order-stalled")
        pg.keyboard.press("n")                                  # a press the server answers: no note
        expect(pg.locator("#review-state")).to_contain_text(project.images()[1].file_name)
        pg.wait_for_timeout(STALLED_MS + 500)
        expect(note).to_have_count(0)
    pg.keyboard.press("n")                                      # the studio has stopped
    pg.keyboard.press("n")
    expect(note).to_contain_text("not saved", timeout=STALLED_MS + 15_000)
    expect(note).to_contain_text("waiting for the server")


def test_predict_again_after_accept_adds_no_duplicate(context, studio, tmp_path) -> None:
    project, url = studio
    entry = project.images()[1]
    pg = open_page(context, url, f"?image={entry.id}&tab=correct&t=0.3")
    expect(pg.locator("#review-state")).to_contain_text(entry.file_name)
    shown = visible_instances(project.instances(entry.id), 0.3)
    masks = np.stack([i.mask for i in shown])
    k, point = next((k, p) for k in range(len(shown)) if (p := inner_pixel(masks, k)) is not None)
    click_pixel(pg, "correct-image", *point)
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"#{shown[k].id} "))
    pg.keyboard.press("a")
    expect(pg.locator("#status")).to_contain_text("accepted")
    pg.click("#btn-predict")
    expect(pg.locator("#status")).to_contain_text("matched your decided annotations")
    pg.keyboard.press("Shift+A")
    expect(pg.locator("#status")).to_contain_text("accept")
    pg.keyboard.press("m")
    expect(pg.locator("#ask-undecided, #review-state").first).to_be_visible()
    if any(i.state == "proposed" for i in project.instances(entry.id)):
        pg.click("#btn-ask-undecided-reject")
    expect(pg.locator("#review-state")).to_contain_text(REVIEWED)
    accepted = shown[k].mask
    twins = [m for _, m in exported(project, tmp_path, entry.file_name) if iou(m, accepted) > 0.9]
    assert len(twins) == 1, f"{len(twins)} exported masks are the accepted one (IoU > 0.9)"


def test_a_key_pressed_before_the_page_caught_up_changes_nothing(context, studio) -> None:
    project, url = studio
    here, there = project.images()[2], project.images()[3]
    project.predict(there.id)                  # predicted already: N can draw it at once
    pg = open_page(context, url, f"?image={here.id}&tab=correct&t=0.05")
    pg.locator("#correct-image").click()
    before = {e: [(a.id, a.state) for a in project.store.annotations(e, include_rejected=True)]
              for e in (here.id, there.id)}
    # the person looks at the image a moment: the next one is loaded ahead, so N draws it at once
    expect(pg.locator("#correct-image canvas")).to_have_attribute("data-ahead", re.compile(rf"next:{there.id}:"))
    pg.keyboard.press("n")                     # next image, and at once accept all shown
    pg.keyboard.press("Shift+A")
    # refused in the browser while the next image opens, or by the server for the page's place
    refused = re.compile("still opening: nothing was changed|the page was behind")
    expect(pg.locator("#correct-image .anncanvas-editinfo, #status").filter(has_text=refused).first).to_contain_text(refused)
    expect(pg.locator("#review-state")).to_contain_text(there.file_name)
    after = {e: [(a.id, a.state) for a in project.store.annotations(e, include_rejected=True)]
             for e in (here.id, there.id)}
    assert after[here.id] == before[here.id]
    # the opened image is predicted (its proposals are new), but nothing on it was accepted
    assert set(before[there.id]) <= set(after[there.id]), "changed an image nobody saw"
    assert all(state == "proposed" for _, state in set(after[there.id]) - set(before[there.id]))


def test_mark_reviewed_asks_and_the_export_follows_the_answer(context, studio, tmp_path) -> None:
    project, url = studio
    first, second = project.images()[2], project.images()[3]
    pg = open_page(context, url, f"?image={first.id}&t=0.5")
    undecided = [i for i in project.instances(first.id) if i.state == "proposed"]
    assert undecided, "the model proposes something on this image"
    pg.locator("#inspect-image .anncanvas-info").click()
    pg.keyboard.press("m")
    expect(pg.locator("#ask-text")).to_contain_text(f"{len(undecided)} proposals are undecided")
    pg.click("#btn-ask-undecided-cancel")                      # cancel: nothing changes
    expect(pg.locator("#status")).to_contain_text("cancelled")
    assert project.image(first.id).review_state != "reviewed"
    pg.keyboard.press("m")
    pg.click("#btn-ask-undecided-accept")                      # accept those >= threshold
    expect(pg.locator("#review-state")).to_contain_text(REVIEWED)
    above = [i for i in undecided if i.score >= 0.5]
    got = exported(project, tmp_path, first.file_name)
    assert len(got) == len(above)
    for inst in above:
        assert any(np.array_equal(m, inst.mask) for _, m in got)
    # the other image: reject them all -> "reviewed, no objects", exported with none
    pg = open_page(context, url, f"?image={second.id}")
    expect(pg.locator("#review-state")).to_contain_text(second.file_name)
    assert [i for i in project.instances(second.id) if i.state == "proposed"]
    pg.locator("#inspect-image .anncanvas-info").click()
    pg.keyboard.press("m")
    pg.click("#btn-ask-undecided-reject")
    expect(pg.locator("#review-state")).to_contain_text("reviewed, no objects")
    assert exported(project, tmp_path, second.file_name) == []
    shot(pg, "work-review-question")


def test_one_undo_reverts_a_bulk_accept(context, studio) -> None:
    project, url = studio
    entry = project.images()[0]
    pg = open_page(context, url, f"?image={entry.id}&tab=correct&t=0.05")
    before = {i.id: i.state for i in project.instances(entry.id)}
    todo = [i for i in visible_instances(project.instances(entry.id), 0.05) if i.state == "proposed"]
    assert len(todo) >= 2
    pg.locator("#correct-image .anncanvas-info").click()
    pg.keyboard.press("Shift+A")
    expect(pg.locator("#status")).to_contain_text(f"accept {len(todo)} shown proposals")
    pg.keyboard.press("Control+z")
    expect(pg.locator("#status")).to_contain_text(f"undo: accept {len(todo)} shown proposals")
    assert {i.id: i.state for i in project.instances(entry.id)} == before
    pg.click("#tab-inspect-button")                             # switching views keeps the message
    expect_canvas(pg, "inspect-image")
    expect(pg.locator("#status")).to_contain_text(f"undo: accept {len(todo)} shown proposals")
    pg.click("#tab-correct-button")
    pg.keyboard.press("Control+y")
    expect(pg.locator("#status")).to_contain_text(f"redo: accept {len(todo)} shown proposals")
    assert all(project.store.annotation(i.id).state == "accepted" for i in todo)


def test_reload_keeps_the_place_and_two_tabs_keep_their_own(context, studio) -> None:
    project, url = studio
    entry, other = project.images()[4], project.images()[0]
    pg = open_page(context, url, f"?image={entry.id}")
    pg.click("#tab-correct-button")
    box = pg.locator("#min-score input[type=number]")
    box.fill("0.3")
    box.press("Tab")
    pg.locator("#tool label", has_text="polygon").click()
    chosen = visible_instances(project.instances(entry.id), 0.3)[0].id
    pg.locator("#instance-picker input").click()
    pg.get_by_role("option", name=re.compile(f"^#{chosen} ")).click()
    expect(pg).to_have_url(re.compile(f"sel={chosen}"))
    expect(pg).to_have_url(re.compile("tool=polygon"))
    second = open_page(context, url, f"?image={other.id}")        # another tab, another image
    pg.reload()
    expect(pg.locator("#review-state")).to_contain_text(entry.file_name)
    expect(pg.locator("#tab-correct-button")).to_have_attribute("aria-selected", "true")
    expect(pg.locator("#min-score input[type=number]")).to_have_value("0.3")
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"#{chosen} "))
    expect(pg.locator("#tool input[value=polygon]")).to_be_checked()
    second.reload()
    expect(second.locator("#review-state")).to_contain_text(other.file_name)
    expect(pg.locator("#review-state")).to_contain_text(entry.file_name)


def test_model_versions_switch_there_and_back(context, studio, tmp_path) -> None:
    project, url = studio
    names = list(project.model.predictor.class_names)
    original = project.model.version
    better, worse = second_model(tmp_path, names, 1), second_model(tmp_path, names, 2)
    for path, ap in ((better, 30.0), (worse, 10.0)):
        project.store.record_model_version(file_version(path), str(path), {"held_out_ap": ap})
    entry = project.images()[5]
    pg = open_page(context, url, f"?image={entry.id}")
    header = pg.locator("#project-info")
    expect(header).to_contain_text(original, timeout=SWITCH)

    def choose(version: str) -> None:
        pg.locator("#model-picker input").click()
        pg.get_by_role("option", name=re.compile(re.escape(version))).click()
        expect(pg.locator("#model-picker input")).to_have_value(re.compile(re.escape(version)))
        pg.click("#btn-use-model")

    choose(file_version(better))
    expect(header).to_contain_text(file_version(better), timeout=SWITCH)
    expect(pg.locator("#status")).to_contain_text(re.compile(
        f"switched to {re.escape(file_version(better))}.* proposals from"), timeout=SWITCH)
    proposals = [i for i in project.instances(entry.id) if i.state == "proposed"]
    assert all(i.model_version == file_version(better) for i in proposals)
    choose(file_version(worse))                                  # lower held-out AP: it asks
    expect(pg.locator("#ask-text")).to_contain_text("lower held-out AP", timeout=SWITCH)
    assert project.model.version == file_version(better)
    pg.click("#btn-ask-switch-yes")
    expect(header).to_contain_text(file_version(worse), timeout=SWITCH)
    choose(original)                                              # and back
    expect(header).to_contain_text(original, timeout=SWITCH)
    expect(pg.locator("#status")).to_contain_text(f"switched to {original}", timeout=SWITCH)
    expect(pg.locator("#status")).not_to_contain_text("predicting", timeout=SWITCH)
    proposals = [i for i in project.instances(entry.id) if i.state == "proposed"]
    assert proposals and all(i.model_version == original for i in proposals)
    rows = pg.locator("#instance-table tbody tr td:nth-child(7)").all_inner_texts()
    assert rows and all(r == original for r in rows if r)


def test_adding_images_from_the_browser(context, studio, tmp_path) -> None:
    project, url = studio
    root = project.store.dataset(project.dataset_id).image_root
    existing = project.images()[0]
    from PIL import Image
    new = tmp_path / "mine.png"
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(new)
    same = tmp_path / "copy.png"
    same.write_bytes((root / existing.file_name).read_bytes())            # exact duplicate
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for k in range(2):
            buffer = io.BytesIO()
            Image.fromarray(np.full((20, 20, 3), 50 * k, np.uint8)).save(buffer, format="PNG")
            z.writestr("folder/mine.png" if k == 0 else "mine.png", buffer.getvalue())
        z.writestr("notes.png", b"not an image")
        z.writestr("docs/readme.txt", b"labels go in the COCO file")          # not an image at all
    before = len(project.images())
    pg = open_page(context, url, "?tab=coco")
    pg.locator("#upload-images input[type=file]").set_input_files([str(new), str(same), str(archive)])
    expect(pg.locator("#upload-images")).to_contain_text(re.compile(r"more\s*\.zip\s*\d+"))
    pg.click("#btn-add-images")
    status = pg.locator("#coco-message")          # the whole report where the person uploaded
    expect(status).to_be_in_viewport()
    expect(status).to_contain_text("added 3 images")
    expect(status).to_contain_text(f"same content as {existing.file_name}")
    expect(status).to_contain_text("notes.png")
    expect(status).to_contain_text("1 zip entries that are not images: more.zip: docs/readme.txt")
    names = {e.file_name for e in project.images()}
    assert len(names) == before + 3
    assert {"uploads/mine.png", "uploads/mine-2.png", "uploads/folder/mine.png"} <= names   # the zip's paths
    assert np.asarray(Image.open(root / "uploads/mine.png")).shape == (30, 40, 3)   # not overwritten
    pg.click("#btn-add-images")                                # the same files again: all skipped
    expect(status).to_contain_text("added 0 images; skipped 4 exact duplicates")


def test_near_duplicates_are_flagged_and_one_key_keeps_one(context, studio) -> None:
    project, url = studio
    root = project.store.dataset(project.dataset_id).image_root
    source = project.images()[0]
    (root / "twin.png").write_bytes((root / source.file_name).read_bytes())
    image_id = project.store.add_image(project.dataset_id, "twin.png", source.width, source.height)
    square = np.zeros((source.height, source.width), bool)
    square[40:100, 60:140] = True
    almost = square.copy()
    almost[40:100, 139] = False                                  # mask IoU 0.9875, same class
    category = project.categories()[0][0]
    a, b = project.store.replace_predictions(image_id, np.stack([square, almost]), [category, category],
                                             [0.9, 0.8], project.model.version)
    pg = open_page(context, url, f"?image={image_id}&t=0.05")
    expect(pg.locator("#instance-table")).to_contain_text(f"dup of #{a}")
    pg.click("#tab-correct-button")
    pg.locator("#instance-picker input").click()
    option = pg.get_by_role("option", name=re.compile(f"^#{b} "))
    expect(option).to_contain_text(f"dup of #{a}")               # the flag shows in every tab
    option.click()
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"^#{b} "))
    pg.locator("#shortcuts").click()                                     # focus off the picker
    pg.keyboard.press("k")
    expect(pg.locator("#status")).to_contain_text(f"keep #{b}")
    assert (project.store.annotation(b).state, project.store.annotation(a).state) == ("accepted", "rejected")
    pg.keyboard.press("Control+z")                                       # one step back
    expect(pg.locator("#status")).to_contain_text(f"undo: keep #{b}")
    assert {project.store.annotation(i).state for i in (a, b)} == {"proposed"}


# N, a click on an instance of the image the canvas drew ahead, then A: one step in the page, so
# that all three happen before the server answers the N
NEXT_CLICK_ACCEPT = """([x, y]) => {
  const key = (k) => document.body.dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true}));
  const c = document.querySelector('#correct-image canvas');
  key('n');
  const opening = c.dataset.opening;
  const [s, ox, oy] = c.dataset.view.split(',').map(Number), r = c.getBoundingClientRect();
  const at = {clientX: r.left + ox + (x + 0.5) * s, clientY: r.top + oy + (y + 0.5) * s, button: 0, pointerId: 1, bubbles: true};
  c.parentElement.dispatchEvent(new PointerEvent('pointerdown', at));
  c.parentElement.dispatchEvent(new PointerEvent('pointerup', at));
  key('a');
  return {opening, selected: c.dataset.selected, states: c.dataset.states,
          header: document.querySelector('#review-state').innerText};
}"""


def test_an_edit_while_the_next_image_opens_never_changes_it(context, studio) -> None:
    project, url = studio
    here, there = project.images()[4], project.images()[5]
    for entry in (here, there):
        project.predict(entry.id)
    pg = open_page(context, url, f"?image={here.id}&tab=correct&t=0.05")
    cv = pg.locator("#correct-image canvas")
    expect(cv).to_have_attribute("data-ahead", re.compile(rf"(^|,)next:{there.id}:"))
    shown = visible_instances(project.instances(there.id), 0.05)
    masks = np.stack([i.mask for i in shown])
    k, point = next((k, p) for k in range(len(shown)) if (p := inner_pixel(masks, k)) is not None)
    before = {e: [(a.id, a.state) for a in project.store.annotations(e, include_rejected=True)]
              for e in (here.id, there.id)}
    now = pg.evaluate(NEXT_CLICK_ACCEPT, list(point))
    assert now["opening"].startswith(f"{there.id}:"), "the next image was not drawn at once"
    assert here.file_name in now["header"], "the server answered within the key presses?"
    assert now["selected"] == str(shown[k].id)
    assert f"{shown[k].id}:accepted" not in now["states"].split(","), "accept drawn on an unconfirmed image"
    expect(pg.locator("#review-state")).to_contain_text(there.file_name)
    expect(cv).to_have_attribute("data-opening", "")
    # (three requests sent in one task can reach the queue in any order: a later action, answered
    # after all of them, says when the store can be read)
    pg.wait_for_timeout(1000)
    pg.click("#tab-inspect-button")
    expect_canvas(pg, "inspect-image")
    after = {e: [(a.id, a.state) for a in project.store.annotations(e, include_rejected=True)]
             for e in (here.id, there.id)}
    assert after == before, "an edit pressed before the server confirmed the image changed the store"
    # once the server has confirmed the image, the same click and key accept the instance
    click_pixel(pg, "inspect-image", *point)
    expect(pg.locator("#instance-picker input")).to_have_value(re.compile(f"#{shown[k].id} "))
    pg.keyboard.press("a")
    expect(pg.locator("#status")).to_contain_text("accepted")
    assert project.store.annotation(shown[k].id).state == "accepted"


def test_rapid_next_and_previous_end_on_one_image_and_a_reload_keeps_it(context, studio) -> None:
    project, url = studio
    images = project.images()
    for entry in images[:4]:
        project.predict(entry.id)
    pg = open_page(context, url, f"?image={images[0].id}")
    cv = pg.locator("#inspect-image canvas")
    expect(cv).to_have_attribute("data-ahead", re.compile(rf"(^|,)next:{images[1].id}:"))
    pg.locator("#project-info").click()
    for key in "nnnp":                        # faster than the server answers
        pg.keyboard.press(key)
        pg.wait_for_timeout(80)
    target = images[2]
    expect(pg.locator("#review-state")).to_contain_text(target.file_name)
    pg.wait_for_function(f"() => JSON.parse(document.querySelector('#canvas-prefetch textarea').value || '{{}}')"
                         f".from === {target.id}")
    expect(cv).to_have_attribute("data-opening", "")
    expect(cv).to_have_attribute("data-token", re.compile(rf"^{target.id}:"))
    expect(pg).to_have_url(re.compile(rf"image={target.id}(&|$)"))
    pg.reload()
    expect(pg.locator("#review-state")).to_contain_text(target.file_name)
    expect(cv).to_have_attribute("data-token", re.compile(rf"^{target.id}:"))


@pytest.mark.xfail(strict=False, reason="flaky: failed once in 3 full runs (a clean-clone .ci/run: the question did not "
                   "name the typed class in time); passed in the other two; cause not found")
def test_a_typed_class_asks_once_and_its_undo_takes_it_away(context, studio) -> None:
    """Real keys: a typo typed in the Class picker then L asks (nothing made yet); Cancel leaves
    nothing; L and "Make the new class" relabel with it; Ctrl+Z takes the class out of the picker
    and the COCO tab's class list; made again, the class list merges it into another class."""
    project, url = studio
    root = project.store.dataset(project.dataset_id).image_root
    source = project.images()[0]
    (root / "typo.png").write_bytes((root / source.file_name).read_bytes())
    image_id = project.store.add_image(project.dataset_id, "typo.png", source.width, source.height)
    square = np.zeros((source.height, source.width), bool)
    square[40:100, 60:140] = True
    [ann] = project.store.replace_predictions(image_id, square[None], [project.categories()[0][0]], [0.9],
                                              project.model.version)
    pg = open_page(context, url, f"?image={image_id}&t=0.05&tab=correct&sel={ann}")
    expect(pg.locator("#correct-image canvas")).to_have_attribute("data-selected", str(ann))
    picker = pg.locator("#class-picker input")

    def label_with(name: str) -> None:
        picker.fill(name)
        pg.locator("#shortcuts").click()                                 # focus off the picker
        pg.keyboard.press("l")

    label_with("squre")
    expect(pg.locator("#ask-text")).to_contain_text("squre")
    expect(pg.locator("#btn-ask-class-yes")).to_be_visible()
    assert "squre" not in project.class_names()
    pg.click("#btn-ask-class-no")
    expect(pg.locator("#status")).to_contain_text("cancelled")
    assert "squre" not in project.class_names()
    label_with("squre")
    pg.click("#btn-ask-class-yes")
    expect(pg.locator("#status")).to_contain_text("new class 'squre'")
    assert project.store.annotation(ann).state == "proposed"            # relabel never accepts
    pg.keyboard.press("Control+z")
    expect(pg.locator("#status")).to_contain_text("undo: set_category")
    assert "squre" not in project.class_names()
    pg.locator("#class-picker input").click()
    expect(pg.get_by_role("option", name="square", exact=True)).to_be_visible()
    expect(pg.get_by_role("option", name="squre", exact=True)).to_have_count(0)
    label_with("squre")
    pg.click("#btn-ask-class-yes")
    expect(pg.locator("#status")).to_contain_text("new class 'squre'")
    pg.click("#tab-coco-button")
    expect(pg.locator("#class-table")).to_contain_text("squre")
    pg.locator("#class-manage-pick input").fill("squre")
    pg.locator("#class-manage-to textarea, #class-manage-to input").first.fill("square")
    pg.click("#btn-class-merge")
    expect(pg.locator("#coco-message")).to_contain_text("merged class 'squre' into 'square'")
    expect(pg.locator("#class-table")).not_to_contain_text("squre")
    assert "squre" not in project.class_names()
