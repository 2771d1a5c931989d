"""Queries placed by a person: a click makes the pixel embedding under it an object query.

FastInst's queries are the stride-16 pixel features (plus the positional embedding) at the
positions its IA head selects (:mod:`fastinst.query_proposal`). A placed query is gathered the same
way at a position a person chose, and is refined by the same decoder layers and heads into a mask
and a class, from the pixel decoder's maps of the prediction that was already made.

Design (why placed queries do not change anything else): each decoder layer lets the pixels attend
to the queries and the queries attend to each other (:class:`~fastinst.decoder.DualPathLayer`).
Placed queries are decoded in the same pass as the selected and auxiliary queries, but as
attention *queries only*: they attend to the pixels and to the selected and auxiliary queries, and
nothing attends to them. So

- the selected queries, the auxiliary queries and the pixels come out exactly as in the prediction
  without placed queries (same instances, same explanation);
- placed queries do not see each other: each click's result is independent of the other clicks;
- a query placed at a selected query's position gets the same inputs as that query in every layer,
  hence its mask and class.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoder import FastInstDecoder, release_empty_rows
from .postprocess import Instances
from .query_proposal import grid_locations


def points_to_indices(points: Sequence[Tuple[float, float]], original: Tuple[int, int],
                      resized: Tuple[int, int], padded: Tuple[int, int], map_size: Tuple[int, int]) -> Tensor:
    """Points ``(x, y)`` in original-image pixels -> flat positions ``(P,)`` int64 in the
    ``map_size = (h16, w16)`` map over the padded input.

    The inverse of the query points the explanation shows (:func:`fastinst.predictor._query_points`):
    a point falls in the cell that contains it after the official resize (original -> ``resized``),
    so a selected query's shown centre maps back to that query's position.

    Raises:
        ValueError: a point outside the image (named by its index and value).
    """
    height, width = original
    rows, cols = [], []
    for k, (x, y) in enumerate(points):
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"placed query {k} at (x={x}, y={y}) is outside the {width}x{height} image")
        x_in = x * resized[1] / width
        y_in = y * resized[0] / height
        cols.append(min(int(x_in * map_size[1] / padded[1]), map_size[1] - 1))
        rows.append(min(int(y_in * map_size[0] / padded[0]), map_size[0] - 1))
    return torch.tensor(rows, dtype=torch.int64) * map_size[1] + torch.tensor(cols, dtype=torch.int64)


def gather(feature_map: Tensor, pos: Tensor, indices: Tensor) -> Tuple[Tensor, Tensor]:
    """``feature_map (B,C,h,w)``, ``pos (1,C,h,w)``, ``indices (B,P)`` flat -> features and
    positional embeddings ``(B,P,C)`` at those positions (the gather of the IA-guided proposal)."""
    batch, dim = feature_map.shape[:2]
    index = indices.unsqueeze(-1).expand(-1, -1, dim)
    features = feature_map.flatten(2).transpose(1, 2).gather(1, index)
    query_pos = pos.flatten(2).transpose(1, 2).expand(batch, -1, -1).gather(1, index)
    return features, query_pos


def decode_with_placed(decoder: FastInstDecoder, features: List[Tensor], placed: Tensor) -> Dict[str, object]:
    """Decode the selected queries and ``placed (B,P)`` flat stride-16 positions in one pass.

    ``features``: the pixel decoder's maps ``[s32, s16, s8]`` of the prediction (the model
    output's ``"features"``). Returns the keys of :meth:`FastInstDecoder.forward` (eval mode) with
    the ``Q`` selected queries first and the ``P`` placed ones after them: ``pred_logits
    (B,Q+P,K+1)``, ``pred_masks (B,Q+P,h8,w8)``, ``heads`` (L+1 dicts, per-layer masks of all
    ``Q+P``), ``query_indices (B,Q+P)``, ``query_locations (B,Q+P,2)``, ``proposal_logits``, and
    ``num_placed = P``. The first ``Q`` rows equal the prediction's (see the module docstring).
    In training mode every head gives class logits and gradients flow (click-aware training,
    :mod:`training.click_queries`); callers at inference run it under ``torch.inference_mode``.
    """
    proposal_map, pixel_map = features[1], features[2]
    batch, size8 = pixel_map.shape[0], pixel_map.shape[-2:]
    num_selected, num_placed = decoder.num_queries, int(placed.shape[1])
    pos16 = decoder._resize_pos(proposal_map.shape[-2:])
    proposals = decoder.query_proposal(proposal_map, pos16)
    placed_features, placed_pos = gather(proposal_map, pos16, placed)
    aux = decoder.aux_query_features.weight.unsqueeze(0).expand(batch, -1, -1)
    aux_pos = decoder.aux_query_pos.weight.unsqueeze(0).expand(batch, -1, -1)
    # rows: selected (Q), auxiliary (A), placed (P); the heads see selected and placed
    queries = torch.cat([proposals.features, aux, placed_features], dim=1)
    query_pos = torch.cat([proposals.pos, aux_pos, placed_pos], dim=1)
    pixels = pixel_map.flatten(2).transpose(1, 2)
    pixel_pos = decoder._resize_pos(size8).flatten(2).transpose(1, 2)

    def head(index: int) -> Dict[str, Tensor]:
        rows = torch.cat([queries[:, :num_selected], queries[:, queries.shape[1] - num_placed:]], dim=1)
        logits, masks = decoder.heads[index](rows, pixels, decoder.training or index == len(decoder.layers))
        return {"pred_logits": logits, "pred_masks": masks.view(batch, rows.shape[1], *size8)}

    heads = [head(0)]
    for i, layer in enumerate(decoder.layers):
        masks = heads[-1]["pred_masks"].flatten(2).detach() < 0
        aux_rows = masks.new_zeros(batch, decoder.num_aux_queries, masks.shape[-1])
        blocked = release_empty_rows(torch.cat([masks[:, :num_selected], aux_rows, masks[:, num_selected:]], 1))
        queries, pixels = layer(queries, pixels, query_pos, pixel_pos, blocked, num_placed)
        heads.append(head(i + 1))
    indices = torch.cat([proposals.indices, placed.to(proposals.indices.device)], dim=1)
    return {
        "pred_logits": heads[-1]["pred_logits"],
        "pred_masks": heads[-1]["pred_masks"],
        "heads": heads,
        "proposal_logits": proposals.logits,
        "query_indices": indices,
        "query_locations": grid_locations(indices, *proposal_map.shape[-2:]),
        "num_placed": num_placed,
    }


def placed_instances(class_logits: Tensor, mask_logits: Tensor) -> Instances:
    """One instance per placed query, in the order they were placed.

    ``class_logits (P,K+1)``, ``mask_logits (P,H,W)`` at output size. Class = arg-max of the
    foreground softmax; mask = sigmoid > 0.5; score = class prob x mean sigmoid inside the mask (the
    rules of :func:`fastinst.postprocess.instance_inference`, without its top-k over all
    (query, class) pairs: a person asked for each of these queries). ``query_indices`` are 0..P-1.
    """
    probs = F.softmax(class_logits.float(), dim=-1)[:, :-1]
    class_probs, classes = probs.max(dim=-1)
    sig = mask_logits.float().sigmoid()
    masks = sig > 0.5
    mask_scores = (sig * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    query = torch.arange(class_logits.shape[0], device=class_logits.device)
    return Instances(masks, class_probs * mask_scores, classes, query, class_probs, mask_scores)
