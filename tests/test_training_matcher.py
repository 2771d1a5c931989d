"""Hungarian matcher and proposal matcher: hand-computed costs, known optimal assignments,
empty images, batched-vs-single equivalence and the effect of the location cost."""
import math

import torch

from training.matcher import (HungarianMatcher, ProposalMatcher, masks_inside_cells, pairwise_dice,
                              pairwise_sigmoid_ce)


def full_mask_target(labels, h=16, w=16, boxes=None):
    """Targets whose masks are boxes (y0, y1, x0, x1) in a h x w image."""
    masks = torch.zeros(len(labels), h, w, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    return {"labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def test_pairwise_costs_match_hand_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ce = pairwise_sigmoid_ce(logits, targets)
    # BCE(0.5 vs 1) = ln2, BCE(0.75 vs 0) = ln4 ; BCE(0.5 vs 0) = ln2, BCE(0.75 vs 1) = ln(4/3)
    assert torch.allclose(ce, torch.tensor([[(math.log(2) + math.log(4)) / 2, (math.log(2) + math.log(4 / 3)) / 2]]))
    dice = pairwise_dice(logits, targets)
    # 1 - (2*0.5 + 1) / (1.25 + 1 + 1) and 1 - (2*0.75 + 1) / (1.25 + 1 + 1)
    assert torch.allclose(dice, torch.tensor([[1 - 2 / 3.25, 1 - 2.5 / 3.25]]))


def test_class_and_location_cost_matrix_by_hand():
    """With the mask terms off, cost = 2 * (-p[class]) + 1000 * [location outside object]."""
    matcher = HungarianMatcher(cost_mask=0.0, cost_dice=0.0, num_points=16)
    target = full_mask_target([0, 1], boxes=[(0, 8, 0, 8), (8, 16, 8, 16)])
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]))
    locations = torch.tensor([[0.25, 0.25], [0.25, 0.75]])  # inside object 0 / inside neither
    masks = torch.zeros(2, 2, 2)
    cost = matcher.cost_matrix(logits, masks, locations, target)
    expected = torch.tensor([[-1.0, -0.5 + 1000.0], [-0.2 + 1000.0, -1.2 + 1000.0]])
    assert torch.allclose(cost, expected, atol=1e-5)


def test_known_optimal_assignment():
    torch.manual_seed(0)
    matcher = HungarianMatcher(num_points=256)
    target = full_mask_target([0, 1], boxes=[(0, 16, 0, 8), (0, 16, 8, 16)])
    big = 8.0
    logits = torch.full((3, 3), -big)
    logits[0, 1] = logits[1, 0] = logits[2, 2] = big  # q0 says class 1, q1 class 0, q2 nothing
    masks = torch.full((3, 4, 4), -big)
    masks[0, :, 2:] = big  # q0 draws the right half (object 1)
    masks[1, :, :2] = big  # q1 draws the left half (object 0)
    locations = torch.tensor([[0.75, 0.5], [0.25, 0.5], [0.5, 0.5]])
    rows, cols = matcher.match_one(logits, masks, locations, target)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_location_cost_forbids_queries_outside_their_object():
    """q0 is perfect in class and mask but sits outside the object; q1 is poor but inside."""
    torch.manual_seed(0)
    target = full_mask_target([0], boxes=[(0, 16, 0, 8)])
    logits = torch.tensor([[6.0, -6.0], [0.0, 0.0]])
    masks = torch.full((2, 4, 4), -6.0)
    masks[0, :, :2] = 6.0
    locations = torch.tensor([[0.75, 0.5], [0.25, 0.5]])  # q0 right half (outside), q1 left half
    with_location = HungarianMatcher(num_points=256).match_one(logits, masks, locations, target)
    without = HungarianMatcher(cost_location=0.0, num_points=256).match_one(logits, masks, locations, target)
    assert with_location[0].tolist() == [1]
    assert without[0].tolist() == [0]


def test_empty_image_gives_empty_match_and_batched_equals_single():
    target_a = full_mask_target([1, 0], boxes=[(2, 9, 1, 7), (8, 15, 6, 16)])
    target_empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16, dtype=torch.bool)}
    target_b = full_mask_target([2], boxes=[(0, 5, 0, 16)])
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 4, generator=gen)
    masks = torch.randn(3, 5, 4, 4, generator=gen)
    locations = torch.rand(3, 5, 2, generator=gen)
    targets = [target_a, target_empty, target_b]
    matcher = HungarianMatcher(num_points=64, cost_location=0.0)
    torch.manual_seed(11)
    batched = matcher(logits, masks, locations, targets)
    torch.manual_seed(11)
    single = [matcher.match_one(logits[b], masks[b], locations[b], targets[b]) for b in range(3)]
    assert [len(r) for r, _ in batched] == [2, 0, 1]
    for (r1, c1), (r2, c2) in zip(batched, single):
        assert torch.equal(r1, r2) and torch.equal(c1, c2)
    assert batched[1][0].dtype == torch.int64


def test_masks_inside_cells_marks_any_touched_cell():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 15, 15] = True  # one pixel in cell (0, 0) of a 2x2 grid
    masks[0, 20:22, 30] = True  # cell (1, 1)
    assert masks_inside_cells(masks, (2, 2))[0].tolist() == [[True, False], [False, True]]


def test_proposal_matcher_assigns_each_object_a_pixel_inside_it():
    target = full_mask_target([0, 0], h=32, w=32, boxes=[(0, 16, 0, 16), (16, 32, 16, 32)])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 1] = 5.0  # the most confident pixel (0, 1) lies in neither object
    rows, cols = ProposalMatcher()(logits, [target])[0]
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 0, 1: 3}
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32, dtype=torch.bool)}
    assert ProposalMatcher()(logits, [empty])[0][0].numel() == 0
