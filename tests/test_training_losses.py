"""Each loss against hand-computed values, and the criterion's wiring (which output gets what)."""
import math

import torch
import torch.nn.functional as F

from training.losses import (FastInstCriterion, LossConfig, classification_loss, dice_loss,
                             guided_attention_mask, proposal_loss, sigmoid_ce_loss)

LN2, LN3 = math.log(2.0), math.log(3.0)


def box_target(labels, boxes, h=16, w=16):
    masks = torch.zeros(len(labels), h, w, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    return {"labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def idx(*pairs):
    return (torch.tensor([p[0] for p in pairs], dtype=torch.int64), torch.tensor([p[1] for p in pairs], dtype=torch.int64))


def test_sigmoid_ce_and_dice_by_hand():
    logits = torch.tensor([[0.0, LN3], [LN3, LN3]])  # probabilities (.5, .75) and (.75, .75)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # mask 0: (ln2 + ln4) / 2 ; mask 1: ln(4/3) ; divided by num_masks = 4
    expected_ce = ((LN2 + 2 * LN2) / 2 + math.log(4 / 3)) / 4
    assert math.isclose(sigmoid_ce_loss(logits, labels, 4.0).item(), expected_ce, rel_tol=1e-6)
    # mask 0: 1 - (2*.5 + 1)/(1.25 + 1 + 1) ; mask 1: 1 - (2*1.5 + 1)/(1.5 + 2 + 1)
    expected_dice = ((1 - 2 / 3.25) + (1 - 4 / 4.5)) / 4
    assert math.isclose(dice_loss(logits, labels, 4.0).item(), expected_dice, rel_tol=1e-6)


def test_classification_loss_weights_no_object_by_point_one():
    logits = torch.tensor([[[0.0, 0.0], [LN3, 0.0]]])  # K = 1: q0 (.5,.5), q1 (.75,.25)
    target = box_target([0], [(0, 4, 0, 4)])
    weight = torch.tensor([1.0, 0.1])
    loss = classification_loss(logits, [idx((0, 0))], [target], weight)
    # q0 -> class 0: ln2 (w 1); q1 -> no object: -ln(1/4) = 2 ln2 (w 0.1)
    expected = (LN2 + 0.1 * 2 * LN2) / 1.1
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_proposal_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, LN3]]).T.reshape(1, 2, 1, 2)  # pixel0 (.5,.5), pixel1 (.25,.75)
    target = box_target([0], [(0, 4, 0, 4)])
    loss = proposal_loss(logits, [idx((0, 0))], [target])
    assert math.isclose(loss.item(), (LN2 + math.log(4 / 3)) / 2, rel_tol=1e-6)


def test_point_sampled_mask_losses_estimate_the_dense_losses():
    """With many uniform points the point-sampled losses converge to the dense ones."""
    torch.manual_seed(0)
    crit = FastInstCriterion(1, LossConfig(num_points=200_000, importance_ratio=0.0, oversample_ratio=1.0))
    target = box_target([0], [(8, 56, 16, 48)], h=64, w=64)
    ys, xs = torch.meshgrid(torch.linspace(0, 3, 64), torch.linspace(0, 3, 64), indexing="ij")
    pred = (3 * torch.sin(xs) * torch.cos(ys) + 0.5).view(1, 1, 64, 64)  # smooth, so bilinear ~ exact
    bce, dice = crit.mask_losses(pred, [idx((0, 0))], [target], num_masks=1.0)
    gt = target["masks"].float()
    dense_bce = F.binary_cross_entropy_with_logits(pred[0], gt).item()
    dense_dice = dice_loss(pred[0].flatten(1), gt.flatten(1), 1.0).item()
    assert abs(bce.item() - dense_bce) < 0.03 * dense_bce
    assert abs(dice.item() - dense_dice) < 0.02


def fake_outputs(batch=2, q=4, k=2, layers=1, h=4, w=4, guided_matches=None, requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=gen).requires_grad_(requires_grad)  # noqa: E731
    heads = [{"pred_logits": make(batch, q, k + 1), "pred_masks": make(batch, q, h, w)} for _ in range(layers + 1)]
    out = {"proposal_logits": make(batch, k + 1, h // 2, w // 2), "query_locations": torch.rand(batch, q, 2, generator=gen),
           "heads": heads, "pred_logits": heads[-1]["pred_logits"], "pred_masks": heads[-1]["pred_masks"]}
    if guided_matches is not None:
        out["guided"] = [{"pred_logits": make(batch, q, k + 1), "pred_masks": make(batch, q, h, w),
                          "matching_indices": guided_matches} for _ in range(layers)]
    return out


def test_criterion_supervises_every_head_and_the_guided_pass():
    targets = [box_target([1], [(0, 8, 0, 8)], h=32, w=32), box_target([], [], h=32, w=32)]
    matches = [idx((2, 0)), idx()]
    out = fake_outputs(layers=2, guided_matches=matches)
    crit = FastInstCriterion(2, LossConfig(num_points=64))
    losses = crit(out, targets)
    names = {"loss_proposal"} | {f"loss_{n}{s}" for n in ("ce", "mask", "dice")
                                 for s in ("", "_head0", "_head1", "_guided0", "_guided1")}
    assert set(losses) == names
    # the guided heads use the given fixed matching: check one against the hand-wired loss
    g = out["guided"][1]
    expected_ce = 2.0 * classification_loss(g["pred_logits"], matches, targets, crit.empty_weight)
    assert torch.allclose(losses["loss_ce_guided1"], expected_ce)
    sum(losses.values()).backward()
    for tensor in [out["proposal_logits"]] + [h[k] for h in out["heads"] + out["guided"] for k in ("pred_logits", "pred_masks")]:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    assert out["guided"][0]["pred_masks"].grad.abs().sum() > 0


def test_criterion_on_images_without_objects_is_finite_and_connected():
    targets = [box_target([], [], h=32, w=32), box_target([], [], h=32, w=32)]
    out = fake_outputs(guided_matches=[idx(), idx()])
    losses = FastInstCriterion(2, LossConfig(num_points=64))(out, targets)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert out["pred_masks"].grad is not None  # zero, but the graph reaches every output
    # everything is "no object": the class loss is the weighted CE towards class K
    expected = 2.0 * F.cross_entropy(out["pred_logits"].detach().transpose(1, 2), torch.full((2, 4), 2))
    assert torch.allclose(losses["loss_ce"], expected)


def test_deep_supervision_off_keeps_only_the_final_head():
    targets = [box_target([0], [(0, 8, 0, 8)], h=32, w=32)] * 2
    losses = FastInstCriterion(2, LossConfig(num_points=64, deep_supervision=False))(fake_outputs(layers=2), targets)
    assert set(losses) == {"loss_proposal", "loss_ce", "loss_mask", "loss_dice"}


def test_guided_attention_mask_by_hand():
    target = box_target([0, 1], [(0, 8, 0, 8), (15, 16, 15, 16)])  # object 1 misses every nearest sample
    blocked = guided_attention_mask(torch.Size([1, 3, 2, 2]), [idx((1, 0), (2, 1))], [target], num_aux_queries=1)
    assert blocked.shape == (1, 4, 4)
    assert blocked[0, 1].tolist() == [False, True, True, True]  # only cell (0,0) is inside object 0
    assert not blocked[0, 0].any()  # unmatched query: attends everywhere
    assert not blocked[0, 2].any()  # blocked everywhere -> released
    assert not blocked[0, 3].any()  # auxiliary query


def test_mask_guide_returns_matches_of_the_last_head():
    torch.manual_seed(0)
    targets = [box_target([1], [(0, 16, 0, 16)], h=32, w=32), box_target([], [], h=32, w=32)]
    out = fake_outputs(requires_grad=False)
    crit = FastInstCriterion(2, LossConfig(num_points=64))
    blocked, matches = crit.mask_guide(targets, num_aux_queries=2)(out["heads"][-1], out["query_locations"])
    assert blocked.shape == (2, 6, 16)
    assert len(matches[0][0]) == 1 and len(matches[1][0]) == 0
    q = int(matches[0][0][0])
    assert blocked[0, q].tolist() == [False, False, True, True] * 2 + [True] * 8
