"""Instance, semantic and panoptic inference from one image's class and mask logits (official rules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Instances:
    """Instance results of one image, ``N`` = ``topk`` (always, no threshold, as the official code).

    masks: (N,H,W) bool; scores: (N,) = class prob x mask score; classes: (N,) int64;
    query_indices: (N,) int64 query of each instance; class_probs, mask_scores: (N,) the two factors.
    """

    masks: Tensor
    scores: Tensor
    classes: Tensor
    query_indices: Tensor
    class_probs: Tensor
    mask_scores: Tensor


def instance_inference(class_logits: Tensor, mask_logits: Tensor, topk: int = 100) -> Instances:
    """``class_logits (Q,K+1)``, ``mask_logits (Q,H,W)`` at output size -> :class:`Instances`.

    Top-k over all (query, class) pairs of the foreground softmax; mask = sigmoid > 0.5;
    mask score = mean sigmoid inside the mask; score = prob x mask score. Sorted by score.
    """
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = F.softmax(class_logits, dim=-1)[:, :-1].flatten()
    topk = min(topk, probs.numel())
    class_probs, flat = probs.topk(topk, sorted=True)
    query = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat % num_classes
    sig = mask_logits[query].sigmoid()
    masks = sig > 0.5
    mask_scores = (sig * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = class_probs * mask_scores
    order = scores.argsort(descending=True, stable=True)
    return Instances(masks[order], scores[order], classes[order], query[order], class_probs[order],
                     mask_scores[order])


def resize_matrix(low: int, padded: int, image: int, output: int) -> Tensor:
    """One axis of the official mask resize as a matrix ``(output, low)`` float32.

    Row ``p`` holds the weights of the ``low`` stride-8 samples in output pixel ``p`` after: linear
    interpolation to ``padded`` (``align_corners=False``), crop to the first ``image`` pixels, linear
    interpolation to ``output``. Built by resizing an identity with ``F.interpolate`` itself, so the
    weights are PyTorch's own; bilinear resizing is separable, so ``rows @ x @ cols.T`` is the 2-D
    resize of ``x (low_h, low_w)``.
    """
    eye = torch.eye(low, dtype=torch.float32).unsqueeze(0)  # channel i = indicator of sample i
    x = F.interpolate(eye, size=padded, mode="linear", align_corners=False)[..., :image]
    if output != image:
        x = F.interpolate(x, size=output, mode="linear", align_corners=False)
    return x[0].T.contiguous()


@dataclass
class MaskResize:
    """The official post-processing resize of ``(h8, w8)`` mask logits to the output size
    (bilinear to the padded input size, crop to the image, bilinear to the original size) as two
    matrices, with the spans needed to resize only inside a box.

    rows: ``(H, h8)``, cols: ``(W, w8)`` (see :func:`resize_matrix`). For each axis,
    ``*_out_span (2, n_low)``: first and last output pixel a sample contributes to (weight > 0);
    ``*_src_span (2, n_out)``: first and last sample an output pixel reads.
    """

    rows: Tensor
    cols: Tensor
    row_out_span: Tensor
    col_out_span: Tensor
    row_src_span: Tensor
    col_src_span: Tensor

    @classmethod
    def official(cls, low_size: Tuple[int, int], padded_size: Tuple[int, int], image_size: Tuple[int, int],
                 output_size: Optional[Tuple[int, int]] = None) -> "MaskResize":
        """The resize of :func:`fastinst.model.upsample_masks` for these sizes ``(h, w)``."""
        output_size = tuple(output_size or image_size)
        rows = resize_matrix(low_size[0], padded_size[0], image_size[0], output_size[0])
        cols = resize_matrix(low_size[1], padded_size[1], image_size[1], output_size[1])
        return cls(rows, cols, _spans(rows), _spans(cols), _spans(rows.T), _spans(cols.T))

    @property
    def output_size(self) -> Tuple[int, int]:
        return int(self.rows.shape[0]), int(self.cols.shape[0])

    def __call__(self, logits: Tensor) -> Tensor:
        """``(N,h8,w8)`` -> ``(N,H,W)`` over the whole output (for small N or tests)."""
        return self.rows @ logits.float() @ self.cols.T


def _spans(weights: Tensor) -> Tensor:
    """``(n_out, n_in)`` weights -> ``(2, n_in)``: first and last output index with weight > 0 per
    input (an input without any gets an empty span ``(n_out, -1)``)."""
    nonzero = weights > 0
    n_out = weights.shape[0]
    index = torch.arange(n_out).unsqueeze(1)
    first = torch.where(nonzero, index, n_out).min(0).values
    last = torch.where(nonzero, index, -1).max(0).values
    return torch.stack([first, last])


def instance_inference_lowres(class_logits: Tensor, mask_logits: Tensor, resize: MaskResize,
                              topk: int = 100, chunk: int = 16) -> Instances:
    """The fast path of :func:`instance_inference`, from stride-8 logits: same rules, same results.

    ``class_logits (Q,K+1)``, ``mask_logits (Q,h8,w8)`` (before any resize), ``resize`` the
    official resize to the output size ``(H,W)``. The top-k (query, class) pairs are chosen from the
    class logits alone (as officially); each selected query's logits are then resized only inside
    the box where they can be positive and thresholded there. That box is exact, not a heuristic:
    bilinear resizing is a convex combination of samples, so an output pixel whose samples are all
    ``<= 0`` has a logit ``<= 0`` (mask False, no part of the mask score).

    Queries whose boxes nearly coincide (their union wastes less than half again their areas) are
    processed together, up to ``chunk`` at a time: a few large tensor operations instead of many
    small ones. Float memory: one group of box logits; the result is the ``(N,H,W)`` bool masks.
    """
    num_classes = class_logits.shape[1] - 1
    probs = F.softmax(class_logits.float(), dim=-1)[:, :-1].flatten()
    topk = min(topk, probs.numel())
    class_probs, flat = probs.topk(topk, sorted=True)
    query = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat % num_classes
    height, width = resize.output_size
    device = mask_logits.device
    unique, inverse = torch.unique(query, return_inverse=True)
    boxes = _positive_boxes(mask_logits[unique] > 0, resize).tolist()
    unique_scores = torch.zeros(len(unique), dtype=torch.float32, device=device)
    crops: Dict[int, Tuple[List[int], Tensor]] = {}
    rows, cols = resize.rows.to(device), resize.cols.to(device)
    row_src, col_src = resize.row_src_span.tolist(), resize.col_src_span.tolist()
    for group, (y0, y1, x0, x1) in _group_boxes(boxes, chunk):
        a, b = row_src[0][y0], row_src[1][y1 - 1] + 1
        c, d = col_src[0][x0], col_src[1][x1 - 1] + 1
        samples = mask_logits[unique[group], a:b, c:d].float()
        logits = rows[y0:y1, a:b] @ samples @ cols[x0:x1, c:d].T  # (n, y1-y0, x1-x0)
        mask = logits > 0
        for k, u in enumerate(group):  # sigmoid only where the mask is (often a small part of the box)
            inside = logits[k][mask[k]]
            unique_scores[u] = inside.sigmoid_().sum() / (inside.numel() + 1e-6)
            crops[u] = ([y0, y1, x0, x1], mask[k])
    mask_scores = unique_scores[inverse]
    scores = class_probs * mask_scores
    order = scores.argsort(descending=True, stable=True)
    masks = _zeros_bool((topk, height, width), device)
    for n, u in enumerate(inverse[order].tolist()):
        if u in crops:
            (y0, y1, x0, x1), crop = crops[u]
            masks[n, y0:y1, x0:x1] = crop
    return Instances(masks, scores[order], classes[order], query[order], class_probs[order], mask_scores[order])


def _zeros_bool(shape: Tuple[int, ...], device: torch.device) -> Tensor:
    """A zero bool tensor; on CPU backed by ``numpy.zeros`` (calloc: the OS supplies zeroed pages
    on first touch, so the untouched part of ``(N,H,W)`` masks costs nothing to allocate)."""
    if device.type == "cpu":
        return torch.from_numpy(np.zeros(shape, dtype=bool))
    return torch.zeros(shape, dtype=torch.bool, device=device)


def _group_boxes(boxes: List[List[int]], chunk: int) -> List[Tuple[List[int], List[int]]]:
    """Indices of non-empty ``(y0, y1, x0, x1)`` boxes grouped (by area, greedily) so that each
    group's union box is at most 1.5x the sum of its members' areas -> ``[(indices, union box)]``."""
    def area(box: List[int]) -> int:
        return max(box[1] - box[0], 0) * max(box[3] - box[2], 0)

    order = sorted((i for i, box in enumerate(boxes) if area(box) > 0), key=lambda i: area(boxes[i]))
    groups: List[Tuple[List[int], List[int]]] = []
    for i in order:
        box = boxes[i]
        if groups:
            members, union = groups[-1]
            merged = [min(union[0], box[0]), max(union[1], box[1]), min(union[2], box[2]), max(union[3], box[3])]
            if len(members) < chunk and area(merged) <= 1.5 * (sum(area(boxes[m]) for m in members) + area(box)):
                members.append(i)
                groups[-1] = (members, merged)
                continue
        groups.append(([i], list(box)))
    return groups


def _positive_boxes(positive: Tensor, resize: MaskResize) -> Tensor:
    """``positive (U,h8,w8)`` bool -> ``(U,4)`` int64 output boxes ``(y0, y1, x0, x1)`` (end exclusive)
    containing every output pixel that reads a positive sample; ``y1 <= y0`` when there is none."""
    return torch.cat([_axis_extent(positive.any(2), resize.row_out_span.to(positive.device)),
                      _axis_extent(positive.any(1), resize.col_out_span.to(positive.device))], 1)


def _axis_extent(any_positive: Tensor, out_span: Tensor) -> Tensor:
    """``(U, n_low)`` bool, ``(2, n_low)`` spans -> ``(U, 2)``: first and one-past-last output pixel."""
    n_out = int(out_span.max()) + 1
    first = torch.where(any_positive, out_span[0], n_out).min(1).values
    last = torch.where(any_positive, out_span[1], -1).max(1).values
    return torch.stack([first, last + 1], 1)


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """``(Q,K+1)``, ``(Q,H,W)`` -> per-class scores ``(K,H,W)``: sum over queries of prob x sigmoid."""
    probs = F.softmax(class_logits, dim=-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


def panoptic_inference(class_logits: Tensor, mask_logits: Tensor, thing_classes: Sequence[int],
                       object_mask_threshold: float = 0.8,
                       overlap_threshold: float = 0.8) -> Tuple[Tensor, List[Dict[str, object]]]:
    """``(Q,K+1)``, ``(Q,H,W)`` -> ``(segment id map (H,W) int32, segments_info)`` (official rules).

    Keep queries whose best class is foreground with prob > ``object_mask_threshold``; assign each
    pixel to the query with the highest prob x sigmoid; drop segments that keep less than
    ``overlap_threshold`` of their own mask; merge stuff segments of the same class.
    """
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    num_classes = class_logits.shape[1] - 1
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_logits[keep].sigmoid()
    height, width = mask_logits.shape[-2:]
    panoptic = torch.zeros((height, width), dtype=torch.int32, device=mask_logits.device)
    segments: List[Dict[str, object]] = []
    if cur_masks.shape[0] == 0:
        return panoptic, segments
    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    things = set(int(c) for c in thing_classes)
    stuff_ids: Dict[int, int] = {}
    for k in range(cur_classes.shape[0]):
        cls = int(cur_classes[k])
        own = cur_masks[k] >= 0.5
        segment = (owner == k) & own
        area, original = int((owner == k).sum()), int(own.sum())
        if area == 0 or original == 0 or int(segment.sum()) == 0 or area / original < overlap_threshold:
            continue
        is_thing = cls in things
        if not is_thing and cls in stuff_ids:
            panoptic[segment] = stuff_ids[cls]
            continue
        segment_id = len(segments) + 1
        if not is_thing:
            stuff_ids[cls] = segment_id
        panoptic[segment] = segment_id
        segments.append({"id": segment_id, "isthing": is_thing, "category_id": cls})
    return panoptic, segments
