"""Evaluate view through gradio_client: the per-image false positives and negatives it lists equal
pycocotools' matching of the same predictions against the reviewed annotations; AP and per-class
AP are shown with their 95% bootstrap intervals and the images and objects they rest on; the
confusion table is shown; review-next ranks the unreviewed images by uncertainty."""
from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client

from fastinst.coco_results import to_coco_results
from test_app_support import make_project, served
from test_training_analysis import cocoeval_counts
from training.bootstrap import ap_intervals, evaluated
from training.data import load_coco
from training.verdict import FEW_TEST_IMAGES_NOTE


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """4 images: 3 reviewed with the generator's ground truth imported, 1 left unreviewed."""
    folder = tmp_path_factory.mktemp("evaluate")
    project = make_project(folder, num_images=4, size=(128, 128))
    gt = folder / "shapes" / "annotations.json"
    project.import_coco(gt)
    for entry in project.images()[:3]:
        project.store.set_review_state(entry.id, "reviewed")
    with served(project) as url:
        yield project, Client(url, verbose=False)


def test_errors_per_image_equal_pycocotools(studio) -> None:
    project, client = studio
    summary, images, confusion, picture = client.predict(project.model.version, "all reviewed images", 0.5,
                                                         api_name="/evaluate")
    assert "mask AP" in summary and "per class" in summary and Path(picture).is_file()
    rows = {row[0]: row for row in images["data"]}
    assert len(rows) == 3
    # the oracle: the same model's predictions, scored by COCOeval against the exported annotations
    gt = load_coco(project.export_coco(only_reviewed=True))
    names = {name: cid for cid, name in project.categories()}
    results = []
    coco_ids = {e.id: project.store.image(e.id).coco_id for e in project.images()}
    for image_id in rows:
        pred = project.prediction(image_id).filter(0.5)
        results += to_coco_results(pred.masks, pred.scores, pred.classes, coco_ids[image_id],
                                   [names[n] for n in pred.class_names])
    expected = cocoeval_counts(gt, results)
    assert {i: [row[2], row[3]] for i, row in rows.items()} == {i: expected[coco_ids[i]] for i in rows}
    # every AP carries its 95% interval and what it rests on: the bootstrap of the same predictions
    every = []
    for image_id in rows:
        pred = project.prediction(image_id)
        every += to_coco_results(pred.masks, pred.scores, pred.classes, coco_ids[image_id],
                                 [names[n] for n in pred.class_names])
    intervals = ap_intervals(evaluated(gt, every, sorted(coco_ids[i] for i in rows)))
    assert f"mask AP **{intervals['segm/AP'].text()}**" in summary and "(3 images, " in summary
    for name in ("circle", "square", "triangle"):
        assert f"- {name}: {intervals[f'segm/AP-{name}'].text()}" in summary
    assert "include those a fine-tuned model trained on" in summary and FEW_TEST_IMAGES_NOTE in summary
    errors = [row[2] + row[3] for row in images["data"]]
    assert errors == sorted(errors, reverse=True)
    assert confusion["headers"][-1] == "missed" and confusion["data"][-1][0].startswith("background")


def test_review_next_lists_the_unreviewed_images(studio) -> None:
    project, client = studio
    table = client.predict(project.model.version, api_name="/review_next")
    unreviewed = [e.id for e in project.images() if e.review_state != "reviewed"]
    assert [row[0] for row in table["data"]] == unreviewed
    assert all(0.0 <= row[2] <= 1.0 for row in table["data"])
