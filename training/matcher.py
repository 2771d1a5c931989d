"""Hungarian matching between FastInst predictions and ground-truth instances.

Two matchers, both run under ``no_grad`` and solved with ``scipy.optimize.linear_sum_assignment``:

- :class:`HungarianMatcher` for the decoder's queries: cost = ``w_class * (-p[class])``
  + ``w_mask * BCE`` + ``w_dice * dice`` on shared random points + ``w_location * outside``,
  where ``outside`` is 1 when the query's location (the pixel it was selected from) is not inside
  the object, so such pairs are effectively forbidden (FastInst's location cost, weight 1000).
- :class:`ProposalMatcher` for the instance-activation (IA) head: every object is assigned one
  stride-16 pixel, cost = ``w_class * (-p[class]) + w_location * outside``.

A target is a dict ``{"labels": (N,) int64 in [0, K), "masks": (N, Hp, Wp) bool/float}`` with the
masks zero-padded to the padded batch size, so normalised coordinates agree with the predictions.
A match is a tuple ``(pred_idx (M,) int64, target_idx (M,) int64)`` with ``M = min(#preds, N)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .points import point_sample

Target = Dict[str, Tensor]
Match = Tuple[Tensor, Tensor]


def pairwise_sigmoid_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean BCE-with-logits of every prediction against every target over P points.

    ``logits (Q,P)``, ``targets (N,P)`` in [0,1] -> ``(Q,N)``.
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = pos @ targets.T + neg @ (1.0 - targets).T
    return cost / logits.shape[1]


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Dice loss ``1 - (2|p∩t| + 1) / (|p| + |t| + 1)`` for every pair: ``(Q,P), (N,P) -> (Q,N)``."""
    probs = logits.sigmoid()
    numerator = 2.0 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


def solve(cost: Tensor) -> Match:
    """Minimum-cost assignment of a ``(num_preds, num_targets)`` cost matrix."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def empty_match() -> Match:
    """The match of an image without objects."""
    return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)


@dataclass
class HungarianMatcher:
    """Matches queries to objects; the official FastInst costs are the defaults."""

    cost_class: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    cost_location: float = 1000.0
    num_points: int = 12544

    @torch.no_grad()
    def __call__(self, logits: Tensor, masks: Tensor, locations: Tensor, targets: List[Target]) -> List[Match]:
        """Match each image of the batch separately.

        Args:
            logits: ``(B,Q,K+1)`` class logits (index K = no object).
            masks: ``(B,Q,h,w)`` mask logits.
            locations: ``(B,Q,2)`` query locations ``(x, y)`` in ``[0,1]``.
            targets: B target dicts.
        Returns:
            B matches ``(query_idx, target_idx)``, each of length ``min(Q, N_b)``.
        """
        return [
            self.match_one(logits[b], masks[b], locations[b], targets[b]) for b in range(logits.shape[0])
        ]

    def match_one(self, logits: Tensor, masks: Tensor, locations: Tensor, target: Target) -> Match:
        """One image: ``logits (Q,K+1)``, ``masks (Q,h,w)``, ``locations (Q,2)``, a target dict."""
        labels = target["labels"]
        if labels.numel() == 0:
            return empty_match()
        with torch.autocast(device_type=masks.device.type, enabled=False):  # costs in fp32 under AMP
            return solve(self.cost_matrix(logits, masks, locations, target))

    def cost_matrix(self, logits: Tensor, masks: Tensor, locations: Tensor, target: Target) -> Tensor:
        """The ``(Q, N)`` matching cost of one image (see the module docstring)."""
        labels = target["labels"]
        gt = target["masks"].to(device=masks.device, dtype=torch.float32).unsqueeze(0)  # (1,N,H,W)
        cost_class = -logits.float().softmax(-1)[:, labels]
        inside = point_sample(gt, locations.float().unsqueeze(0))[0] > 0  # (N,Q)
        cost_location = (~inside).T.float()
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        gt_points = point_sample(gt, coords)[0]  # (N,P)
        pred_points = point_sample(masks.float().unsqueeze(0), coords)[0]  # (Q,P)
        return (
            self.cost_class * cost_class
            + self.cost_mask * pairwise_sigmoid_ce(pred_points, gt_points)
            + self.cost_dice * pairwise_dice(pred_points, gt_points)
            + self.cost_location * cost_location
        )


def masks_inside_cells(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """Which cells of a ``size`` grid each object touches: ``(N,H,W) -> (N,h,w)`` bool.

    A cell counts as inside when any pixel of the object falls in it (adaptive average > 0).
    """
    if masks.shape[0] == 0:
        return torch.zeros(0, *size, dtype=torch.bool, device=masks.device)
    return F.adaptive_avg_pool2d(masks.float().unsqueeze(0), size)[0] > 0


@dataclass
class ProposalMatcher:
    """Assigns every object one pixel of the IA head's stride-16 map."""

    cost_class: float = 2.0
    cost_location: float = 1000.0

    @torch.no_grad()
    def __call__(self, proposal_logits: Tensor, targets: List[Target]) -> List[Match]:
        """``proposal_logits (B,K+1,h,w)`` -> B matches ``(flat pixel idx in h*w, target idx)``."""
        return [self.match_one(proposal_logits[b], targets[b]) for b in range(proposal_logits.shape[0])]

    def match_one(self, logits: Tensor, target: Target) -> Match:
        """One image: ``logits (K+1,h,w)`` and its target dict."""
        labels = target["labels"]
        if labels.numel() == 0:
            return empty_match()
        probs = logits.float().flatten(1).T.softmax(-1)  # (hw, K+1)
        inside = masks_inside_cells(target["masks"].to(logits.device), tuple(logits.shape[-2:]))
        cost_location = (~inside).flatten(1).T.float()  # (hw, N)
        cost = self.cost_class * -probs[:, labels] + self.cost_location * cost_location
        return solve(cost)


def flat_indices(matches: List[Match]) -> Tuple[Tensor, Tensor, Tensor]:
    """Concatenate per-image matches -> ``(batch_idx, pred_idx, target_idx)`` each ``(M,)``."""
    batch = [torch.full_like(src, b) for b, (src, _) in enumerate(matches)]
    if not batch:
        z = torch.zeros(0, dtype=torch.int64)
        return z, z, z
    return torch.cat(batch), torch.cat([s for s, _ in matches]), torch.cat([t for _, t in matches])
