"""QueryInst's training recipe: matching costs, losses and a few optimisation steps on the tiny preset.

Oracles: torchvision's ``sigmoid_focal_loss`` and ``generalized_box_iou`` for the costs, exact
small cases for dice and mask targets.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from queryinst import build_model
from queryinst.criterion import QueryInstCriterion, boxes_from_masks, dice_loss, mask_targets
from queryinst.matcher import HungarianMatcher, focal_cost


def test_focal_cost_is_the_focal_loss_difference():
    torch.manual_seed(0)
    logits = torch.randn(6, 4) * 3
    labels = torch.tensor([2, 0, 3])
    cost = focal_cost(logits, labels)
    for g, c in enumerate(labels.tolist()):
        pos = sigmoid_focal_loss(logits[:, c], torch.ones(6), reduction="none")
        neg = sigmoid_focal_loss(logits[:, c], torch.zeros(6), reduction="none")
        assert torch.allclose(cost[:, g], pos - neg, atol=1e-5)


def test_matcher_finds_the_right_query_and_handles_no_targets():
    torch.manual_seed(0)
    logits = torch.randn(10, 3) - 4
    boxes = torch.rand(10, 2).repeat(1, 2) * 50 + torch.tensor([0, 0, 20, 20])
    target = torch.tensor([[60.0, 10.0, 90.0, 70.0]])
    logits[7, 1], boxes[7] = 5.0, target[0] + 0.5
    rows, cols = HungarianMatcher()(logits, boxes, torch.tensor([1]), target, (100, 120))
    assert rows.tolist() == [7] and cols.tolist() == [0]
    rows, cols = HungarianMatcher()(logits, boxes, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), (100, 120))
    assert rows.numel() == 0 and cols.numel() == 0


def test_dice_and_mask_targets():
    full = torch.ones(1, 28 * 28)
    assert dice_loss(full, full).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(full, torch.zeros_like(full)).item() == pytest.approx(1.0, abs=1e-6)
    mask = torch.zeros(1, 60, 80, dtype=torch.bool)
    mask[0, 10:40, 20:50] = True
    assert boxes_from_masks(mask).tolist() == [[20.0, 10.0, 50.0, 40.0]]
    cut = mask_targets(mask, boxes_from_masks(mask), 28)
    assert cut.shape == (1, 28, 28) and bool(cut.all())
    left_half = mask_targets(mask, torch.tensor([[5.0, 10.0, 35.0, 40.0]]), 28)  # box half outside the object
    assert bool(left_half[0, :, 16:].all()) and not bool(left_half[0, :, :12].any())


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two spinning threads made these steps ~7x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(model):
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8, generator=g),
              torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)]
    masks = torch.zeros(2, 128, 128, dtype=torch.bool)
    masks[0, 10:50, 20:60] = True
    masks[1, 60:100, 30:90] = True
    targets = [{"labels": torch.tensor([0, 2]), "masks": masks, "boxes": boxes_from_masks(masks)},
               {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 96, 128, dtype=torch.bool),
                "boxes": torch.zeros(0, 4)}]
    batch, sizes = model.preprocess(images)
    return batch, sizes, targets


def test_every_stage_is_supervised_and_trains(one_thread):
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).train()
    batch, sizes, targets = _batch(model)
    criterion = QueryInstCriterion()
    losses = criterion(model, model(batch, sizes, mask_stages="none"), targets, sizes)
    names = {f"stage{s}/{t}" for s in range(model.num_stages) for t in ("cls", "l1", "giou", "mask")}
    assert names | {"total"} == set(losses)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["total"].backward()
    for s in range(model.num_stages):
        assert model.stages[s].fc_cls.weight.grad.abs().sum() > 0
        assert model.stages[s].fc_reg.weight.grad.abs().sum() > 0
        assert model.mask_heads[s].conv_logits.weight.grad.abs().sum() > 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = losses["total"].item()
    for _ in range(12):
        optimizer.zero_grad()
        loss = criterion(model, model(batch, sizes, mask_stages="none"), targets, sizes)["total"]
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * first


def test_image_without_objects_gives_only_classification_loss():
    model = build_model("tiny", num_classes=3).train()
    batch, sizes, targets = _batch(model)
    losses = QueryInstCriterion()(model, model(batch[1:], sizes[1:], mask_stages="none"), targets[1:], sizes[1:])
    assert losses["stage0/cls"] > 0
    assert all(losses[f"stage{s}/{t}"] == 0 for s in range(model.num_stages) for t in ("l1", "giou", "mask"))
    losses["total"].backward()


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # 43 minutes on the shared 2-core machine; the default 900 s cannot hold it
def test_tiny_trains_on_synthetic_shapes_to_held_out_ap(tmp_path):
    """The tiny preset from scratch on the demo's synthetic shapes, evaluated on held-out scenes.

    Measured (queryinst/README.md): mask AP 71.6 after 1000 iterations of 8 images, 43 minutes on the shared 2-core CPU.
    """
    from training.make_demo_model import make_demo_dataset
    from training.queryinst_trainer import tiny_config
    from training.trainer import train
    from queryinst.checkpoint import load_checkpoint

    train_json, val_json = make_demo_dataset(tmp_path / "data")
    path = train(tiny_config(train_json=str(train_json), image_root=str(train_json.parent / "images"),
                             val_json=str(val_json), val_image_root=str(val_json.parent / "images"),
                             max_iters=1000, output_dir=str(tmp_path / "run"), device="cpu", num_workers=0))
    _, info = load_checkpoint(path)
    assert info.metrics["segm/AP"] >= MIN_HELD_OUT_AP


MIN_HELD_OUT_AP = 65.0  # measured 71.6 (queryinst/README.md)
