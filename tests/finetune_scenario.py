"""The domain-shift scenario, played through the studio's public API (``gradio_client``).

Start from the demo model; a shifted domain made by :mod:`training.synthetic` (the classes in
other colours, stronger textures and noise, and a new class: crosses); a script plays the person
on ``num_images`` images using the generator's ground truth: it opens and predicts each image,
accepts the shown proposals that match an object of the same class (mask IoU >= 0.5),
relabels those that match an object of another class, rejects the rest, paints the objects the
model missed, and marks the image reviewed (rejecting the proposals below the slider). Then it
presses the one-click fine-tune button and reads test mask AP before and after, with their 95%
intervals, off the Fine-tune view; :func:`unseen_ap` scores the same two models on independent
images of the domain. Used by ``tests/test_finetune_scenario.py`` (a helper module, no tests here).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from pycocotools import mask as mask_utils

from training.bootstrap import Interval, ap_intervals, paired_gain
from training.synthetic import SHIFTED_SCENE, make_shapes_dataset
from training.verdict import score

SHOWN_SCORE = 0.5      # the studio's default confidence slider: the proposals a person sees


@dataclass
class ScenarioResult:
    """Figures of one scenario run (AP in 0..100 as the Fine-tune view shows them, times in seconds)."""

    ap_before: Interval
    ap_after: Interval
    test_images: int
    actions: Dict[str, int] = field(default_factory=dict)
    review_s: float = 0.0
    train_s: float = 0.0
    iterations: int = 0
    metrics_text: str = ""
    run_message: str = ""


def shifted_domain(folder: Path, num_images: int, seed: int = 31, size: tuple[int, int] = (128, 128)) -> Path:
    """Generate the shifted-domain images and their ground truth; returns the COCO JSON path."""
    return make_shapes_dataset(folder, num_images, seed, size=size, config=SHIFTED_SCENE)


def categories_file(gt: Path, out: Path) -> Path:
    """A COCO file holding only the ground truth's categories (the person adds the new class by
    importing it in the COCO tab)."""
    coco = json.loads(gt.read_text())
    out.write_text(json.dumps({"images": [], "annotations": [], "categories": coco["categories"]}))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def review_image(client: Any, project: Any, image_id: int, gt: List[tuple[str, np.ndarray]],
                 counts: Dict[str, int]) -> None:
    """Play the person on one image (actions through the API; the masks are read as the person
    sees them: the stored proposals)."""
    from app import canvas
    client.predict(image_id, api_name="/open_image")      # opening an image predicts it
    entry = project.image(image_id)
    proposals = [i for i in project.instances(image_id, entry.revision)
                 if i.state == "proposed" and (i.score or 0) >= SHOWN_SCORE]
    claimed: set[int] = set()
    for inst in sorted(proposals, key=lambda i: -(i.score or 0)):
        scores = [(_iou(inst.mask, m), k) for k, (_, m) in enumerate(gt) if k not in claimed]
        best, k = max(scores, default=(0.0, -1))
        client.predict(inst.id, api_name="/select_instance")
        if best >= 0.5:
            claimed.add(k)
            if gt[k][0] == inst.class_name:
                client.predict(api_name="/accept")
                counts["accepted"] += 1
            else:                                  # relabel (a new class: it asks, yes), then accept
                if "not a class" in client.predict(gt[k][0], api_name="/relabel")[3]:
                    client.predict(api_name="/make_class")
                client.predict(api_name="/accept")
                counts["relabelled"] += 1
        else:
            client.predict(api_name="/reject")
            counts["rejected"] += 1
    for k, (name, mask) in enumerate(gt):
        if k in claimed:
            continue
        if "not a class" in client.predict(canvas.edit_value(mask), name, api_name="/add_mask")[3]:
            client.predict(api_name="/make_class")          # a new class: it asks once, yes, apply again
            client.predict(canvas.edit_value(mask), name, api_name="/add_mask")
        counts["painted"] += 1
    # proposals below the slider were not shown: "mark reviewed" asks, the person rejects them
    client.predict(api_name="/review_reject_undecided")
    if project.image(image_id).review_state != "reviewed":   # nothing in it: "reviewed, no objects"
        client.predict(api_name="/review_no_objects")


def ground_truth(gt_path: Path) -> Dict[str, List[tuple[str, np.ndarray]]]:
    """file name -> [(class name, mask)] from the generator's COCO file."""
    coco = json.loads(gt_path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out: Dict[str, List[tuple[str, np.ndarray]]] = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], mask_utils.decode(a["segmentation"]).astype(bool)))
    return out


CELL = r"([\d.]+) \[([\d.]+), ([\d.]+)\] \((\d+) images, (\d+) objects\)"


def read_ap(metrics_text: str) -> tuple[Interval, Interval]:
    """(before, after) test mask AP with their intervals from the Fine-tune view's table."""
    match = re.search(rf"\| AP \| {CELL} \| {CELL} \|", metrics_text)
    if match is None:
        raise AssertionError(f"no AP row with two intervals in the Fine-tune view: {metrics_text!r}")
    v = match.groups()
    return (Interval(float(v[0]), float(v[1]), float(v[2]), int(v[3]), int(v[4])),
            Interval(float(v[5]), float(v[6]), float(v[7]), int(v[8]), int(v[9])))


def unseen_ap(folder: Path, before: Path, after: Path, num_images: int = 200, seed: int = 97,
              size: tuple[int, int] = (128, 128), samples: int = 200) -> tuple[Interval, Interval, Interval]:
    """Overall mask AP of two checkpoints on ``num_images`` new images of the shifted domain
    (another seed: the studio never saw them), each model exactly as it is, and the paired gain,
    all with 95% intervals (:func:`training.verdict.score`, :mod:`training.bootstrap`)."""
    gt = shifted_domain(folder, num_images, seed=seed, size=size)
    ev_before, ev_after = (score(weights, gt, gt.parent / "images") for weights in (before, after))
    return (ap_intervals(ev_before, samples=samples)["segm/AP"], ap_intervals(ev_after, samples=samples)["segm/AP"],
            paired_gain(ev_before, ev_after, samples=samples))


def run_scenario(client: Any, project: Any, gt_path: Path, iterations: int = 0, timeout: float = 900.0) -> ScenarioResult:
    """Review every image of the project as the person would, fine-tune with one click (or with
    ``iterations`` set in the folded-away settings), wait for the run to end."""
    from gradio_client import handle_file
    counts = {"accepted": 0, "relabelled": 0, "rejected": 0, "painted": 0}
    truth = ground_truth(gt_path)
    start = time.perf_counter()
    client.predict(handle_file(str(categories_file(gt_path, gt_path.parent / "categories.json"))),
                   api_name="/import_coco")
    for entry in project.images():
        review_image(client, project, entry.id, truth[entry.file_name], counts)
    review_s = time.perf_counter() - start
    start = time.perf_counter()
    message = client.predict(None, iterations, 0, 0, api_name="/finetune_start")[0]
    if "started" not in message:
        raise AssertionError(f"fine-tuning did not start: {message}")
    deadline = time.time() + timeout
    while True:
        view = client.predict(api_name="/finetune_poll")
        phase = re.search(r'data-phase="(\w+)"', view[0]).group(1)
        if phase in ("done", "stopped", "failed", "killed") or time.time() > deadline:
            break
        time.sleep(1.0)
    train_s = time.perf_counter() - start
    run = project.store.list_training_runs(project.dataset_id)[-1]
    if phase != "done":
        raise AssertionError(f"the run ended {phase}: {run.message}")
    if not run.model_version:
        raise AssertionError(f"the run made no model: {run.message}")
    before, after = read_ap(view[3])
    return ScenarioResult(before, after, len(run.report["test"]), counts, review_s, train_s, run.iteration,
                          view[3], run.message or "")
