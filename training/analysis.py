"""What a model gets wrong, image by image, and which images to review next.

- :func:`match_image`: one image's detections against its ground truth at one IoU threshold with
  the matching rule of pycocotools' ``COCOeval.evaluateImg`` (per category, detections by score,
  each takes the unmatched ground-truth mask of highest IoU >= threshold; crowd regions absorb
  detections and are never missed), so true/false positives and false negatives agree with it.
  Besides, a false positive lying on an unmatched object of another class (IoU >= threshold) is
  reported as a *wrong class* (the object then also counts as missed, as in COCO).
- :func:`analyse`: every image, worst first, plus the class confusion matrix.
- :func:`image_uncertainty`: how unsure the model is about an image: score ambiguity, and how much
  each instance's mask still changes between the last two decoder layers (FastInst's decoder
  refines masks layer by layer; a mask still moving at the last layer is one the model has not
  settled, see ``Explanation.layer_masks``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils



@dataclass(frozen=True)
class ImageErrors:
    """One image's outcome. Indices point into the lists given to :func:`match_image`."""

    image_id: int
    matches: List[Tuple[int, int]] = field(default_factory=list)        # (detection, ground truth), same class
    false_positives: List[int] = field(default_factory=list)            # detections matching nothing
    false_negatives: List[int] = field(default_factory=list)            # ground truths nobody matched
    wrong_class: List[Tuple[int, int]] = field(default_factory=list)    # (FP detection, FN object of another class)

    @property
    def errors(self) -> int:
        """False positives plus false negatives (a wrong class counts as one of each)."""
        return len(self.false_positives) + len(self.false_negatives)


def _rle(obj: Dict[str, Any], height: int, width: int) -> Dict[str, Any]:
    """The object's compressed RLE (ground truth read by the one COCO reader, or our results)."""
    seg = obj["segmentation"]
    if not isinstance(seg, dict) or list(seg.get("size", ())) != [height, width]:
        raise ValueError(f"annotation {obj.get('id', '?')} of image {obj['image_id']}: expected a compressed RLE of "
                         f"size {[height, width]}; read ground truth with training.data.load_coco")
    return seg


def match_image(image: Dict[str, Any], gts: Sequence[Dict[str, Any]], dets: Sequence[Dict[str, Any]],
                iou_threshold: float = 0.5, max_dets: int = 100) -> ImageErrors:
    """Match one image's detections (COCO results dicts) to its ground truth (COCO annotations).

    ``image`` is the COCO image dict (``id``, ``height``, ``width``); segmentations are compressed
    RLE (as :func:`training.data.load_coco` and our results give them). Per category, at most
    ``max_dets`` detections (highest scores) take part, as in COCOeval's last ``maxDets``.
    """
    h, w = int(image["height"]), int(image["width"])
    g_rle = [_rle(g, h, w) for g in gts]
    d_rle = [_rle(d, h, w) for d in dets]
    crowd = [int(g.get("iscrowd", 0)) for g in gts]
    matched_gt: Dict[int, int] = {}
    matched_det: Dict[int, int] = {}
    ignored_det: set[int] = set()
    for cat in sorted({int(g["category_id"]) for g in gts} | {int(d["category_id"]) for d in dets}):
        g_idx = [i for i, g in enumerate(gts) if int(g["category_id"]) == cat]
        g_idx = [i for i in g_idx if not crowd[i]] + [i for i in g_idx if crowd[i]]   # crowd last (COCOeval)
        d_idx = [i for i, d in enumerate(dets) if int(d["category_id"]) == cat]
        order = np.argsort([-float(dets[i]["score"]) for i in d_idx], kind="mergesort")
        d_idx = [d_idx[k] for k in order][:max_dets]
        if not g_idx or not d_idx:
            continue
        ious = np.asarray(mask_utils.iou([d_rle[i] for i in d_idx], [g_rle[i] for i in g_idx],
                                         [crowd[i] for i in g_idx]), dtype=np.float64).reshape(len(d_idx), len(g_idx))
        taken = np.zeros(len(g_idx), bool)
        for a, d in enumerate(d_idx):
            best, m = min(iou_threshold, 1 - 1e-10), -1
            for b, g in enumerate(g_idx):
                if taken[b] and not crowd[g]:
                    continue
                if m > -1 and not crowd[g_idx[m]] and crowd[g]:
                    break
                if ious[a, b] < best:
                    continue
                best, m = ious[a, b], b
            if m == -1:
                continue
            g = g_idx[m]
            taken[m] = True
            if crowd[g]:
                ignored_det.add(d)
            else:
                matched_gt[g], matched_det[d] = d, g
    kept = {i for cat in {int(d["category_id"]) for d in dets} for i in _top(dets, cat, max_dets)}
    fps = [d for d in range(len(dets)) if d in kept and d not in matched_det and d not in ignored_det]
    fns = [g for g in range(len(gts)) if not crowd[g] and g not in matched_gt]
    wrong: List[Tuple[int, int]] = []
    if fps and fns:
        ious = np.asarray(mask_utils.iou([d_rle[d] for d in fps], [g_rle[g] for g in fns], [0] * len(fns)),
                          dtype=np.float64).reshape(len(fps), len(fns))
        free = set(range(len(fns)))
        for a in np.argsort([-float(dets[d]["score"]) for d in fps], kind="mergesort"):
            candidates = [b for b in free if ious[a, b] >= iou_threshold
                          and int(gts[fns[b]]["category_id"]) != int(dets[fps[a]]["category_id"])]
            if candidates:
                b = max(candidates, key=lambda k: ious[a, k])
                free.discard(b)
                wrong.append((fps[a], fns[b]))
    return ImageErrors(int(image["id"]), sorted((d, g) for d, g in matched_det.items()), fps, fns, wrong)


def _top(dets: Sequence[Dict[str, Any]], cat: int, max_dets: int) -> List[int]:
    idx = [i for i, d in enumerate(dets) if int(d["category_id"]) == cat]
    order = np.argsort([-float(dets[i]["score"]) for i in idx], kind="mergesort")
    return [idx[k] for k in order][:max_dets]


@dataclass(frozen=True)
class Analysis:
    """Per-image errors (worst first) and the confusion between classes.

    ``confusion[i, j]`` counts ground-truth objects of class ``i`` (row ``K`` = no object: false
    positives on background) predicted as class ``j`` (column ``K`` = missed). ``labels`` are the
    category names in COCO id order.
    """

    images: List[ImageErrors]
    confusion: np.ndarray
    labels: List[str]
    category_ids: List[int]


def analyse(coco: Dict[str, Any], results: Sequence[Dict[str, Any]], iou_threshold: float = 0.5,
            min_score: float = 0.0) -> Analysis:
    """Match every image of a COCO dict (``load_coco(path).dataset``) against COCO results (those
    scoring >= ``min_score``)."""
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    col = {c: i for i, c in enumerate(cat_ids)}
    k = len(cat_ids)
    confusion = np.zeros((k + 1, k + 1), np.int64)
    by_image_gt: Dict[int, List[Dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image_gt.setdefault(int(a["image_id"]), []).append(a)
    by_image_dt: Dict[int, List[Dict[str, Any]]] = {}
    for r in results:
        if float(r["score"]) >= min_score:
            by_image_dt.setdefault(int(r["image_id"]), []).append(r)
    out = []
    for image in coco["images"]:
        gts, dets = by_image_gt.get(int(image["id"]), []), by_image_dt.get(int(image["id"]), [])
        errs = match_image(image, gts, dets, iou_threshold)
        for d, g in errs.matches:
            confusion[col[int(gts[g]["category_id"])], col[int(dets[d]["category_id"])]] += 1
        wrong_d = {d for d, _ in errs.wrong_class}
        wrong_g = {g for _, g in errs.wrong_class}
        for d, g in errs.wrong_class:
            confusion[col[int(gts[g]["category_id"])], col[int(dets[d]["category_id"])]] += 1
        for g in errs.false_negatives:
            if g not in wrong_g:
                confusion[col[int(gts[g]["category_id"])], k] += 1
        for d in errs.false_positives:
            if d not in wrong_d and int(dets[d]["category_id"]) in col:
                confusion[k, col[int(dets[d]["category_id"])]] += 1
        out.append(errs)
    out.sort(key=lambda e: (-e.errors, -len(e.wrong_class), e.image_id))
    return Analysis(out, confusion, [c["name"] for c in cats], cat_ids)


@dataclass(frozen=True)
class Uncertainty:
    """How unsure a model is about one image (all in [0, 1]; higher = review sooner).

    ``ambiguity``: the largest ``1 - |2 score - 1|`` of its instances (1 at score 0.5);
    ``mask_change``: the largest ``1 - IoU`` between an instance's masks after the last two
    decoder layers; ``score``: the larger of the two (1 when no instance reaches ``min_score``).
    """

    score: float
    ambiguity: float
    mask_change: float
    instances: int


def mask_change(layer_masks: np.ndarray) -> float:
    """``1 - IoU`` of the last two of ``(L+1, H, W)`` bool masks (0 when both are empty)."""
    a, b = layer_masks[-2], layer_masks[-1]
    union = np.logical_or(a, b).sum()
    return 0.0 if union == 0 else float(1.0 - np.logical_and(a, b).sum() / union)


def image_uncertainty(prediction: Any, min_score: float = 0.1) -> Uncertainty:
    """Uncertainty of a ``fastinst.Prediction`` from the instances scoring >= ``min_score``."""
    keep = [k for k in range(len(prediction.scores)) if float(prediction.scores[k]) >= min_score]
    if not keep:
        return Uncertainty(1.0, 1.0, 0.0, 0)
    amb = max(1.0 - abs(2.0 * float(prediction.scores[k]) - 1.0) for k in keep)
    queries = {int(prediction.query_indices[k]) for k in keep}
    change = max(mask_change(prediction.explanation.layer_masks(q)) for q in queries)
    return Uncertainty(max(amb, change), amb, change, len(keep))


def rank_for_review(uncertainties: Dict[int, Uncertainty]) -> List[Tuple[int, Uncertainty]]:
    """Image ids with their uncertainty, most uncertain first (ties by id)."""
    return sorted(uncertainties.items(), key=lambda kv: (-kv[1].score, -kv[1].mask_change, kv[0]))


def per_image_table(analysis: Analysis, coco: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Rows ``{image_id, file_name, fp, fn, wrong_class, matched}`` in the analysis' order."""
    names = {int(im["id"]): im["file_name"] for im in coco["images"]}
    return [{"image_id": e.image_id, "file_name": names.get(e.image_id, str(e.image_id)), "fp": len(e.false_positives),
             "fn": len(e.false_negatives), "wrong_class": len(e.wrong_class), "matched": len(e.matches)}
            for e in analysis.images]
