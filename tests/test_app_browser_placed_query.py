"""The query tool in a real browser (headless Debian Chromium via Playwright): on a held-out demo
scene whose circle the demo model misses, a person picks the query tool, clicks the circle,
accepts the proposal, and the COCO export (read with pycocotools) holds its mask."""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.inspect_view import visible_instances
from test_app_browser import browser, click_pixel  # noqa: F401 - fixture
from test_app_browser_work import context, open_page  # noqa: F401 - fixture
from test_app_placed_query import MISSED_CLASS, demo_scene, iou  # noqa: F401 - fixture
from test_app_support import served

pw = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = pw.expect


def test_click_a_missed_object_with_the_query_tool_accept_and_export(context, demo_scene, tmp_path) -> None:
    project, entry, gt, (x, y) = demo_scene
    with served(project) as url:
        pg = open_page(context, url, f"?image={entry.id}&tab=correct")
        expect(pg.locator("#review-state")).to_contain_text(entry.file_name)
        shown = visible_instances(project.instances(entry.id), 0.5)
        assert shown and max(iou(i.mask, gt) for i in shown) < 0.5, "the model no longer misses the circle"
        # click to visible, against a full prediction in the same page ("Predict again")
        start = time.perf_counter()
        pg.click("#btn-predict")
        expect(pg.locator("#status")).to_contain_text("undecided)")   # "... (replacing N undecided)"
        predict_s = time.perf_counter() - start
        pg.locator("#tool").get_by_label("query").check()
        expect(pg.locator("#status")).to_contain_text("query: click an object")
        start = time.perf_counter()
        click_pixel(pg, "correct-image", x, y)
        expect(pg.locator("#status")).to_contain_text(re.compile(rf"placed a query: #\d+ {MISSED_CLASS}"))
        click_s = time.perf_counter() - start
        print(f"click to visible {click_s * 1e3:.0f} ms; Predict again to visible {predict_s * 1e3:.0f} ms "
              f"(shared machine)")
        [placed] = [i for i in project.instances(entry.id) if i.placed_at is not None]
        pg.keyboard.press("a")
        expect(pg.locator("#status")).to_contain_text(f"#{placed.id} {MISSED_CLASS}: accepted")
        pg.keyboard.press("m")
        expect(pg.locator("#ask-text")).to_contain_text("undecided")
        pg.click("#btn-ask-undecided-reject")
        expect(pg.locator("#review-state")).to_contain_text(re.compile(r"(?<!un)reviewed"))
    doc = json.loads(project.store.export_coco(project.dataset_id, tmp_path / "e.json", only_reviewed=True)
                     .read_text())
    image = next(i for i in doc["images"] if i["file_name"] == entry.file_name)
    [ann] = [a for a in doc["annotations"] if a["image_id"] == image["id"] and a.get("placed_query")]
    assert ann["placed_query"] == [x, y]
    assert {c["id"]: c["name"] for c in doc["categories"]}[ann["category_id"]] == MISSED_CLASS
    mask = mask_utils.decode(ann["segmentation"]).astype(bool)
    assert np.array_equal(mask, placed.mask) and iou(mask, gt) >= 0.8
