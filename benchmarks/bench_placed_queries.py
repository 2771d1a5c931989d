"""One-click segmentation with placed queries on the demo's held-out images, and click latency.

    python benchmarks/bench_placed_queries.py                       # shipped demo model, 200 images
    python benchmarks/bench_placed_queries.py --weights other.safetensors --images 100

For every ground-truth object of the demo's held-out split (regenerated exactly as the studio's
demo does, :func:`app.demo.demo_dataset`), one click at its interior point farthest from the
boundary (the usual first click of interactive-segmentation benchmarks: the maximum of the
Euclidean distance transform of the mask, ``scipy.ndimage.distance_transform_edt``) places a query
(:meth:`fastinst.Predictor.place_queries`); the figure is the mean mask IoU with the object, on all
objects and on the objects the model missed (no prediction scoring >= ``--min-score``, the
studio's default threshold, with mask IoU >= 0.5). Before the click, the best such prediction's
IoU is what the person had ("before"). Class accuracy: the placed query's class is the object's.

A placed query is not refined by more clicks (each click is its own query), so NoC@85/90 (clicks
to reach an IoU) does not apply; the one-click IoU and the share of objects at IoU >= 0.85 / 0.9
after one click are printed instead.

Latency, in the same process, alternating: ``predict`` (the full forward pass and post-processing)
vs ``place_queries`` with one point on an image just predicted (features from the cache: gather,
decoder, heads, one mask at image size). Medians and their ratio; timings on a shared machine are
noisy, the ratio less so.

Measured (2-core machine shared with other jobs, ``--threads 1``, shipped demo model, CPU):

| held-out images | objects | before (best prediction) | one click | IoU >= 0.85 | class right |
|---|---|---|---|---|---|
| 200, all objects | 452 | 0.868 | 0.831 | 72.8% | 100% |
| 200, missed objects | 27 | 0.333 | 0.520 | 14.8% | 100% |
| first 100, all objects | 217 | 0.872 | 0.837 | 72.8% | 100% |
| first 100, missed objects | 14 | 0.345 | 0.571 | 21.4% | 100% |

Latency on 128x128 images (tiny preset): predict 43.9 ms, click 16.4 ms = 0.37 x predict (median
of 30; an earlier run under heavier load: 205 ms vs 95 ms = 0.46). A click is not just the
decoder: preparing and hashing the image (the cache key) and the decoder with its three heads are
a large share of this small model's forward pass; the ratio falls with the backbone's cost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.demo import DEMO_WEIGHTS, demo_dataset  # noqa: E402
from fastinst import Predictor  # noqa: E402
from fastinst.images import load_image  # noqa: E402
from training.data import load_coco  # noqa: E402


def farthest_interior_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the mask pixel farthest from the mask's boundary (first one on ties)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 0.0


def evaluate(predictor: Predictor, image_dir: Path, gt_json: Path, num_images: int, min_score: float) -> dict:
    """Per-object one-click results over the first ``num_images`` images."""
    coco = load_coco(gt_json, image_dir)
    name_of = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    rows = []
    for image_id in tqdm(sorted(coco.getImgIds())[:num_images], desc="images"):
        info = coco.loadImgs(image_id)[0]
        image = load_image(image_dir / info["file_name"])
        pred = predictor.predict(image).filter(min_score)
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd")]
        if not anns:
            continue
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        points = [farthest_interior_point(m) for m in masks]
        placed = predictor.place_queries(image, points)   # independent queries: same as one call each
        for k, (ann, mask) in enumerate(zip(anns, masks)):
            before = max((iou(m, mask) for m in pred.masks), default=0.0)
            rows.append({"iou": iou(placed.masks[k], mask), "before": before, "missed": before < 0.5,
                         "class_ok": placed.class_names[int(placed.classes[k])] == name_of[ann["category_id"]]})
    return {"rows": rows}


def latency(predictor: Predictor, image_dir: Path, reps: int) -> tuple[float, float]:
    """Median seconds of a full predict and of a one-point place_queries on the predicted image."""
    files = sorted(image_dir.glob("*.png"))[:reps]
    full, click = [], []
    for path in files:
        image = load_image(path)
        start = time.perf_counter()
        pred = predictor.predict(image)
        full.append(time.perf_counter() - start)
        h, w = pred.image_size
        start = time.perf_counter()
        predictor.place_queries(image, [(w // 2, h // 2)])
        click.append(time.perf_counter() - start)
    return statistics.median(full), statistics.median(click)


def summary(rows: list[dict]) -> str:
    if not rows:
        return "no objects"
    ious = np.array([r["iou"] for r in rows])
    before = np.array([r["before"] for r in rows])
    return (f"{len(rows):4d} objects  before {before.mean():.3f}  one click {ious.mean():.3f}  "
            f"IoU>=0.5 {np.mean(ious >= 0.5):.1%}  >=0.85 {np.mean(ious >= 0.85):.1%}  "
            f">=0.9 {np.mean(ious >= 0.9):.1%}  class right {np.mean([r['class_ok'] for r in rows]):.1%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS)
    parser.add_argument("--images", type=int, default=200, help="held-out images used (of 200)")
    parser.add_argument("--min-score", type=float, default=0.5, help="a prediction below it counts as missed")
    parser.add_argument("--reps", type=int, default=30, help="images timed for the latency")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastinst-demo-bench")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image_dir, gt_json, _ = demo_dataset(args.data, log=print)
    predictor = Predictor.from_checkpoint(args.weights, device=args.device)
    print(f"model {args.weights.name} on {predictor.device}; held-out demo images in {image_dir}")
    rows = evaluate(predictor, image_dir, gt_json, args.images, args.min_score)["rows"]
    print("all objects    " + summary(rows))
    print("missed objects " + summary([r for r in rows if r["missed"]]))
    full, click = latency(predictor, image_dir, args.reps)
    print(f"latency (median of {args.reps}, server side, shared machine): predict {full * 1e3:.1f} ms, "
          f"click {click * 1e3:.1f} ms = {click / full:.2f} x predict")


if __name__ == "__main__":
    main()
