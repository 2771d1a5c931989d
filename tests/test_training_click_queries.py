"""Click-aware training (training.click_queries): where the clicks land, and that their losses
train the decoder through the placed queries."""
from __future__ import annotations

import torch

from fastinst import build_model
from fastinst.placed_queries import decode_with_placed
from training.click_queries import click_losses, sample_clicks
from training.losses import FastInstCriterion, LossConfig


def targets_two_images() -> list[dict]:
    masks = torch.zeros(3, 128, 160, dtype=torch.bool)
    masks[0, 10:40, 20:50] = True
    masks[1, 70:120, 100:150] = True
    masks[2, 64:66, 0:3] = True
    return [{"labels": torch.tensor([0, 1, 2]), "masks": masks},
            {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 128, 160, dtype=torch.bool)}]


def test_clicks_land_on_their_objects_and_match_them():
    targets = targets_two_images()
    placed, matches = sample_clicks(targets, (8, 10), torch.Generator().manual_seed(0))
    assert placed.shape == (2, 3)
    src, tgt = matches[0]
    assert src.tolist() == [0, 1, 2] and tgt.tolist() == [0, 1, 2]
    for k, obj in enumerate(tgt.tolist()):
        cells = targets[0]["masks"][obj].view(8, 16, 10, 16).any(dim=(1, 3)).flatten()
        assert cells[placed[0, k]], f"click {k} is not on object {obj}"
    assert matches[1][0].numel() == 0 and ((0 <= placed[1]) & (placed[1] < 80)).all()


def test_click_losses_train_the_decoder_through_the_placed_queries():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).train()
    targets = targets_two_images()
    images = torch.randn(2, 3, 128, 160)
    out = model(images)
    placed, matches = sample_clicks(targets, tuple(out["features"][1].shape[-2:]), torch.Generator().manual_seed(0))
    clicked = decode_with_placed(model.decoder, out["features"], placed)
    criterion = FastInstCriterion(3, LossConfig(num_points=256, click_weight=0.5))
    losses = click_losses(criterion, clicked, matches, targets, num_masks=3.0)
    heads = len(model.decoder.layers) + 1
    assert sorted(losses) == sorted(f"loss_{n}_click{j}" for n in ("ce", "mask", "dice") for j in range(heads))
    plain = FastInstCriterion(3, LossConfig(num_points=256)).head_losses(
        {"pred_logits": clicked["heads"][0]["pred_logits"][:, -3:], "pred_masks": clicked["heads"][0]["pred_masks"][:, -3:]},
        matches, targets, 3.0, "")
    assert torch.isclose(losses["loss_ce_click0"], 0.5 * plain["loss_ce"])  # the weight scales the usual loss
    sum(losses.values()).backward()
    assert model.decoder.heads[-1].class_mlp.layers[0].weight.grad.abs().sum() > 0
    assert model.decoder.layers[0].query_cross_attn.attn.in_proj_weight.grad.abs().sum() > 0
