"""End-to-end in headless Chromium: the Fine-tune view starts a run that trains in a worker,
shows its progress, curves and before/after AP, keeps showing the run after a reload, draws the
before/after comparison large; the Evaluate view lists per-image errors and draws one.
Screenshots go to ``test-artifacts/``. Slow (about 90 s on the shared machine)."""
from __future__ import annotations

import re

import pytest

from test_app_browser import ARGS, CHROMIUM, TIMEOUT, shot
from test_app_support import make_project, served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """4 images with their ground truth imported and reviewed."""
    folder = tmp_path_factory.mktemp("ft-browser")
    project = make_project(folder, num_images=4, size=(128, 128))
    project.import_coco(folder / "shapes" / "annotations.json")
    for entry in project.images():
        project.store.set_review_state(entry.id, "reviewed")
    with served(project) as url:
        yield project, url


@pytest.fixture(scope="module")
def page(studio):
    _, url = studio
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(url)
        expect(pg.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
        yield pg
        browser.close()


def test_finetune_view_runs_shows_curves_and_survives_a_reload(page, studio) -> None:
    project, url = studio
    page.locator("#tab-train-button, button[role=tab]:has-text('Fine-tune')").first.click()
    expect(page.locator("#ft-split")).to_contain_text("for testing")
    expect(page.locator("#btn-train-use")).to_be_disabled()           # nothing to use, nothing to compare
    expect(page.locator("#compare-picker input")).to_be_disabled()
    page.locator("#ft-settings").get_by_text("Settings").click()
    box = page.locator("#ft-iterations input")
    box.fill("12")
    box.press("Tab")
    page.locator("#btn-train-start").click()
    expect(page.locator("#train-message")).to_contain_text("started")
    expect(page.locator("#train-progress .ft-progress[data-phase=running]")).to_be_visible(timeout=4 * TIMEOUT)
    page.reload()                                      # a reload shows the same run, still followed
    expect(page.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
    page.locator("button[role=tab]:has-text('Fine-tune')").first.click()
    expect(page.locator("#train-progress .ft-progress[data-phase=done]")).to_be_visible(timeout=10 * TIMEOUT)
    expect(page.locator("#train-metrics")).to_contain_text("Test mask AP")
    expect(page.locator("#btn-train-use")).to_be_disabled()           # 1 test image never shows a model better
    expect(page.locator("#ft-loss-plot canvas, #ft-loss-plot svg").first).to_be_visible()
    expect(page.locator("#ft-ap-plot canvas, #ft-ap-plot svg").first).to_be_visible()
    run = project.store.list_training_runs(project.dataset_id)[-1]
    assert re.search(rf'data-run="{run.id}"', page.inner_html("#train-progress"))
    if run.model_version:
        expect(page.locator("#compare-picker input")).to_be_enabled()
        page.locator("#compare-picker input").click()
        page.locator("ul[role=listbox] li").first.click()
        image = page.locator("#compare-image img")
        expect(image).to_be_visible(timeout=2 * TIMEOUT)
        page.wait_for_function("() => document.querySelector('#compare-image img')?.complete && "
                               "document.querySelector('#compare-image img').naturalWidth > 0")
        natural = page.evaluate("() => document.querySelector('#compare-image img').naturalWidth")
        assert natural >= 2 * 512                      # two large tiles side by side
    else:
        expect(page.locator("#compare-picker input")).to_be_disabled()
    shot(page, "finetune-view")


def test_evaluate_view_lists_errors_and_draws_one(page, studio) -> None:
    page.locator("button[role=tab]:has-text('Evaluate')").first.click()
    page.locator("#btn-evaluate").click()             # the test images (one here)
    expect(page.locator("#ev-summary")).to_contain_text("on 1 images", timeout=4 * TIMEOUT)
    page.locator("#ev-scope label:has-text('all reviewed images')").click()
    expect(page.locator("#ev-scope input[value='all reviewed images']")).to_be_checked()
    page.locator("#btn-evaluate").click()
    expect(page.locator("#ev-summary")).to_contain_text("on 4 images", timeout=4 * TIMEOUT)
    for entry in studio[0].images():
        expect(page.locator("#ev-images")).to_contain_text(entry.file_name)
    expect(page.locator("#ev-image img")).to_be_visible()
    shot(page, "evaluate-view")
