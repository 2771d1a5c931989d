"""95% bootstrap intervals of COCO mask AP over images, and of the gain between two models.

An AP measured on a handful of images is an anecdote unless it says how much it would move on
other images like them. The images are resampled with replacement (percentile bootstrap, Efron &
Tibshirani 1993, ch. 13); each resample's AP is pycocotools' own ``COCOeval.accumulate`` over the
per-image matches that ``COCOeval.evaluate`` computed once, so every figure equals pycocotools'
on the images as they are. A gain between two models is bootstrapped *paired*: both models are
scored on the same resampled images, so the interval is that of the difference, not of two
independent figures.

Only the headline setting is resampled: area "all", at most 100 detections per image, AP over
IoU 0.50:0.95 (COCO's ``AP``), overall and per category.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools.cocoeval import COCOeval

SAMPLES = 1000     # resamples per interval
LEVEL = 0.95       # coverage of the interval


@dataclass(frozen=True)
class Interval:
    """A figure on ``images`` images holding ``objects`` ground-truth objects, with its 95%
    bootstrap interval ``[low, high]`` (all in AP points, 0..100; None where undefined: no
    object of that category in the images)."""

    value: Optional[float]
    low: Optional[float]
    high: Optional[float]
    images: int
    objects: int

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero (for a gain)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def text(self, signed: bool = False) -> str:
        """``"47.1 [41.0, 52.9] (200 images, 812 objects)"``; ``"—"`` when undefined."""
        if self.value is None:
            return f"— ({self.images} images, {self.objects} objects)"
        fmt = "{:+.1f}" if signed else "{:.1f}"
        return (f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}] "
                f"({self.images} images, {self.objects} objects)")

    def to_dict(self) -> Dict[str, Optional[float]]:
        return {"value": self.value, "low": self.low, "high": self.high, "images": self.images,
                "objects": self.objects}

    @classmethod
    def from_dict(cls, data: Dict[str, Optional[float]]) -> "Interval":
        return cls(value=data.get("value"), low=data.get("low"), high=data.get("high"),
                   images=int(data.get("images") or 0), objects=int(data.get("objects") or 0))


def _precision(ev: COCOeval, images: np.ndarray) -> np.ndarray:
    """pycocotools' precision array ``(T, R, K)`` (IoU thresholds, recall points, categories;
    -1 where a category has no object) of area "all" and 100 detections, over the evaluated
    images at positions ``images`` (repeats allowed) of ``ev.params.imgIds``."""
    pe = ev._paramsEval
    num_images, num_areas = len(pe.imgIds), len(pe.areaRng)
    cats = pe.catIds if pe.useCats else [-1]
    all_area = num_areas and [tuple(a) for a in pe.areaRng].index(tuple(pe.areaRng[0]))
    view = copy.copy(ev)
    params = copy.deepcopy(pe)
    params.imgIds = list(range(len(images)))
    params.areaRng, params.areaRngLbl, params.maxDets = [pe.areaRng[all_area]], [pe.areaRngLbl[all_area]], [100]
    view.params = view._paramsEval = params
    view.evalImgs = [ev.evalImgs[k * num_areas * num_images + all_area * num_images + int(i)]
                     for k in range(len(cats)) for i in images]
    with contextlib.redirect_stdout(io.StringIO()):
        view.accumulate()
    return view.eval["precision"][:, :, :, 0, 0]


def _mean_valid(p: np.ndarray) -> Optional[float]:
    valid = p > -1
    return float(100.0 * p[valid].mean()) if valid.any() else None


def _objects(ev: COCOeval) -> Dict[int, np.ndarray]:
    """Non-crowd ground-truth objects per image position, per category id (-1: all)."""
    pe = ev._paramsEval
    cats = list(pe.catIds) if pe.useCats else [-1]
    counts = np.zeros((len(pe.imgIds), len(cats)), dtype=np.int64)
    for i, image_id in enumerate(pe.imgIds):
        for k, cat in enumerate(cats):
            gts = ev._gts[image_id, cat] if pe.useCats else [g for c in ev.params.catIds for g in ev._gts[image_id, c]]
            counts[i, k] = sum(1 for g in gts if not g.get("iscrowd", 0))
    out = {cat: counts[:, k] for k, cat in enumerate(cats)}
    out[-1] = counts.sum(axis=1)
    return out


def _resamples(num_images: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_images, size=(samples, num_images))


def _interval(value: Optional[float], draws: List[Optional[float]], images: int, objects: int) -> Interval:
    finite = np.array([d for d in draws if d is not None], dtype=np.float64)
    if value is None or not len(finite):
        return Interval(value, None, None, images, objects)
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(value, float(low), float(high), images, objects)


def ap_intervals(ev: COCOeval, names: Optional[Dict[int, str]] = None, *, samples: int = SAMPLES,
                 seed: int = 0) -> Dict[str, Interval]:
    """AP with its interval, overall (``"segm/AP"``) and per category (``"segm/AP-<name>"``).

    Args:
        ev: a ``COCOeval`` (``iouType="segm"``) after ``evaluate()``; not modified.
        names: category id -> name (default: the ground truth's names).
        samples: bootstrap resamples; seed: their random generator's seed (same seed, same interval).
    """
    pe = ev._paramsEval
    names = names or {c: ev.cocoGt.cats[c]["name"] for c in pe.catIds}
    count = len(pe.imgIds)
    objects = _objects(ev)
    if count == 0:
        return {"segm/AP": Interval(None, None, None, 0, 0)}
    full = _precision(ev, np.arange(count))
    draws = [_precision(ev, idx) for idx in _resamples(count, samples, seed)]
    out = {"segm/AP": _interval(_mean_valid(full), [_mean_valid(d) for d in draws], count, int(objects[-1].sum()))}
    for k, cat in enumerate(pe.catIds if pe.useCats else []):
        out[f"segm/AP-{names[cat]}"] = _interval(_mean_valid(full[:, :, k]), [_mean_valid(d[:, :, k]) for d in draws],
                                                 count, int(objects[cat].sum()))
    return out


def paired_gain(before: COCOeval, after: COCOeval, *, category: Optional[int] = None, samples: int = SAMPLES,
                seed: int = 0) -> Interval:
    """AP(after) - AP(before) on the same images, with its paired 95% bootstrap interval.

    Args:
        before, after: ``COCOeval`` objects after ``evaluate()`` on the same ground truth and image ids.
        category: a category id for that category's AP gain (default: overall AP).

    Raises:
        ValueError: the two evaluations cover different images or categories.
    """
    pb, pa = before._paramsEval, after._paramsEval
    if list(pb.imgIds) != list(pa.imgIds) or list(pb.catIds) != list(pa.catIds):
        raise ValueError("a paired gain needs both models evaluated on the same images and categories")
    count = len(pb.imgIds)
    k = None if category is None else list(pb.catIds).index(category)
    pick = (lambda p: p) if k is None else (lambda p: p[:, :, k])  # noqa: E731

    def gain(idx: np.ndarray) -> Optional[float]:
        b, a = _mean_valid(pick(_precision(before, idx))), _mean_valid(pick(_precision(after, idx)))
        return None if a is None or b is None else a - b

    objects = _objects(before)[-1 if category is None else category]
    if count == 0:
        return Interval(None, None, None, 0, 0)
    return _interval(gain(np.arange(count)), [gain(idx) for idx in _resamples(count, samples, seed)], count,
                     int(objects.sum()))


def images_to_decide(gain: Interval) -> Optional[int]:
    """How many images in all would likely make the gain's interval exclude zero, assuming its
    width shrinks as 1/sqrt(images) and the gain stays as measured; None when the gain is zero or
    undefined (no number of images decides a difference that is not there)."""
    if gain.value is None or gain.low is None or gain.high is None or gain.value == 0 or gain.images == 0:
        return None
    half = (gain.high - gain.low) / 2.0
    return max(gain.images + 1, math.ceil(gain.images * (half / abs(gain.value)) ** 2))


def evaluated(coco_gt: object, results: Sequence[dict], image_ids: Sequence[int]) -> COCOeval:
    """``COCOeval(iouType="segm")`` of ``results`` on ``image_ids`` after ``evaluate()`` (quiet).
    An empty results list scores every image with no detection."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco_gt.loadRes([dict(r) for r in results]) if results else _empty_results(coco_gt)
        ev = COCOeval(coco_gt, dt, iouType="segm")
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
    return ev


def _empty_results(coco_gt: object) -> object:
    from pycocotools.coco import COCO
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset.get("images", [])), "annotations": [],
                     "categories": copy.deepcopy(coco_gt.dataset.get("categories", []))}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty
