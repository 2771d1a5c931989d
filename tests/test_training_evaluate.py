"""COCO evaluation against pycocotools itself: perfect results score 100, wrong classes 0, and a
real (untrained) model runs end to end."""
import json

import numpy as np
import torch
from pycocotools import mask as mask_utils

from fastinst import build_model
from fastinst.coco_results import encode_mask
from training.data import CocoInstances
from training.evaluate import category_ids_for, coco_mask_metrics, evaluate_model
from training.synthetic import make_shapes_dataset


def ground_truth_results(coco, category_map=None):
    results = []
    for ann in coco.dataset["annotations"]:
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        cat = ann["category_id"] if category_map is None else category_map[ann["category_id"]]
        results.append({"image_id": ann["image_id"], "category_id": cat, "segmentation": encode_mask(mask), "score": 0.9})
    return results


def test_perfect_and_wrong_class_results(tmp_path):
    path = make_shapes_dataset(tmp_path, 10, seed=4, size=(64, 64))
    ds = CocoInstances(path, tmp_path / "images")
    perfect = coco_mask_metrics(ds.coco, ground_truth_results(ds.coco), ds.image_ids)
    assert perfect["segm/AP"] == 100.0 and perfect["segm/AP-circle"] == 100.0
    rotate = {1: 2, 2: 3, 3: 1}
    wrong = coco_mask_metrics(ds.coco, ground_truth_results(ds.coco, rotate), ds.image_ids)
    assert wrong["segm/AP"] == 0.0
    assert coco_mask_metrics(ds.coco, [], ds.image_ids)["segm/AP"] == 0.0


def test_missing_area_and_iscrowd_are_filled(tmp_path):
    path = make_shapes_dataset(tmp_path, 4, seed=2, size=(64, 64))
    data = json.loads(path.read_text())
    for ann in data["annotations"]:
        del ann["area"], ann["iscrowd"]
    path.write_text(json.dumps(data))
    ds = CocoInstances(path, tmp_path / "images")
    assert coco_mask_metrics(ds.coco, ground_truth_results(ds.coco), ds.image_ids)["segm/AP"] == 100.0


def test_untrained_model_evaluates_end_to_end(tmp_path):
    torch.manual_seed(0)
    path = make_shapes_dataset(tmp_path, 3, seed=5, size=(96, 96))
    model = build_model("tiny", num_classes=3)
    metrics = evaluate_model(model, ["circle", "square", "triangle"], path, tmp_path / "images", progress=False)
    assert set(metrics) >= {"segm/AP", "segm/AP50", "segm/AP-triangle"}
    assert 0.0 <= metrics["segm/AP"] < 20.0
    assert model.training  # restored


def test_category_mapping_by_name_then_position(tmp_path):
    path = make_shapes_dataset(tmp_path, 2, seed=5, size=(64, 64))
    ds = CocoInstances(path, tmp_path / "images")
    assert category_ids_for(["triangle", "circle", "square"], ds) == [3, 1, 2]
    assert category_ids_for(["a", "b", "c"], ds) == [1, 2, 3]
    assert np.array_equal(category_ids_for(ds.class_names, ds), [1, 2, 3])
