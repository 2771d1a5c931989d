"""The annotation canvas's server side (``app.canvas``): the mask runs the browser decodes give
back every stored pixel (checked with pycocotools' area and a numpy decoder), and a click's event
data becomes a selection. The browser side is covered by ``test_app_browser*.py``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app import canvas
from app.project import Instance


def undo_runs(runs: list[int], w: int, h: int) -> np.ndarray:
    """The (h, w) bool crop that row-major runs (0s first) describe."""
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape(h, w)


def instance(mask: np.ndarray, ann_id: int = 1, state: str = "proposed", score: float | None = 0.9) -> Instance:
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if xs.size else (0, 0, 0, 0)
    return Instance(id=ann_id, mask=mask, category_id=1, class_name="thing", score=score, source="predicted",
                    state=state, bbox=bbox, area=int(mask.sum()))


@pytest.mark.parametrize("seed", range(6))
def test_mask_runs_give_back_every_pixel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    mask[0, 0] = bool(seed % 2)          # both starts: a run of 0s and an empty one
    inst = instance(mask)
    x, y, bw, bh = box = canvas.mask_box(inst)
    runs = canvas.mask_runs(mask, box)
    assert sum(runs) == bw * bh
    crop = undo_runs(runs, bw, bh)
    assert np.array_equal(crop, mask[y:y + bh, x:x + bw])
    assert mask[y:y + bh, x:x + bw].sum() == mask.sum(), "the box holds the whole mask"
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert int(mask_utils.area(rle)) == int(crop.sum())


def test_masks_file_and_value(tmp_path) -> None:
    a = np.zeros((30, 40), bool)
    a[5:20, 10:30] = True
    b = a.copy()
    b[10:12, 12:14] = False                 # one hole: another mask, another key
    masks = canvas.write_masks([instance(a, 1), instance(b, 2, "accepted", None)], tmp_path / "m.json")
    assert masks.keys[1] != masks.keys[2]
    entries = json.loads((tmp_path / "m.json").read_text())
    for ann_id, mask in ((1, a), (2, b)):
        x, y, w, h, *runs = entries[str(ann_id)]
        assert np.array_equal(undo_runs(runs, w, h), mask[y:y + h, x:x + w])
    again = canvas.write_masks([instance(a, 1)], tmp_path / "again.json")
    assert again.keys[1] == masks.keys[1], "an unchanged mask keeps its key (the browser keeps it)"
    value = json.loads(canvas.value(token="3:7", image_path="/x/img.png", size=(30, 40), masks=masks,
                                    instances=[instance(a, 1), instance(b, 2, "accepted", None)],
                                    selected=2, min_score=0.25, show_rejected=False, mode="correct", seq=4))
    assert value["image"] == "gradio_api/file=/x/img.png" and (value["width"], value["height"]) == (40, 30)
    assert [i["id"] for i in value["instances"]] == [1, 2]
    assert value["instances"][1]["label"] == "#2 thing ✓"
    assert (value["selected"], value["mode"], value["seq"]) == (2, "correct", 4)
    # what the page loads ahead carries the same instance rows, so that a press can draw it at once
    predicted = canvas.Ahead("3:7", "b.png", (30, 40), "/x/img.png", masks,
                             [instance(a, 1), instance(b, 2, "accepted", None)])
    fresh = canvas.Ahead("4:1", "c.png", (30, 40), "/x/c.png", None, [])
    ahead = json.loads(canvas.prefetch_value(9, predicted, fresh))
    assert ahead["from"] == 9
    assert ahead["next"]["instances"] == value["instances"]
    assert {k: ahead["next"][k] for k in ("token", "image", "width", "height", "masks")} == \
        {k: value[k] for k in ("token", "image", "width", "height", "masks")}
    assert ahead["prev"]["masks"] is None and ahead["prev"]["instances"] == []
    assert json.loads(canvas.prefetch_value(9, None, None)) == {"from": 9, "next": None, "prev": None}


def test_read_click() -> None:
    click = canvas.read_click({"x": 3.0, "y": 4, "tool": "query", "pick": None, "seq": 9})
    assert click == canvas.Click(3, 4, "query", None, 9)
    assert canvas.read_click({"x": 1, "y": 2, "pick": "5"}).pick == 5
    for bad in (None, {"y": 1}, {"x": "left", "y": 1}):
        with pytest.raises((ValueError, KeyError)):
            canvas.read_click(bad)


def test_read_action() -> None:
    action = canvas.read_event({"kind": "action", "action": "reject", "target": 7, "token": "3:12", "seq": 4})
    assert action == canvas.Action("reject", 7, 3, 4)
    assert canvas.read_event({"kind": "action", "action": "accept", "target": None, "token": ""}) == \
        canvas.Action("accept", None, None, 0)
    with pytest.raises(ValueError, match="unknown action 'approve'"):
        canvas.read_event({"kind": "action", "action": "approve", "target": 7})


def test_an_edit_replaces_its_box_and_nothing_else() -> None:
    rng = np.random.default_rng(3)
    stored = rng.random((30, 40)) < 0.5
    drawn = rng.random((30, 40)) < 0.5
    box = (7, 4, 20, 11)
    runs = canvas.mask_runs(drawn, box)
    edit = canvas.read_event({"kind": "mask", "target": 5, "box": list(box), "runs": runs, "token": "9:3",
                              "how": "polygon", "seq": 2})
    assert (edit.target, edit.image_id, edit.how, edit.seq) == (5, 9, "polygon", 2)
    out = edit.apply(stored)
    x, y, w, h = box
    assert np.array_equal(out[y:y + h, x:x + w], drawn[y:y + h, x:x + w])
    outside = np.ones_like(stored)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(out[outside], stored[outside]) and not np.array_equal(out, stored)
    whole = canvas.read_edit(canvas.edit_value(drawn))          # what an API client sends
    assert whole.target is None and whole.image_id is None
    assert np.array_equal(whole.apply(np.zeros_like(drawn)), drawn)
    with pytest.raises(ValueError, match="does not lie inside"):
        canvas.read_edit({"box": [35, 0, 10, 1], "runs": [10]}).apply(stored)
    for bad in ({"box": [0, 0, 2, 2], "runs": [1, 2]}, {"box": [0, 0, 2, 2], "runs": [5, -1]},
                {"box": [0, 0, 0, 2], "runs": []}, {"box": "here", "runs": [1]}, {"runs": [1]}, "{not json"):
        with pytest.raises(ValueError):
            canvas.read_edit(bad)
