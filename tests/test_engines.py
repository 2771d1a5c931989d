"""The contract both models meet (engines.contract), the one loader (engines.load) and the one
predict command for either model (``python -m fastinst predict`` / ``python -m queryinst predict``),
its results read back with pycocotools."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from engines import contract
from engines.load import load_predictor, weights_model
from fastinst.errors import CheckpointError

CLASSES = ["circle", "square", "triangle"]


def tiny_queryinst():
    """A QueryInst tiny model whose proposals are spread so that instances differ (random weights)."""
    from queryinst import build_model

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).eval()
    with torch.no_grad():
        model.proposals.boxes.weight.copy_(torch.rand(32, 4) * torch.tensor([0.6, 0.6, 0.5, 0.5]) + 0.2)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from fastinst import build_model as build_fastinst, save_checkpoint as save_fastinst
    from queryinst import save_checkpoint as save_queryinst

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {"fastinst": save_fastinst(folder / "f.safetensors", build_fastinst("tiny", num_classes=3).eval(),
                                      preset="tiny", class_names=CLASSES),
            "queryinst": save_queryinst(folder / "q.safetensors", tiny_queryinst(), preset="tiny", class_names=CLASSES)}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, size in enumerate([(96, 128), (120, 90)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_mask_boxes_agree_with_pycocotools():
    rng = np.random.default_rng(1)
    masks = np.zeros((4, 30, 40), bool)
    masks[0, 3:9, 5:6] = True
    masks[1, 29, 39] = True
    masks[2] = rng.random((30, 40)) > 0.97
    boxes = contract.mask_boxes(torch.from_numpy(masks)).numpy()
    for mask, box in zip(masks[:3], boxes[:3]):
        x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
        assert np.allclose(box, [x, y, x + w, y + h])
    assert np.array_equal(boxes[3], np.zeros(4))  # empty mask


@pytest.mark.parametrize("model", ["fastinst", "queryinst"])
def test_both_models_meet_the_contract(model, checkpoints, images):
    loaded = load_predictor(checkpoints[model], device="cpu")
    assert loaded.model == model and loaded.preset == "tiny"
    predictor = loaded.predictor
    assert isinstance(predictor, contract.Predictor) and predictor.class_names == CLASSES
    preds = predictor.predict_batch([images / "im0.png", images / "im1.png"])
    for pred, size in zip(preds, [(96, 128), (120, 90)]):
        assert isinstance(pred, contract.Prediction) and pred.image_size == size
        n = len(pred)
        assert pred.masks.shape == (n, *size) and pred.masks.dtype == bool
        assert pred.boxes.shape == (n, 4) and pred.boxes.dtype == np.float32
        assert pred.classes.dtype == np.int64 and pred.query_indices.shape == (n,)
        assert np.all(np.diff(pred.scores) <= 0)
        exp = pred.explanation
        assert isinstance(exp, contract.Explanation) and exp.model == model
        q = int(pred.query_indices[0])
        layers = exp.layer_masks(q)
        assert layers.shape == (exp.num_layers, *size) and len(exp.layer_titles()) == exp.num_layers
        boxes = exp.layer_boxes(q)
        assert boxes is None if model == "fastinst" else boxes.shape == (exp.num_layers, 4)
        kept = pred.filter(float(pred.scores[min(2, n - 1)]))
        assert type(kept) is type(pred) and kept.boxes.shape == (len(kept), 4)


def test_a_checkpoint_of_the_other_model_is_refused_by_name(checkpoints):
    assert weights_model(checkpoints["queryinst"]) == "queryinst"
    with pytest.raises(CheckpointError, match="q.safetensors holds a QueryInst model, not FastInst"):
        load_predictor(checkpoints["queryinst"], model="fastinst", device="cpu")
    with pytest.raises(CheckpointError, match="f.safetensors holds a FastInst model, not QueryInst"):
        load_predictor(checkpoints["fastinst"], model="queryinst", device="cpu")


def test_queryinst_predict_writes_the_predictors_results(checkpoints, images, tmp_path, capsys):
    from queryinst.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(images), "--weights", str(checkpoints["queryinst"]), "--out", str(out),
                 "--score-threshold", "0", "--device", "cpu"]) == 0
    catalogue = json.loads((out / "images.json").read_text())
    assert (out / "im0.png.overlay.png").is_file()
    gt = COCO()
    gt.dataset = {**catalogue, "annotations": []}
    gt.createIndex()
    dt = gt.loadRes(str(out / "results.json"))
    predictor = load_predictor(checkpoints["queryinst"], device="cpu").predictor
    for entry in catalogue["images"]:
        pred = predictor.predict(images / entry["file_name"])
        anns = sorted(dt.loadAnns(dt.getAnnIds(imgIds=[entry["id"]])), key=lambda a: -a["score"])
        assert len(anns) == len(pred) == 32
        assert np.allclose([a["score"] for a in anns], pred.scores, atol=1e-6)
        masks = np.stack([dt.annToMask(a).astype(bool) for a in anns])
        order = np.argsort(-pred.scores, kind="stable")
        assert np.array_equal(masks, pred.masks[order])
        assert [a["category_id"] for a in anns] == [int(c) + 1 for c in pred.classes[order]]
    # the QueryInst command refuses FastInst weights with one clear line
    assert main(["predict", str(images), "--weights", str(checkpoints["fastinst"]), "--out", str(tmp_path / "x"),
                 "--device", "cpu"]) == 2
    assert "holds a FastInst model, not QueryInst" in capsys.readouterr().err
