"""QueryInst building blocks, checkpoints (official and ours) and the Predictor contract, on the
``tiny`` preset (the official outputs themselves: test_queryinst_reference.py)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from fastinst.errors import CheckpointError
from queryinst import Predictor, build_model, load_checkpoint, save_checkpoint
from queryinst.boxes import decode_deltas, encode_deltas
from queryinst.official import load_official, official_to_ours, ours_to_official, read_official
from queryinst.roi import boxes_to_rois, roi_levels

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).eval()
    with torch.no_grad():  # spread the proposals so that instances differ
        model.proposals.boxes.weight.copy_(torch.rand(32, 4) * torch.tensor([0.6, 0.6, 0.5, 0.5]) + 0.2)
    return model


def _image(seed: int = 0, size=(100, 140)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


def save_official(path, model, meta=None) -> None:
    """Write ``model`` as mmdetection would: ``{'meta', 'state_dict'}`` with official key names."""
    state = {ours_to_official(k): v for k, v in model.state_dict().items()}
    torch.save({"meta": meta or {"dataset_meta": {"classes": tuple(CLASSES)}, "epoch": 12}, "state_dict": state}, path)


def test_box_coder_round_trip_and_clamp():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 8.0, 4.0]])
    targets = torch.tensor([[12.0, 18.0, 60.0, 90.0], [1.0, 1.0, 5.0, 9.0]])
    assert torch.allclose(decode_deltas(boxes, encode_deltas(boxes, targets)), targets, atol=1e-4)
    huge = decode_deltas(boxes[:1], torch.tensor([[0.0, 0.0, 100.0, -100.0]]))
    w, h = huge[0, 2] - huge[0, 0], huge[0, 3] - huge[0, 1]
    assert w.item() == pytest.approx(40 / 0.016, rel=1e-5) and h.item() == pytest.approx(80 * 0.016, rel=1e-5)  # |dw| <= |log 0.016|


def test_roi_level_rule():
    sides = torch.tensor([10.0, 111.9, 112.0, 223.0, 224.0, 447.0, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], 1)
    assert roi_levels(boxes_to_rois(boxes[None]), 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_key_names_round_trip(tiny):
    for key in tiny.state_dict():
        assert official_to_ours(ours_to_official(key)) == key
    assert official_to_ours("sem_seg_head.predictor.class_embed.weight") is None


def test_released_checkpoint_loads_strictly_with_its_class_names(tiny, tmp_path):
    path = tmp_path / "queryinst_tiny_20210907-5a8f1998.pth"
    save_official(path, tiny)
    model = build_model("tiny", num_classes=3)
    load_official(model, path)
    assert read_official(path).class_names == CLASSES
    for key, value in tiny.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_truncated_checkpoint_is_refused(tiny, tmp_path):
    path = tmp_path / "cut.pth"
    save_official(path, tiny)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable checkpoint, the file is truncated or corrupt"):
        load_official(build_model("tiny", num_classes=3), path)


def test_other_models_checkpoint_lists_the_differences(tmp_path):
    from fastinst import build_model as build_fastinst

    path = tmp_path / "fastinst.pth"
    torch.save({"model": build_fastinst("tiny").state_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        load_official(build_model("tiny", num_classes=3), path)
    text = str(info.value)
    assert "fastinst.pth does not fit this model" in text
    assert "missing keys: backbone.stem.conv1.weight" in text and "unexpected keys:" in text


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"meta": _Payload(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_official(path)


def test_partial_loading_for_another_class_count(tiny, tmp_path):
    path = tmp_path / "coco80.pth"
    save_official(path, tiny)
    model = build_model("tiny", num_classes=5)
    with pytest.raises(CheckpointError, match="shape mismatches: stages.0.fc_cls.weight"):
        load_official(model, path)
    report = load_official(model, path, partial=True)
    skipped = {s.split(":")[0] for s in report.skipped}
    stages = range(tiny.num_stages)
    assert skipped == {f"stages.{s}.fc_cls.{p}" for s in stages for p in ("weight", "bias")} | \
        {f"mask_heads.{s}.conv_logits.{p}" for s in stages for p in ("weight", "bias")}
    assert not report.missing and not report.unexpected
    assert torch.equal(model.state_dict()["stages.1.dynamic_conv.dynamic_layer.weight"],
                       tiny.state_dict()["stages.1.dynamic_conv.dynamic_layer.weight"])
    assert "loaded" in report.summary()


def test_our_checkpoint_round_trip_and_foreign_file(tiny, tmp_path):
    path = save_checkpoint(tmp_path / "q.safetensors", tiny, preset="tiny", class_names=CLASSES, metrics={"segm/AP": 1.0})
    model, info = load_checkpoint(path)
    assert info.class_names == CLASSES and info.metrics == {"segm/AP": 1.0}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny.state_dict().items())
    from fastinst import build_model as build_fastinst, save_checkpoint as save_fastinst

    other = save_fastinst(tmp_path / "f.safetensors", build_fastinst("tiny"), preset="tiny", class_names=CLASSES)
    with pytest.raises(CheckpointError, match="not a QueryInst checkpoint"):
        load_checkpoint(other)


def test_released_layout_keeps_backbone_batchnorm_frozen_in_training():
    model = build_model("R50-1x").train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.stages[0].training and model.mask_heads[0].convs[0].norm.training
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())
    assert not any(p.requires_grad for p in model.backbone.res2.parameters())
    assert all(p.requires_grad for p in model.backbone.res3.parameters())


def test_predictor_contract_and_explanation(tiny):
    image = _image()
    pred = Predictor(tiny, CLASSES, device="cpu").predict(image)
    n = tiny.num_proposals
    assert pred.masks.shape == (n, 100, 140) and pred.masks.dtype == bool
    assert pred.scores.shape == (n,) and np.all(np.diff(pred.scores) <= 0)
    assert pred.classes.dtype == np.int64 and set(pred.classes) <= {0, 1, 2}
    assert pred.boxes.shape == (n, 4) and pred.query_indices.shape == (n,)
    exp = pred.explanation
    assert exp.num_layers == tiny.num_stages
    q = int(pred.query_indices[0])
    track = exp.box_track(q)
    assert track.shape == (tiny.num_stages + 1, 4)
    assert np.allclose(exp.box_motion(q).sum(0), track[-1] - track[0], atol=1e-3)
    assert np.allclose(track[-1], pred.boxes[0])
    masks = exp.layer_masks(q)
    assert masks.shape == (tiny.num_stages, 100, 140)
    # the last stage's explanation mask of the query's own best class is the predicted mask
    i = next(i for i in range(n) if pred.classes[i] == exp.query_classes[pred.query_indices[i]])
    assert np.array_equal(exp.layer_mask(int(pred.query_indices[i]), tiny.num_stages - 1), pred.masks[i])
    # the explanation comes from the same pass: no second forward changes the prediction
    fast = Predictor(tiny, CLASSES, device="cpu", explain=False).predict(image)
    assert fast.explanation is None and np.array_equal(fast.masks, pred.masks)
    kept = pred.filter(float(pred.scores[3]))
    assert len(kept) >= 4 and kept.boxes.shape == (len(kept), 4)
    # min_score in the predictor (masks of the others never pasted) equals filtering afterwards
    direct = Predictor(tiny, CLASSES, device="cpu").predict(image, min_score=float(pred.scores[3]))
    assert len(direct) == len(kept) and np.array_equal(direct.masks, kept.masks)
    assert np.array_equal(direct.scores, kept.scores) and np.array_equal(direct.query_indices, kept.query_indices)


def test_predictor_rejects_wrong_class_names(tiny):
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        Predictor(tiny, CLASSES[:2], device="cpu")


def test_masks_lie_in_their_boxes(tiny):
    pred = Predictor(tiny, CLASSES, device="cpu", explain=False).predict(_image(1))
    for mask, box in zip(pred.masks, pred.boxes):
        ys, xs = np.nonzero(mask)
        if len(ys):
            assert xs.min() >= np.floor(box[0]) - 1 and xs.max() <= np.ceil(box[2]) + 1
            assert ys.min() >= np.floor(box[1]) - 1 and ys.max() <= np.ceil(box[3]) + 1
