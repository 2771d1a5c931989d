"""Instance, semantic and panoptic inference from one image's class and mask logits (official rules)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import FastInstError


@dataclass
class Instances:
    """Instance results of one image, ``N`` = ``topk`` (always, no threshold, as the official code).

    masks: (N,H,W) bool; scores: (N,) = class prob x mask score; classes: (N,) int64;
    query_indices: (N,) int64 query of each instance; class_probs, mask_scores: (N,) the two factors;
    boxes: (N,4) float32 xyxy of the masks as :func:`engines.contract.mask_boxes` gives them, when the
    post-processing had them for free (None: compute them from ``masks``).
    """

    masks: Tensor
    scores: Tensor
    classes: Tensor
    query_indices: Tensor
    class_probs: Tensor
    mask_scores: Tensor
    boxes: Optional[Tensor] = None


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
    ``row_blocks``: ``rows`` cut into bands of :data:`ROW_BLOCK` output rows, as
    ``(weights (nb, ROW_BLOCK, K), taps (nb, K) int64)``: band ``j``'s rows read only samples
    ``taps[j] = first .. first + K - 1`` (a bilinear row reads at most 3 of the ``h8``), so a band is a
    ``ROW_BLOCK x K`` product instead of ``ROW_BLOCK x h8`` (rows past ``H`` are zero); None
    when ``8 K > h8``, where one product costs less than the bands' extra calls (the studio's tiny
    model, ``h8 = 12``: 42 against 62 us per query).
    """

    rows: Tensor
    cols: Tensor
    row_out_span: Tensor
    col_out_span: Tensor
    row_src_span: Tensor
    col_src_span: Tensor
    row_blocks: Optional[Tuple[Tensor, Tensor]]

    @classmethod
    def official(cls, low_size: Tuple[int, int], padded_size: Tuple[int, int], image_size: Tuple[int, int],
                 output_size: Optional[Tuple[int, int]] = None) -> "MaskResize":
        """The resize of :func:`fastinst.model.upsample_masks` for these sizes ``(h, w)``."""
        output_size = tuple(output_size or image_size)
        rows = resize_matrix(low_size[0], padded_size[0], image_size[0], output_size[0])
        cols = resize_matrix(low_size[1], padded_size[1], image_size[1], output_size[1])
        row_src = _spans(rows.T)
        return cls(rows, cols, _spans(rows), _spans(cols), row_src, _spans(cols.T), _bands(rows, row_src))

    @property
    def output_size(self) -> Tuple[int, int]:
        return int(self.rows.shape[0]), int(self.cols.shape[0])

    def __call__(self, logits: Tensor) -> Tensor:
        """``(N,h8,w8)`` -> ``(N,H,W)`` over the whole output (for small N or tests)."""
        return self.rows @ logits.float() @ self.cols.T

    def resize_box(self, logits: Tensor, y0: int, y1: int, x0: int, x1: int, buffer: Tensor) -> Tensor:
        """One query's ``logits (h8,w8)`` resized inside the output box rows ``y0:y1``, columns
        ``x0:x1`` -> ``(y1-y0, x1-x0)`` float32, a contiguous view of ``buffer`` (at least
        :meth:`box_buffer_size` elements). Equals ``self(logits[None])[0, y0:y1, x0:x1]``: the columns
        by one product over the samples the box reads, the rows by one batched product over the
        bands (or by one product, without bands)."""
        c, d = int(self.col_src_span[0, x0]), int(self.col_src_span[1, x1 - 1]) + 1
        if self.row_blocks is None:
            a, b = int(self.row_src_span[0, y0]), int(self.row_src_span[1, y1 - 1]) + 1
            out = buffer[:(y1 - y0) * (x1 - x0)].view(y1 - y0, x1 - x0)
            return torch.mm(self.rows[y0:y1, a:b], logits[a:b, c:d].float() @ self.cols[x0:x1, c:d].T, out=out)
        weights, first = self.row_blocks
        j0, j1 = y0 // ROW_BLOCK, -(-y1 // ROW_BLOCK)
        lo, hi = int(first[j0, 0]), int(first[j1 - 1, -1]) + 1
        columns = logits[lo:hi, c:d].float() @ self.cols[x0:x1, c:d].T  # (hi-lo, x1-x0)
        bands = buffer[:(j1 - j0) * ROW_BLOCK * (x1 - x0)].view(j1 - j0, ROW_BLOCK, x1 - x0)
        torch.bmm(weights[j0:j1], columns[first[j0:j1] - lo], out=bands)
        start = y0 - j0 * ROW_BLOCK
        return bands.view(-1, x1 - x0)[start:start + y1 - y0]

    def box_buffer_size(self, y0: int, y1: int, x0: int, x1: int) -> int:
        """Float elements :meth:`resize_box` needs for this box."""
        if self.row_blocks is None:
            return max(y1 - y0, 0) * max(x1 - x0, 0)
        return (-(-y1 // ROW_BLOCK) - y0 // ROW_BLOCK) * ROW_BLOCK * max(x1 - x0, 0)


ROW_BLOCK = 32  # output rows per band of MaskResize.row_blocks (D1 at 480x640: 0.08 ms per query vs 0.16 for one product)


def _bands(rows: Tensor, src_span: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
    """``rows (H, h8)`` and its ``(2, H)`` source spans -> ``MaskResize.row_blocks``."""
    height, low = rows.shape
    starts = range(0, height, ROW_BLOCK)
    first = [int(src_span[0, j]) for j in starts]
    last = [int(src_span[1, min(j + ROW_BLOCK, height) - 1]) for j in starts]
    taps = min(max(b - a + 1 for a, b in zip(first, last)), low)
    if 8 * taps > low:
        return None
    first = [min(a, low - taps) for a in first]
    weights = torch.zeros(len(first), ROW_BLOCK, taps)
    for k, (j, a) in enumerate(zip(starts, first)):
        band = rows[j:j + ROW_BLOCK, a:a + taps]
        weights[k, :band.shape[0]] = band
    return weights, torch.tensor(first, dtype=torch.int64).unsqueeze(1) + torch.arange(taps)


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
                              topk: int = 100, min_score: float = 0.0, dense: Optional[bool] = None) -> Instances:
    """The fast path of :func:`instance_inference`, from stride-8 logits: same rules, same results.

    ``class_logits (Q,K+1)``, ``mask_logits (Q,h8,w8)`` (before any resize), ``resize`` the
    official resize to the output size ``(H,W)``. The top-k (query, class) pairs are chosen from the
    class logits alone (as officially); each selected query's mask is computed once (a query is
    often selected with several classes) and shared by its instances.

    ``min_score``: return only the instances scoring at least this, exactly those
    ``Prediction.filter(min_score)`` keeps of the full result, without computing the masks of the
    pairs that cannot reach it: score = class prob x mask score, and the mask score (a mean of
    sigmoids) is at most 1, so a pair whose class prob is below ``min_score`` is dropped unseen.

    On CPU a query's logits are resized only inside the box where they can be positive and
    thresholded there. That box is exact, not a heuristic: bilinear resizing is a convex combination
    of samples, so an output pixel whose samples are all ``<= 0`` has a logit ``<= 0`` (mask False,
    no part of the mask score). On a GPU (or with ``dense=True``) the selected queries are resized
    over the whole output in a few batched operations. Float memory: one query's box (CPU) or 16 queries' ``(H,W)`` logits
    (GPU); the result is the ``(N,H,W)`` bool masks, ``N <= topk``.
    """
    num_classes = class_logits.shape[1] - 1
    probs = F.softmax(class_logits.float(), dim=-1)[:, :-1].flatten()
    class_probs, flat = probs.topk(min(topk, probs.numel()), sorted=True)
    if min_score > 0:
        reachable = class_probs >= min_score
        class_probs, flat = class_probs[reachable], flat[reachable]
    query = torch.div(flat, num_classes, rounding_mode="floor")
    classes = flat % num_classes
    unique, inverse = torch.unique(query, return_inverse=True)
    unique_boxes = None
    if not (mask_logits.device.type != "cpu" if dense is None else dense):
        unique_scores, masks_of, unique_boxes = _masks_in_boxes(mask_logits[unique], resize)
    else:
        unique_scores, masks_of = _masks_dense(mask_logits[unique], resize)
    mask_scores = unique_scores[inverse]
    scores = class_probs * mask_scores
    order = scores.argsort(descending=True, stable=True)
    if min_score > 0:
        order = order[scores[order] >= min_score]
    masks = masks_of(inverse[order])
    boxes = None if unique_boxes is None else unique_boxes[inverse[order]]
    return Instances(masks, scores[order], classes[order], query[order], class_probs[order], mask_scores[order], boxes)


def mask_scores_from_logits(logits: Tensor, count: Tensor | int) -> Tensor:
    """The official mask score, mean sigmoid over the mask ``logits > 0``, of ``logits (..., H, W)``
    whose masks have ``count`` pixels (per leading index): ``(...)`` float32, 0 for an empty mask.

    Computed as ``(sum(max(sigmoid(x) - 0.5, 0)) + 0.5 * count) / (count + 1e-6)``, which needs no
    gather of the mask pixels: ``sigmoid(x) - 0.5`` is > 0 exactly where ``x > 0`` (0 at ``x = 0``)
    and, for ``sigmoid(x) >= 0.5``, exact in float32 (Sterbenz lemma). Overwrites ``logits``.
    """
    inside = logits.sigmoid_().sub_(0.5).clamp_min_(0).flatten(-2).sum(-1)
    return (inside + 0.5 * count) / (count + 1e-6)


MasksOf = Callable[[Tensor], Tensor]


def _masks_in_boxes(logits: Tensor, resize: MaskResize) -> Tuple[Tensor, MasksOf, Tensor]:
    """CPU: ``logits (U,h8,w8)`` -> ``(mask scores (U,), masks_of, boxes (U,4))``; ``masks_of(indices
    (N,))`` is the ``(N,H,W)`` bool masks of those queries, pasted from their box crops; ``boxes``
    the masks' tight xyxy boxes (zeros for an empty mask, as :func:`engines.contract.mask_boxes`).

    Per query: resize inside the box (:meth:`MaskResize.resize_box`), threshold with numpy (an order of
    magnitude faster than a torch comparison into bool on CPU), then the official mean sigmoid over
    the mask, by whichever of two equal sums is cheaper for this mask: a mask filling most of its
    rows of the box is summed over those rows by :func:`mask_scores_from_logits` (numpy's boolean
    gather of most of a box costs 3x that), a sparse one over its gathered pixels. One
    query at a time keeps the box in cache.
    """
    boxes = _positive_boxes(logits > 0, resize).tolist()
    scores = torch.zeros(len(boxes), dtype=torch.float32)
    tight = np.zeros((len(boxes), 4), dtype=np.int64)
    crops: Dict[int, np.ndarray] = {}  # query -> its positive crop inside its tight box
    # one float buffer for every box's logits and one bool pool for all crops: fresh allocations of
    # this size are new pages, and first-touch page faults cost more than the arithmetic
    areas = [max(y1 - y0, 0) * max(x1 - x0, 0) for y0, y1, x0, x1 in boxes]
    _check_mask_memory(sum(areas), len(boxes), *resize.output_size)
    buffer = torch.empty(max((resize.box_buffer_size(*box) for box in boxes), default=0), dtype=torch.float32)
    pool, offset = np.empty(sum(areas), dtype=bool), 0
    for u, (y0, y1, x0, x1) in enumerate(boxes):
        if y1 <= y0 or x1 <= x0:
            continue  # no positive sample: empty mask, score 0
        logits_box = resize.resize_box(logits[u], y0, y1, x0, x1, buffer)
        box = logits_box.numpy()
        positive = np.greater(box, 0, out=pool[offset:offset + areas[u]].reshape(box.shape))
        offset += areas[u]
        count = int(np.count_nonzero(positive))
        if count == 0:
            continue
        rows = np.flatnonzero(positive.any(1))
        cols = np.flatnonzero(positive.any(0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crops[u] = positive[top:bottom, left:right]
        if 2 * count >= (bottom - top) * (x1 - x0):  # dense: sum over the mask's rows of the box
            scores[u] = mask_scores_from_logits(logits_box[top:bottom], count)
        else:  # sparse: sum over the gathered mask pixels
            inside = torch.from_numpy(box[top:bottom, left:right][crops[u]])
            scores[u] = inside.sigmoid_().sum() / (count + 1e-6)
        tight[u] = x0 + left, y0 + top, x0 + right, y0 + bottom
    height, width = resize.output_size

    def masks_of(indices: Tensor) -> Tensor:
        _check_mask_memory(len(indices) * height * width, len(indices), height, width)
        # every byte written once: np.zeros of this size is a memset of heap memory (glibc serves
        # allocations under its 32 MB mmap threshold from the heap), then the crops would be copied over it
        masks = np.empty((len(indices), height, width), dtype=bool)
        for n, u in enumerate(indices.tolist()):
            mask = masks[n]
            if u not in crops:
                mask.fill(False)
                continue
            left, top, right, bottom = tight[u]
            mask[:top].fill(False)
            mask[bottom:].fill(False)
            mask[top:bottom, :left].fill(False)
            mask[top:bottom, right:].fill(False)
            mask[top:bottom, left:right] = crops[u]
        return torch.from_numpy(masks)

    return scores, masks_of, torch.from_numpy(tight.astype(np.float32))


def _check_mask_memory(need: int, count: int, height: int, width: int) -> None:
    """Refuse ``need`` bytes of bool masks (``count`` queries' or instances' masks on a
    ``(height, width)`` image) that would take more than half the memory available now (a 192 Mpx
    orthophoto's 96 instances are 18 GB): a clear error instead of the process being killed;
    fewer instances (a higher ``min_score``) or a smaller image fit.

    Raises :class:`~fastinst.errors.FastInstError`."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no cheap figure, no check
        return
    if need > available // 2:
        raise FastInstError(f"the masks of {count} instances on a {width}x{height} image would take "
                            f"{need / 2**30:.1f} GiB, more than half of the {available / 2**30:.1f} GiB free: keep "
                            f"fewer instances (a higher score threshold) or predict a smaller image")


def _masks_dense(logits: Tensor, resize: MaskResize, chunk: int = 16) -> Tuple[Tensor, MasksOf]:
    """GPU: ``logits (U,h8,w8)`` -> ``(mask scores (U,), masks_of)`` from whole-image resizes,
    ``chunk`` queries at a time (no host syncs; the ``(U,H,W)`` bool masks are kept)."""
    rows, cols = resize.rows.to(logits.device), resize.cols.to(logits.device)
    scores, masks = [], []
    for start in range(0, logits.shape[0], chunk):
        full = rows @ logits[start:start + chunk].float() @ cols.T
        positive = full > 0
        scores.append(mask_scores_from_logits(full, positive.flatten(1).sum(1)))
        masks.append(positive)
    height, width = resize.output_size
    if not masks:
        return torch.zeros(0, device=logits.device), lambda indices: torch.zeros(
            (len(indices), height, width), dtype=torch.bool, device=logits.device)
    all_masks = torch.cat(masks)
    return torch.cat(scores), lambda indices: all_masks[indices.to(logits.device)]


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
