"""Bootstrap intervals of mask AP: every resample's AP equals pycocotools' on a dataset built with
those images (repeats as copies), the point value equals pycocotools' AP, paired gains are exact
differences and vanish for a model against itself."""
from __future__ import annotations

import contextlib
import io
from typing import Dict, List, Tuple

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from training.bootstrap import _precision, _mean_valid, ap_intervals, evaluated, images_to_decide, paired_gain
from training.evaluate import coco_mask_metrics

H = W = 32


def _rle(m: np.ndarray) -> Dict[str, object]:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode()
    return r


def _box(x: int, y: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y:y + h, x:x + w] = True
    return m


def _scene(num_images: int, seed: int, noise: int) -> Tuple[dict, List[dict]]:
    """Ground truth of 1-3 boxes of 2 classes per image, and predictions shifted by up to ``noise`` px."""
    rng, jitter = np.random.default_rng(seed), np.random.default_rng(seed + 1000)
    images, anns, results = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "height": H, "width": W})
        for _ in range(int(rng.integers(1, 4))):
            x, y, w, h = (int(v) for v in rng.integers([0, 0, 6, 6], [20, 20, 12, 12]))
            cat = int(rng.integers(1, 3))
            m = _box(x, y, w, h)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "segmentation": _rle(m),
                         "area": float(m.sum()), "bbox": [x, y, w, h], "iscrowd": 0})
            dx, dy = (int(v) for v in jitter.integers(-noise, noise + 1, size=2))
            results.append({"image_id": i, "category_id": cat, "segmentation": _rle(_box(max(x + dx, 0), max(y + dy, 0), w, h)),
                            "score": float(rng.uniform(0.3, 1.0))})
        if rng.uniform() < 0.5:   # a false positive
            results.append({"image_id": i, "category_id": 1, "segmentation": _rle(_box(24, 24, 6, 6)),
                            "score": float(rng.uniform(0.3, 1.0))})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return gt, results


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_point_values_equal_pycocotools() -> None:
    gt, results = _scene(12, seed=1, noise=2)
    coco = _coco(gt)
    ids = [im["id"] for im in gt["images"]]
    reference = coco_mask_metrics(coco, results, ids)
    intervals = ap_intervals(evaluated(coco, results, ids), samples=50)
    assert intervals["segm/AP"].value == pytest.approx(reference["segm/AP"], abs=1e-9)
    for name in ("a", "b"):
        assert intervals[f"segm/AP-{name}"].value == pytest.approx(reference[f"segm/AP-{name}"], abs=1e-9)
    assert intervals["segm/AP"].images == 12 and intervals["segm/AP"].objects == len(gt["annotations"])
    for iv in intervals.values():
        assert iv.low <= iv.value <= iv.high


def test_a_resample_equals_pycocotools_on_the_repeated_images() -> None:
    gt, results = _scene(9, seed=2, noise=3)
    coco = _coco(gt)
    ids = [im["id"] for im in gt["images"]]
    ev = evaluated(coco, results, ids)
    idx = np.array([0, 0, 3, 5, 5, 5, 7, 8, 2])
    # the same images as a dataset of copies with ids of their own: plain pycocotools
    images, anns, res = [], [], []
    for copy_id, pos in enumerate(idx, start=1):
        source = ids[pos]
        images.append({**gt["images"][pos], "id": copy_id})
        anns += [{**a, "id": len(anns) + n + 1, "image_id": copy_id}
                 for n, a in enumerate(a for a in gt["annotations"] if a["image_id"] == source)]
        res += [{**r, "image_id": copy_id} for r in results if r["image_id"] == source]
    copies = {**gt, "images": images, "annotations": anns}
    reference = coco_mask_metrics(_coco(copies), res, list(range(1, len(idx) + 1)))
    assert _mean_valid(_precision(ev, idx)) == pytest.approx(reference["segm/AP"], abs=1e-9)


def test_same_seed_same_interval_and_more_images_narrow_it() -> None:
    gt, results = _scene(40, seed=3, noise=2)
    coco = _coco(gt)
    ids = [im["id"] for im in gt["images"]]
    ev = evaluated(coco, results, ids)
    a, b = ap_intervals(ev, samples=200, seed=5)["segm/AP"], ap_intervals(ev, samples=200, seed=5)["segm/AP"]
    assert a == b
    few = ap_intervals(evaluated(coco, results, ids[:6]), samples=200)["segm/AP"]
    assert (a.high - a.low) < (few.high - few.low)


def test_paired_gain() -> None:
    gt, worse = _scene(30, seed=4, noise=4)
    _, better = _scene(30, seed=4, noise=0)
    coco = _coco(gt)
    ids = [im["id"] for im in gt["images"]]
    ev_worse, ev_better = evaluated(coco, worse, ids), evaluated(coco, better, ids)
    same = paired_gain(ev_worse, ev_worse, samples=100)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero()
    assert images_to_decide(same) is None
    gain = paired_gain(ev_worse, ev_better, samples=300)
    expected = coco_mask_metrics(coco, better, ids)["segm/AP"] - coco_mask_metrics(coco, worse, ids)["segm/AP"]
    assert gain.value == pytest.approx(expected, abs=1e-9)
    assert gain.excludes_zero() and gain.low > 0
    per_class = paired_gain(ev_worse, ev_better, category=1, samples=100)
    assert per_class.value == pytest.approx(coco_mask_metrics(coco, better, ids)["segm/AP-a"]
                                            - coco_mask_metrics(coco, worse, ids)["segm/AP-a"], abs=1e-9)
    small = paired_gain(evaluated(coco, worse, ids[:3]), evaluated(coco, better, ids[:3]), samples=300)
    if not small.excludes_zero():
        assert images_to_decide(small) > 3
    with pytest.raises(ValueError):
        paired_gain(ev_worse, evaluated(coco, better, ids[:5]))


def test_no_detections_score_zero_with_interval() -> None:
    gt, _ = _scene(5, seed=6, noise=0)
    coco = _coco(gt)
    iv = ap_intervals(evaluated(coco, [], [im["id"] for im in gt["images"]]), samples=50)["segm/AP"]
    assert (iv.value, iv.low, iv.high) == (0.0, 0.0, 0.0)
