"""The studio running QueryInst: chosen at launch (a checkpoint of the other model is refused by
name), predictions stored under its model version, and the Explain view showing its stages (each
stage's box and mask for the selected instance), driven through gradio_client on a real server
with a small QueryInst checkpoint this test builds."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from gradio_client import Client

from app import evaluate_view
from app.project import StudioError
from app.train_view import COMPARE_MIN_SIDE
from app.config import ConfigError, StudioConfig
from app.startup import open_project
from engines.load import load_predictor
from fastinst import visualize
from test_app_support import CLASSES, as_dict, served

NUM_STAGES = 3   # the tiny preset's


def queryinst_checkpoint(folder: Path) -> Path:
    """A tiny QueryInst (random weights, proposals spread over the image, class bias 0 so that
    scores sit near 0.5 and mask bias 1 so that masks are not empty: the studio keeps its
    instances) saved with the real checkpoint code."""
    from queryinst import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=len(CLASSES)).eval()
    with torch.no_grad():
        model.proposals.boxes.weight.copy_(torch.rand(32, 4) * torch.tensor([0.6, 0.6, 0.4, 0.4]) + 0.2)
        for stage, head in zip(model.stages, model.mask_heads):
            stage.fc_cls.bias.zero_()
            head.conv_logits.bias.fill_(1.0)
    return save_checkpoint(folder / "queryinst_tiny.safetensors", model, preset="tiny", class_names=CLASSES)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from training.synthetic import make_shapes_dataset

    folder = tmp_path_factory.mktemp("qi")
    make_shapes_dataset(folder / "shapes", 2, 3, size=(120, 160))
    weights = queryinst_checkpoint(folder)
    config = StudioConfig(images=folder / "shapes" / "images", weights=weights, model="queryinst",
                          data_dir=folder / "studio-data", device="cpu", cache_size=8)
    return folder, weights, config


def test_a_checkpoint_of_the_other_model_is_refused_at_launch(setup) -> None:
    folder, weights, config = setup
    from dataclasses import replace

    with pytest.raises(ConfigError, match="queryinst_tiny.safetensors holds a QueryInst model, not FastInst"):
        open_project(replace(config, model="fastinst", data_dir=folder / "other"), log=lambda m: None)
    with pytest.raises(ConfigError, match="--model queryinst needs --weights"):
        StudioConfig(model="queryinst").validate()


def test_studio_predicts_and_explains_queryinst_stages(setup) -> None:
    folder, weights, config = setup
    project = open_project(config, log=lambda m: None)
    assert project.model.model == "queryinst" and "QueryInst" in project.model.description
    image_id = project.images()[0].id
    oracle = load_predictor(weights, model="queryinst", device="cpu").predictor.predict(project.pixels(image_id))
    with served(project) as url:
        client = Client(url, verbose=False)
        client.predict(image_id, api_name="/open_image")
        r = as_dict(client.predict(api_name="/predict"))
        assert "proposals" in r["status"], r["status"]
        assert "QueryInst" in r["project_info"]
        rows = as_dict(client.predict(0.05, api_name="/set_min_score"))["instance_table"]["data"]
        assert rows
        # every stored proposal is one of the model's instances, under this model's version
        stored = [project.store.annotation(row[0]) for row in rows]
        kept = oracle.filter(0.05)
        assert len(stored) == len(kept)
        for ann in stored:
            assert ann.model_version == project.model.version
            assert any(np.array_equal(ann.mask, m) for m in kept.masks)
        assert project.model.version in {m.name for m in project.store.list_model_versions()}

        # Explain: the selected instance's query through every stage
        first = rows[0][0]
        client.predict(first, api_name="/select_instance")
        r = as_dict(client.predict(api_name="/show_explain"))
        query = _query_of(project, image_id, first)
        motion = np.abs(oracle.explanation.box_motion(query)).mean(1)
        assert f"proposal **{query}**" in r["explain_info"]
        assert ", ".join(f"S{k + 1}: {v:.1f}" for k, v in enumerate(motion)) in r["explain_info"]
        overview = cv2.imread(r["explain_heatmap"])[:, :, ::-1]
        assert overview.shape[:2] == (120 * 4, 160 * 4)               # the display zoom of a 120x160 image
        # the per-stage panels, all sent at once: each shows its own stage's mask undimmed and
        # little else (its box lines, the hatching of what it changed)
        value = json.loads(r["explain_layers"])
        assert [p["title"] for p in value["panels"]] == oracle.explanation.layer_titles()
        layers = oracle.explanation.layer_masks(query)
        boxes = oracle.explanation.layer_boxes(query)
        x0, y0, x1, y1 = visualize.crop_box(layers, boxes)
        k = visualize.panel_scale(x1 - x0, y1 - y0, 480)
        crop = cv2.resize(project.pixels(image_id)[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
        dim = (crop * 0.45).astype(np.uint8)
        ring = np.ones((7, 7), np.uint8)
        for stage, panel in enumerate(value["panels"]):
            shown = cv2.imread(panel["url"].removeprefix("gradio_api/file="))[:, :, ::-1]
            assert shown.shape == crop.shape
            mask = cv2.resize(layers[stage, y0:y1, x0:x1].astype(np.uint8), None, fx=k, fy=k,
                              interpolation=cv2.INTER_NEAREST)
            inside = cv2.erode(mask, ring).astype(bool)
            outside = ~cv2.dilate(mask, ring).astype(bool)
            assert np.all(shown[inside] == crop[inside], axis=1).mean() > 0.5     # as it is (or hatched)
            assert np.all(shown[outside] == dim[outside], axis=1).mean() > 0.5    # dimmed (or hatched, box)


def _query_of(project, image_id: int, annotation_id: int) -> int:
    inst = next(i for i in project.instances(image_id) if i.id == annotation_id)
    assert inst.query is not None
    return inst.query


def test_fastinst_and_queryinst_side_by_side(setup) -> None:
    """Launched with FastInst and ``--compare`` QueryInst weights: both models' predictions of the
    open image, side by side, each from its own model."""
    from dataclasses import replace

    from test_app_support import model_weights

    folder, weights, config = setup
    fastinst_weights = model_weights(folder)
    project = open_project(replace(config, weights=fastinst_weights, model=None, compare=weights,
                                   data_dir=folder / "side"), log=lambda m: None)
    assert project.model.model == "fastinst"
    other = next(m.name for m in project.store.list_model_versions() if m.name.startswith("queryinst_tiny@"))
    image_id = project.images()[0].id
    with served(project) as url:
        client = Client(url, verbose=False)
        client.predict(image_id, api_name="/open_image")
        path = client.predict(other, api_name="/compare_models")
    picture = cv2.imread(path)
    k = visualize.display_factor(120, 160, min_side=COMPARE_MIN_SIDE)
    assert picture.shape[:2] == (120 * k, 2 * 160 * k + 12)
    from app.studio import Studio

    versions = Studio(project).versions
    assert versions.slot(other).model == "queryinst"
    oracle = load_predictor(weights, device="cpu").predictor.predict(project.pixels(image_id)).filter(0.05)
    assert np.array_equal(versions.predict(other, image_id).masks, oracle.masks)
    with pytest.raises(StudioError, match="choose another model version"):
        evaluate_view.side_by_side(project, versions, project.model.version, image_id, 0.5)


@pytest.mark.slow
def test_studio_fine_tunes_queryinst_in_a_worker(setup) -> None:
    """The Fine-tune view runs QueryInst's recipe in the worker process (the one training loop)
    and shows its loss parts; the run's model is a QueryInst checkpoint (slow: 85 s measured on the
    shared machine)."""
    from dataclasses import replace

    from engines.load import weights_model
    from test_app_finetune import poll_until

    folder, weights, config = setup
    project = open_project(replace(config, data_dir=folder / "ft"), log=lambda m: None)
    for entry in project.images():
        project.predict(entry.id)
        for inst in project.instances(entry.id)[:3]:
            project.store.set_state(inst.id, "accepted")
        project.store.set_review_state(entry.id, "reviewed", undecided="reject")
    with served(project) as url:
        client = Client(url, verbose=False)
        message = client.predict(project.model.version, 4, 0, 0, api_name="/finetune_start")[0]
        assert "started" in message, message
        view = poll_until(client, {"done", "stopped", "failed"})
    assert view["phase"] == "done", view["progress"]
    run = project.store.list_training_runs(project.dataset_id)[-1]
    assert run.config["model"] == "queryinst" and run.iteration == 4
    assert {"box GIoU", "box L1", "class", "dice"} <= {row[2] for row in view["loss_plot"]["data"]}
    assert "IA proposals" not in {row[2] for row in view["loss_plot"]["data"]}
    assert weights_model(Path(run.path) / "model_final.safetensors") == "queryinst"


def test_the_query_tool_says_it_needs_fastinst(setup) -> None:
    from dataclasses import replace

    folder, weights, config = setup
    project = open_project(replace(config, data_dir=folder / "tool"), log=lambda m: None)
    with pytest.raises(StudioError, match="the query tool needs a FastInst model"):
        project.place_query(project.images()[0].id, 10, 10, None)


def test_explain_follows_a_switch_between_fastinst_and_queryinst_in_the_browser(setup) -> None:
    """Launched with FastInst and ``--compare`` QueryInst, in headless Chromium: Explain shows the IA
    map's help and heatmap choice; after the header's model picker switches to QueryInst (and after
    a reload, which builds the page anew) it shows the proposals' help, no heatmap choice and one
    panel per stage; the Fine-tune and Evaluate model pickers follow the switch; switching back
    brings FastInst's view back."""
    import re
    from dataclasses import replace

    from test_app_browser import ARGS, CHROMIUM, TIMEOUT, expect, pw
    from test_app_support import model_weights

    folder, weights, config = setup
    project = open_project(replace(config, weights=model_weights(folder), model=None, compare=weights,
                                   data_dir=folder / "switch"), log=lambda m: None)
    fastinst_version = project.model.version
    other = next(m.name for m in project.store.list_model_versions() if m.name.startswith("queryinst_tiny@"))
    slow = 3 * TIMEOUT     # loading and running the other model on the shared CPU
    with served(project) as url, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 900})
        pg.set_default_timeout(TIMEOUT)
        pg.goto(url)
        expect(pg.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
        pg.click("#tab-explain-button")
        help_, choice = pg.locator("#explain-help"), pg.locator("#activation-choice")
        expect(help_).to_contain_text("Instance activation (IA) map")
        expect(choice).to_be_visible()

        def use(version: str) -> None:
            pg.locator("#model-picker input").click()
            pg.get_by_role("option", name=re.compile(re.escape(version))).click()
            pg.click("#btn-use-model")
            expect(pg.locator("#project-info")).to_contain_text(version, timeout=slow)

        use(other)
        expect(help_).to_contain_text("Proposals and stages", timeout=slow)
        expect(choice).to_be_hidden()
        expect(help_).not_to_contain_text("Instance activation")
        pg.reload()                                       # a page built anew while QueryInst predicts
        expect(pg.locator("#review-state")).to_contain_text("rev", timeout=2 * TIMEOUT)
        expect(help_).to_contain_text("Proposals and stages", timeout=slow)
        expect(choice).to_be_hidden()
        pg.locator("#instance-picker input").click()      # the open image's proposals are QueryInst's now
        pg.get_by_role("option").first.click()
        strip = pg.locator("#explain-layers .xlayers-strip button")
        expect(strip).to_have_count(NUM_STAGES)
        expect(strip.first).to_contain_text("stage 1")
        # the Fine-tune and Evaluate pickers follow too: opening their tab, and a switch made there
        pg.click("#tab-train-button")
        expect(pg.locator("#ft-start-from input")).to_have_value(other)
        pg.click("#tab-evaluate-button")
        expect(pg.locator("#ev-version input")).to_have_value(other)
        expect(pg.locator("#cmp-version input")).to_have_value(fastinst_version)
        use(fastinst_version)
        expect(pg.locator("#ev-version input")).to_have_value(fastinst_version, timeout=slow)
        expect(pg.locator("#cmp-version input")).to_have_value(other)
        pg.click("#tab-explain-button")
        expect(help_).to_contain_text("Instance activation (IA) map", timeout=slow)
        expect(choice).to_be_visible()
        browser.close()


def test_switching_away_from_queryinst_and_back_keeps_which_model_it_is(setup) -> None:
    """Launched with QueryInst and ``--compare`` FastInst: after switching to FastInst and back, the
    project's model is QueryInst again (its slot once came back labelled FastInst, and Explain
    then showed the IA map's help beside QueryInst's proposals)."""
    from dataclasses import replace

    from test_app_support import model_weights

    folder, weights, config = setup
    project = open_project(replace(config, compare=model_weights(folder), data_dir=folder / "back"),
                           log=lambda m: None)
    launched = project.model.version
    other = next(m.name for m in project.store.list_model_versions() if m.name != launched)
    project.switch_model(other)
    assert project.model.model == "fastinst"
    project.switch_model(launched)
    assert (project.model.model, project.model.version) == ("queryinst", launched)
    assert project.model.predictor.num_layers == NUM_STAGES
