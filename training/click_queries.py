"""Click-aware training: queries placed at random interior points of the ground-truth objects.

The studio's query tool (:mod:`fastinst.placed_queries`) turns the stride-16 pixel embedding under
a click into a query. The official training never sees such queries: its queries sit where the IA
head is confident. Here every training image also gets queries at uniformly random pixels of its
objects (one per object, more by repeating objects so that every image has as many), decoded by
:func:`~fastinst.placed_queries.decode_with_placed` (attention queries only: the selected queries'
outputs do not change) and supervised, at every head, with the object they were placed on: a
fixed assignment, as the ground-truth-mask-guided pass of FastInst does (paper Sec. 3.4), with the
same class, mask-BCE and dice losses as the matched queries (:class:`~training.losses.FastInstCriterion`)
times ``LossConfig.click_weight``. An image without objects gets queries at random pixels with the
no-object target.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor

from .losses import FastInstCriterion
from .matcher import Match, Target


def sample_clicks(targets: List[Target], map_size: Tuple[int, int], generator: torch.Generator) -> Tuple[Tensor, List[Match]]:
    """Random clicks for a batch: ``(placed (B,P) flat stride-16 positions, matches)``.

    ``targets[i]["masks"] (N_i,Hp,Wp)`` are padded to the network input; ``map_size = (h16, w16)``
    is the size of the map queries are gathered from. ``P = max(1, max_i N_i)``; image ``i``'s
    query ``k`` is placed on object ``k mod N_i`` (``matches[i] = (arange(P), k mod N_i)``), or
    matched to nothing when the image has no object. Positions are drawn with ``generator`` (CPU).
    """
    count = max([1] + [int(t["masks"].shape[0]) for t in targets])
    height, width = map_size
    placed, matches = [], []
    for t in targets:
        masks = t["masks"].cpu()
        n, hp, wp = masks.shape
        if n == 0:
            cells = torch.randint(height * width, (count,), generator=generator)
            matches.append((torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))
        else:
            objects = torch.arange(count) % n
            weights = masks[objects].flatten(1).float()
            weights[weights.sum(1) == 0] = 1.0  # an object lost to cropping: anywhere
            flat = torch.multinomial(weights, 1, generator=generator)[:, 0]
            rows = torch.div(flat, wp, rounding_mode="floor") * height // hp
            cols = (flat % wp) * width // wp
            cells = rows * width + cols
            matches.append((torch.arange(count), objects))
        placed.append(cells)
    return torch.stack(placed), matches


def click_losses(criterion: FastInstCriterion, outputs: Dict[str, object], matches: List[Match],
                 targets: List[Target], num_masks: float) -> Dict[str, Tensor]:
    """Losses of the placed queries of ``outputs`` (from ``decode_with_placed`` in training mode):
    class, mask and dice of every head with the fixed ``matches``, times ``click_weight``;
    keys ``loss_ce_click{j}``, ``loss_mask_click{j}``, ``loss_dice_click{j}``."""
    num_placed = int(outputs["num_placed"])
    weight = criterion.config.click_weight
    losses: Dict[str, Tensor] = {}
    for j, head in enumerate(outputs["heads"]):
        placed = {"pred_logits": head["pred_logits"][:, -num_placed:], "pred_masks": head["pred_masks"][:, -num_placed:]}
        for name, value in criterion.head_losses(placed, matches, targets, num_masks, f"_click{j}").items():
            losses[name] = weight * value
    return losses
