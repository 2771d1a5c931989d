"""The studio's plain functions on numpy data: rendering, filtering, picking, the mask editor's
value, options and caches. No Gradio, no model."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app import explain_view, inspect_view
from app.config import ConfigError, StudioConfig, parse_auth
from app.project import Instance
from app.session import LRUCache, SessionState
from fastinst import visualize
from launch import config_from_args


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def inst(id: int, mask: np.ndarray, state: str = "proposed", score: float | None = 0.9,
         source: str = "predicted", query: int | None = None) -> Instance:
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if len(xs) else (0, 0, 0, 0)
    return Instance(id=id, mask=mask, category_id=1, class_name="circle", score=score, source=source,
                    state=state, query=query, model_version="v1", bbox=bbox, area=int(mask.sum()))


def test_instance_at_prefers_the_first_instance_where_masks_overlap() -> None:
    masks = np.stack([box_mask(40, 60, 10, 30, 10, 30), box_mask(40, 60, 0, 40, 0, 60)])
    assert visualize.instance_at(masks, 15, 15) == 0
    assert visualize.instance_at(masks, 50, 5) == 1
    assert visualize.instance_at(masks, 200, 5) is None
    ids = visualize.instance_id_map(masks)
    assert ids[15, 15] == 0 and ids[5, 50] == 1
    assert visualize.instance_at(np.zeros((0, 4, 4), bool), 1, 1) is None


def test_overlay_tints_inside_masks_only() -> None:
    image = np.full((60, 80, 3), 100, np.uint8)
    masks = np.stack([box_mask(60, 80, 10, 50, 10, 40)])
    out = visualize.overlay_instances(image, masks, [(255, 0, 0)], selected=None)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[30, 25, 0] > 150 and out[30, 25, 1] < 100       # inside: towards red
    assert (out[30, 70] == 100).all() and (out[55, 5] == 100).all()  # outside: untouched
    sel = visualize.overlay_instances(image, masks, [(255, 0, 0)], selected=0)
    assert (sel[10, 25] == 255).all()                           # white outline of the selection


def test_heatmap_uses_a_colormap_from_blue_to_red() -> None:
    low, high = visualize.colormap(np.array([[0.0, 1.0]]))[0]
    assert low[2] > low[0] and high[0] > high[2]


def test_polygon_mask_fills_the_polygon() -> None:
    mask = visualize.polygon_mask([(10, 10), (50, 10), (50, 30), (10, 30)], (40, 60))
    assert mask[20, 30] and not mask[35, 30] and 800 <= mask.sum() <= 900
    assert not visualize.polygon_mask([(1, 1), (5, 5)], (10, 10)).any()


def test_visible_instances_filters_by_score_and_state() -> None:
    m = box_mask(10, 10, 0, 5, 0, 5)
    items = [inst(1, m, score=0.3), inst(2, m, score=0.8), inst(3, m, "accepted", score=0.2),
             inst(4, m, "rejected"), inst(5, m, "accepted", None, "human")]
    shown = inspect_view.visible_instances(items, 0.5)
    assert [i.id for i in shown] == [5, 3, 2]
    assert 4 in [i.id for i in inspect_view.visible_instances(items, 0.5, show_rejected=True)]


def test_pick_instance_and_table_rows() -> None:
    a, b = inst(7, box_mask(30, 30, 0, 10, 0, 10)), inst(9, box_mask(30, 30, 0, 30, 0, 30), score=0.5)
    assert inspect_view.pick_instance([a, b], 5, 5) == 7
    assert inspect_view.pick_instance([a, b], 20, 20) == 9
    assert inspect_view.instance_rows([a])[0] == [7, "circle", 0.9, "? proposed", "", 100, "predicted", "v1"]


def test_near_duplicate_proposals_are_flagged_against_the_instance_above() -> None:
    square = box_mask(40, 40, 5, 25, 5, 25)
    almost = box_mask(40, 40, 5, 25, 5, 24)            # IoU 0.95
    apart = box_mask(40, 40, 5, 25, 14, 34)             # IoU < 0.5
    a, b, c = inst(1, square, "accepted"), inst(2, almost, score=0.8), inst(3, apart, score=0.7)
    shown = inspect_view.visible_instances([c, b, a], 0.5)
    assert inspect_view.near_duplicates(shown, 0.9) == {2: 1}
    flag = inspect_view.TABLE_HEADERS.index("flag")
    assert [row[flag] for row in inspect_view.instance_rows(shown, 0.9)] == ["", "dup of #1", ""]
    assert inspect_view.near_duplicates(shown, 0.96) == {}
    assert [d.id for d in inspect_view.duplicates_of(a, shown, 0.9)] == [2]


def test_layer_helpers() -> None:
    masks = np.stack([box_mask(10, 10, 0, 5, 0, 10), box_mask(10, 10, 0, 5, 0, 10), box_mask(10, 10, 0, 10, 0, 10)])
    assert explain_view.layer_changes(masks) == [1.0, 0.5]
    assert explain_view.layer_notes(masks) == ["50 px", "50 px, IoU 1.00 with the previous, +0 / −0 px",
                                               "100 px, IoU 0.50 with the previous, +50 / −0 px"]
    value = json.loads(explain_view.layers_value("t", ["a.png", "b.png"], ["head 0", "head 1"], ["x", "y"],
                                                 (255, 0, 255), (0, 255, 255), 12.0, "head"))
    assert [p["url"] for p in value["panels"]] == ["a.png", "b.png"] and value["added"] == [255, 0, 255]
    assert "{added}" in value["help"] and "{removed}" in value["help"] and "×12" in value["help"]


def test_auth_is_required_beyond_loopback(tmp_path: Path) -> None:
    StudioConfig(host="127.0.0.1").validate()
    with pytest.raises(ConfigError, match="--auth"):
        StudioConfig(host="0.0.0.0").validate()
    StudioConfig(host="0.0.0.0", auth=(("ann", "pw"),)).validate()
    secrets = tmp_path / "users"
    secrets.write_text("# users\nann:pw1\nbob:pw:2\n")
    assert parse_auth(f"@{secrets}") == (("ann", "pw1"), ("bob", "pw:2"))
    with pytest.raises(ConfigError):
        parse_auth("nopassword")


def test_command_line_to_config(tmp_path: Path) -> None:
    config = config_from_args(["--images", str(tmp_path), "--port", "9000", "--device", "cpu"])
    assert config.images == tmp_path and config.port == 9000 and not config.is_demo
    assert config.db_url.startswith("sqlite:///") and config.db_url.endswith("studio.db")
    assert config_from_args([]).is_demo
    with pytest.raises(ConfigError, match="not a folder"):
        config_from_args(["--images", str(tmp_path / "missing")])


def test_lru_cache_evicts_and_creates_each_key_once() -> None:
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1), cache.put("b", 2), cache.get("a"), cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and len(cache) == 2
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42
    threads = [threading.Thread(target=lambda: cache.get_or_create("k", slow)) for _ in range(4)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert calls == [1] and cache.get("k") == 42


def test_demo_images_are_regenerated_when_the_generator_changes(tmp_path: Path, monkeypatch) -> None:
    import json
    from app import demo
    from app.startup import retire_demo_store
    monkeypatch.setattr(demo, "demo_split", lambda: (2, 5, (32, 48)))
    images, gt, fresh = demo.demo_dataset(tmp_path / "demo", log=lambda m: None)
    assert fresh and len(list(images.glob("*.png"))) == 2
    assert not demo.demo_dataset(tmp_path / "demo", log=lambda m: None)[2]
    coco = json.loads(gt.read_text())
    coco["info"]["seed"] = 6                         # made by other settings: not the demo's images
    gt.write_text(json.dumps(coco))
    assert demo.demo_dataset(tmp_path / "demo", log=lambda m: None)[2]
    config = StudioConfig(data_dir=tmp_path)
    (config.project_dir / "studio.db").write_text("old annotations")
    retire_demo_store(config, log=lambda m: None)
    assert not (config.project_dir / "studio.db").exists()
    assert (config.project_dir / "studio.db.old-1").read_text() == "old annotations"


def test_tools_that_draw_a_new_instance_drop_the_selection() -> None:
    from app.events import set_tool
    state = SessionState(image_id=1, selected=5)
    assert "Enter applies" in set_tool(state, "brush") and (state.tool, state.selected) == ("brush", 5)
    set_tool(state, "eraser")
    assert state.selected == 5                     # the eraser edits the selected mask
    for tool in ("new", "polygon"):
        state.selected = 5
        set_tool(state, tool)
        assert (state.tool, state.selected) == (tool, None)
    set_tool(state, "lasso")
    assert state.tool == "select"


def test_near_duplicate_accepted_objects_are_flagged_like_proposals() -> None:
    """Two accepted copies of one object (the query tool or an import made the second) would be
    exported twice: the lower one is flagged, Keep-one rejects it; rejected ones are never flagged."""
    square = box_mask(40, 40, 5, 25, 5, 25)
    almost = box_mask(40, 40, 5, 25, 5, 24)            # IoU 0.95
    a, b = inst(1, square, "accepted"), inst(2, almost, "accepted")
    shown = inspect_view.visible_instances([b, a], 0.5)
    assert inspect_view.near_duplicates(shown, 0.9) == {2: 1}
    assert [d.id for d in inspect_view.duplicates_of(a, shown, 0.9)] == [2]
    gone = inst(3, almost, "rejected")
    assert inspect_view.near_duplicates(inspect_view.visible_instances([a, gone], 0.5, True), 0.9) == {}
