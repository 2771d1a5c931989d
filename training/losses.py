"""The FastInst training criterion (set prediction loss with deep supervision).

Which output gets which loss (official recipe, weights in :class:`LossConfig`):

- ``proposal_logits`` (IA head): objects are matched to stride-16 pixels by
  :class:`~training.matcher.ProposalMatcher`; per-pixel cross-entropy against "no object"
  everywhere except the matched pixels, which get the object's class (weight 20).
- every decoder head (``heads[0..L]``, the last one being the final prediction), each matched
  afresh with :class:`~training.matcher.HungarianMatcher`: class cross-entropy with the no-object
  class weighted 0.1 (weight 2), point-sampled sigmoid BCE (weight 5) and dice (weight 5) on 12,544
  importance-sampled points (oversample 3, importance 0.75).
- the ground-truth-mask-guided pass (``guided[0..L-1]``): the same class/mask/dice losses with the
  fixed matching of the last layer that produced its attention masks.

Mask and dice losses are normalised by the number of objects in the batch averaged over all
processes (at least 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .matcher import HungarianMatcher, Match, ProposalMatcher, Target, flat_indices
from .points import importance_points, point_sample

MaskGuide = Callable[[Dict[str, Tensor], Tensor], Tuple[Tensor, List[Match]]]


@dataclass
class LossConfig:
    """Loss weights and point-sampling settings; the defaults are the official COCO values."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    proposal_weight: float = 20.0
    location_weight: float = 1000.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_ratio: float = 0.75
    deep_supervision: bool = True
    # click-aware training (training.click_queries): queries placed at random interior points of the
    # objects, each supervised with its object; this weight scales their losses, 0 = off (official)
    click_weight: float = 0.0


def sigmoid_ce_loss(logits: Tensor, labels: Tensor, num_masks: float) -> Tensor:
    """BCE-with-logits averaged over points, summed over masks, divided by ``num_masks``.

    ``logits (M,P)``, ``labels (M,P)`` in [0,1] -> scalar.
    """
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, labels: Tensor, num_masks: float) -> Tensor:
    """``sum_m [1 - (2 p·t + 1) / (sum p + sum t + 1)] / num_masks`` with ``p = sigmoid(logits)``.

    ``logits (M,P)``, ``labels (M,P)`` -> scalar.
    """
    probs = logits.sigmoid()
    numerator = 2.0 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


def classification_loss(logits: Tensor, matches: List[Match], targets: List[Target], empty_weight: Tensor) -> Tensor:
    """Weighted cross-entropy of ``logits (B,Q,K+1)``; unmatched queries target class K (no object).

    ``empty_weight (K+1,)`` is 1 for objects and the no-object weight for class K; the mean is
    weighted (``sum w_i * nll_i / sum w_i``), as ``F.cross_entropy`` defines it.
    """
    num_classes = logits.shape[-1] - 1
    classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
    batch_idx, pred_idx, tgt_idx = flat_indices(matches)
    if batch_idx.numel():
        labels = torch.cat([t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, matches)])
        classes[batch_idx.to(logits.device), pred_idx.to(logits.device)] = labels.to(logits.device)
    return F.cross_entropy(logits.float().transpose(1, 2), classes, weight=empty_weight.to(logits.device))


def proposal_loss(proposal_logits: Tensor, matches: List[Match], targets: List[Target]) -> Tensor:
    """Per-pixel cross-entropy of the IA head ``(B,K+1,h,w)``: matched pixels -> their object's
    class, every other pixel -> no object (K); plain mean over ``B*h*w``."""
    b, k1 = proposal_logits.shape[:2]
    flat = proposal_logits.float().flatten(2)  # (B,K+1,hw)
    classes = torch.full((b, flat.shape[-1]), k1 - 1, dtype=torch.int64, device=flat.device)
    batch_idx, pix_idx, _ = flat_indices(matches)
    if batch_idx.numel():
        labels = torch.cat([t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, matches)])
        classes[batch_idx.to(flat.device), pix_idx.to(flat.device)] = labels.to(flat.device)
    return F.cross_entropy(flat, classes)


def matched_masks(masks: Tensor, matches: List[Match], targets: List[Target]) -> Tuple[Tensor, Tensor]:
    """Pair predictions with targets: ``masks (B,Q,h,w)`` -> ``(pred (M,1,h,w), gt (M,1,H,W) float)``."""
    batch_idx, pred_idx, tgt_idx = flat_indices(matches)
    pred = masks[batch_idx.to(masks.device), pred_idx.to(masks.device)].unsqueeze(1)
    gt = [t["masks"][tgt.to(t["masks"].device)] for t, (_, tgt) in zip(targets, matches)]
    gt = torch.cat(gt).to(device=masks.device, dtype=torch.float32).unsqueeze(1)
    return pred, gt


class FastInstCriterion:
    """Computes the weighted FastInst losses from the engine's training output dict."""

    def __init__(self, num_classes: int, config: Optional[LossConfig] = None) -> None:
        self.num_classes = num_classes
        self.config = config or LossConfig()
        c = self.config
        self.matcher = HungarianMatcher(c.class_weight, c.mask_weight, c.dice_weight, c.location_weight, c.num_points)
        self.proposal_matcher = ProposalMatcher(c.class_weight, c.location_weight)
        self.empty_weight = torch.ones(num_classes + 1)
        self.empty_weight[-1] = c.no_object_weight

    def __call__(self, outputs: Dict[str, object], targets: List[Target], num_masks: Optional[float] = None) -> Dict[str, Tensor]:
        """Weighted losses of one batch.

        Args:
            outputs: the engine's training output dict (``proposal_logits``, ``query_locations``,
                ``heads``, optionally ``guided``).
            targets: B target dicts (see :mod:`training.matcher`).
            num_masks: the normaliser of the mask losses (objects per process, averaged over the
                world); defaults to this batch's object count.
        Returns:
            ``loss_proposal``; ``loss_ce``, ``loss_mask``, ``loss_dice`` of the final head; the same
            with suffix ``_head{j}`` for earlier heads and ``_guided{i}`` for the guided pass. Sum
            them for the total.
        """
        if num_masks is None:
            num_masks = float(max(sum(int(t["labels"].numel()) for t in targets), 1))
        targets = float_masks(targets)  # once, not in every matcher call and head
        c = self.config
        proposals = outputs["proposal_logits"]
        losses = {"loss_proposal": c.proposal_weight * proposal_loss(proposals, self.proposal_matcher(proposals, targets), targets)}
        locations = outputs["query_locations"]
        heads = outputs["heads"]
        last = len(heads) - 1
        for j, head in enumerate(heads):
            if j < last and not c.deep_supervision:
                continue
            matches = self.matcher(head["pred_logits"], head["pred_masks"], locations, targets)
            suffix = "" if j == last else f"_head{j}"
            losses.update(self.head_losses(head, matches, targets, num_masks, suffix))
        for i, head in enumerate(outputs.get("guided") or []):
            losses.update(self.head_losses(head, head["matching_indices"], targets, num_masks, f"_guided{i}"))
        return losses

    def head_losses(self, head: Dict[str, Tensor], matches: List[Match], targets: List[Target],
                    num_masks: float, suffix: str) -> Dict[str, Tensor]:
        """Weighted class, mask-BCE and dice losses of one head ``{"pred_logits", "pred_masks"}``."""
        c = self.config
        bce, dice = self.mask_losses(head["pred_masks"], matches, targets, num_masks)
        ce = classification_loss(head["pred_logits"], matches, targets, self.empty_weight)
        return {
            f"loss_ce{suffix}": c.class_weight * ce,
            f"loss_mask{suffix}": c.mask_weight * bce,
            f"loss_dice{suffix}": c.dice_weight * dice,
        }

    def mask_losses(self, masks: Tensor, matches: List[Match], targets: List[Target], num_masks: float) -> Tuple[Tensor, Tensor]:
        """Point-sampled BCE and dice of matched ``masks (B,Q,h,w)`` (zero, but connected, if none)."""
        if sum(int(src.numel()) for src, _ in matches) == 0:
            zero = masks.sum() * 0.0
            return zero, zero
        pred, gt = matched_masks(masks, matches, targets)
        c = self.config
        with torch.no_grad():
            coords = importance_points(pred.detach().float(), c.num_points, c.oversample_ratio, c.importance_ratio)
            labels = point_sample(gt, coords)[:, 0]
        logits = point_sample(pred.float(), coords)[:, 0]
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def mask_guide(self, targets: List[Target], num_aux_queries: int) -> MaskGuide:
        """The engine's ``mask_guide`` callback for this batch (ground-truth-mask-guided learning).

        It matches the last layer's predictions to ``targets`` and returns ``(blocked (B,Q+A,h*w)
        bool, matches)``: a matched query may attend only inside its object's ground-truth mask
        (nearest-resized to the stride-8 grid); unmatched and auxiliary queries attend everywhere.
        """

        def guide(last_head: Dict[str, Tensor], locations: Tensor) -> Tuple[Tensor, List[Match]]:
            masks = last_head["pred_masks"]
            matches = self.matcher(last_head["pred_logits"], masks, locations, float_masks(targets))
            return guided_attention_mask(masks.shape, matches, targets, num_aux_queries), matches

        return guide


def float_masks(targets: List[Target]) -> List[Target]:
    """The targets with their ``(N,H,W)`` masks as float32 (the dtype point sampling needs),
    converted once per step instead of once per matcher call and per head; labels shared."""
    return [t if t["masks"].dtype == torch.float32 else {**t, "masks": t["masks"].to(torch.float32)} for t in targets]


def guided_attention_mask(shape: torch.Size, matches: List[Match], targets: List[Target], num_aux_queries: int) -> Tensor:
    """``blocked (B,Q+A,h*w)`` for prediction masks of ``shape (B,Q,h,w)``; True = may not attend.

    Matched query ``q`` of object ``n`` is blocked outside ``n``'s mask; rows blocked everywhere
    (an object too small to cover a grid cell) are released to attend everywhere.
    """
    b, q, h, w = shape
    device = targets[0]["masks"].device if targets else torch.device("cpu")
    blocked = torch.zeros(b, q + num_aux_queries, h * w, dtype=torch.bool, device=device)
    with torch.no_grad():
        for i, (src, tgt) in enumerate(matches):
            if src.numel() == 0:
                continue
            gt = targets[i]["masks"][tgt.to(device)].float().unsqueeze(0)
            gt = F.interpolate(gt, size=(h, w), mode="nearest")[0] > 0.5
            blocked[i, src.to(device)] = ~gt.flatten(1)
    return blocked & ~blocked.all(dim=-1, keepdim=True)
