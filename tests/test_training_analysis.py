"""Evaluate-view analysis: per-image false positives and negatives equal pycocotools' own matching
(``COCOeval.evalImgs`` at IoU 0.5) on a real model's predictions; wrong classes, the confusion
matrix and the review-next uncertainty behave as documented."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from app.demo import DEMO_WEIGHTS
from fastinst import Predictor, load_checkpoint
from fastinst.coco_results import encode_mask
from training.analysis import analyse, image_uncertainty, mask_change, match_image, rank_for_review
from training.data import CocoInstances
from training.data import load_coco
from training.evaluate import category_ids_for, collect_results
from training.synthetic import SHIFTED_SCENE, make_shapes_dataset


def cocoeval_counts(gt, results, iou=0.5):
    """Per image (FP, FN) from pycocotools' matching: unmatched, non-ignored detections and
    ground truths of every category at the 'all' area range and the largest maxDets."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.iouThrs = np.array([iou])
        ev.evaluate()
    counts = {i: [0, 0] for i in gt.getImgIds()}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        dt_unmatched = (e["dtMatches"][0] == 0) & ~e["dtIgnore"][0].astype(bool)
        gt_unmatched = (e["gtMatches"][0] == 0) & ~np.asarray(e["gtIgnore"]).astype(bool)
        counts[e["image_id"]][0] += int(dt_unmatched.sum())
        counts[e["image_id"]][1] += int(gt_unmatched.sum())
    return counts


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    """The demo model's predictions on shifted-domain scenes (many errors of every kind)."""
    root = tmp_path_factory.mktemp("analysis")
    path = make_shapes_dataset(root, 16, seed=21, size=(128, 128), config=SHIFTED_SCENE)
    dataset = CocoInstances(path, root / "images", keep_empty=True)
    model, info = load_checkpoint(DEMO_WEIGHTS)
    model.eval()
    results = collect_results(model, dataset, category_ids_for(info.class_names, dataset), progress=False)
    return load_coco(path).dataset, dataset, results


@pytest.mark.parametrize("min_score", [0.0, 0.5])
def test_fp_fn_per_image_equal_pycocotools(predictions, min_score):
    coco, dataset, results = predictions
    results = [r for r in results if r["score"] >= min_score]
    expected = cocoeval_counts(dataset.coco, results)
    analysis = analyse(coco, results, min_score=min_score)
    got = {e.image_id: [len(e.false_positives), len(e.false_negatives)] for e in analysis.images}
    assert got == expected
    assert sum(fp for fp, _ in got.values()) > 5 and sum(fn for _, fn in got.values()) > 5  # a real test
    errors = [e.errors for e in analysis.images]
    assert errors == sorted(errors, reverse=True)  # worst first


def test_crowd_regions_absorb_detections_and_are_never_missed(predictions):
    coco, dataset, results = predictions
    coco = json.loads(json.dumps(coco))
    for ann in coco["annotations"][::3]:
        ann["iscrowd"] = 1
    gt_coco = COCO()
    gt_coco.dataset = coco
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco.createIndex()
    expected = cocoeval_counts(gt_coco, results)
    got = {e.image_id: [len(e.false_positives), len(e.false_negatives)] for e in analyse(coco, results).images}
    assert got == expected


def test_wrong_class_and_confusion():
    mask = np.zeros((20, 20), bool)
    mask[2:10, 2:10] = True
    other = np.zeros((20, 20), bool)
    other[12:18, 12:18] = True
    image = {"id": 1, "height": 20, "width": 20}
    gts = [{"image_id": 1, "category_id": 1, "segmentation": encode_mask(mask), "iscrowd": 0},
           {"image_id": 1, "category_id": 2, "segmentation": encode_mask(other), "iscrowd": 0}]
    dets = [{"image_id": 1, "category_id": 2, "segmentation": encode_mask(mask), "score": 0.9},   # wrong class
            {"image_id": 1, "category_id": 2, "segmentation": encode_mask(other), "score": 0.8}]  # right
    errs = match_image(image, gts, dets)
    assert errs.matches == [(1, 1)] and errs.false_positives == [0] and errs.false_negatives == [0]
    assert errs.wrong_class == [(0, 0)]
    coco = {"images": [image], "annotations": gts, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    result = analyse(coco, dets)
    assert result.labels == ["a", "b"]
    assert result.confusion.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_review_next_uses_the_decoder_layers(predictions):
    coco, dataset, _ = predictions
    predictor = Predictor.from_checkpoint(DEMO_WEIGHTS, device="cpu")
    ranked = {}
    for index in range(4):
        pred = predictor.predict(dataset.load_image(index).permute(1, 2, 0).numpy())
        u = image_uncertainty(pred)
        assert 0.0 <= u.mask_change <= 1.0 and 0.0 <= u.ambiguity <= 1.0
        assert u.score == max(u.ambiguity, u.mask_change) or u.instances == 0
        ranked[index] = u
    order = [i for i, _ in rank_for_review(ranked)]
    assert [ranked[i].score for i in order] == sorted((u.score for u in ranked.values()), reverse=True)
    a = np.zeros((3, 4, 4), bool)
    a[1, :2] = True
    a[2, :1] = True
    assert mask_change(a) == pytest.approx(0.5)
