"""Evaluate view: any model version against the reviewed images, and what to review next.

- Mask AP and per-class AP (pycocotools), each with its 95% bootstrap interval over images and the
  images and objects it rests on (:mod:`training.bootstrap`), on the test images (never trained
  on, never used to choose anything: :mod:`training.split`) or on all reviewed images (which
  include the images a fine-tuned model trained on: not a measure of how it does on new images).
- Per image: false positives, false negatives and wrong classes at IoU 0.5 (COCOeval's matching,
  :mod:`training.analysis`), worst first; a picked image is drawn with its errors marked.
- The confusion between classes (rows: the objects' classes, columns: what the model said).
- Side by side: the current model and any other version (e.g. FastInst beside QueryInst) on the
  open image, with the instances only one of them found outlined.
- Review next: the unreviewed images, most uncertain first (score ambiguity, and how much an
  instance's mask still changes between the last two decoder layers).

Predictions come from :class:`app.versions.VersionModels` (the current model, or a registered
version loaded on demand); events that run a model use the studio's model concurrency group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastinst import visualize
from app.project import Project, StudioError, ap_text
from app.versions import VersionModels
from training.verdict import FEW_TEST_IMAGES, FEW_TEST_IMAGES_NOTE

SCOPES = ("test images", "all reviewed images")
TP_RGB, FP_RGB, FN_RGB, WRONG_RGB = (40, 200, 70), (235, 50, 50), (250, 200, 0), (255, 120, 0)
IMAGE_HEADERS = ["image", "file", "false pos.", "false neg.", "wrong class", "correct"]
REVIEW_HEADERS = ["image", "file", "uncertainty", "score ambiguity", "mask change (last layers)", "instances"]


@dataclass
class Evaluation:
    """One version measured on a set of reviewed images."""

    version: str
    coco: dict
    results: list
    metrics: dict   # "segm/AP", "segm/AP-<class>" -> training.bootstrap.Interval
    analysis: Any
    min_score: float
    scope: str = SCOPES[0]


def reviewed_coco(project: Project, scope: str) -> tuple[Any, dict]:
    """The reviewed images' accepted annotations, read by the one COCO reader: (pycocotools COCO
    of every reviewed image, COCO dict of the scope's images: test ones only for that scope).

    Raises StudioError when there is nothing to evaluate on."""
    from training.data import load_coco
    gt = load_coco(project.export_coco(only_reviewed=True))
    coco = gt.dataset
    if scope == SCOPES[0]:
        splits = project.store.image_splits(project.dataset_id)
        held = {project.store.image(i).coco_id for i, s in splits.items() if s == "test"}
        coco = {**coco, "images": [im for im in coco["images"] if im["id"] in held],
                "annotations": [a for a in coco["annotations"] if a["image_id"] in held]}
    if not coco["images"]:
        raise StudioError(f"no {scope} to evaluate on yet" + (" (a fine-tuning run fixes the split)"
                                                                if scope == SCOPES[0] else ""))
    return gt, coco


def evaluate(project: Project, models: VersionModels, version: str, scope: str, min_score: float) -> Evaluation:
    """Predict every image of the scope with ``version`` and score it."""
    from fastinst.coco_results import to_coco_results
    from training.analysis import analyse
    from training.bootstrap import ap_intervals, evaluated
    gt, coco = reviewed_coco(project, scope)
    by_coco_id = {r.coco_id: r.id for r in project.store.list_images(project.dataset_id)}
    names = {name: cid for cid, name in project.categories()}
    results: list = []
    for im in coco["images"]:
        pred = models.predict(version, by_coco_id[im["id"]])
        known = [k for k in range(len(pred)) if pred.class_names[int(pred.classes[k])] in names]
        cats = [names.get(n, -1) for n in pred.class_names]   # class index -> COCO id (unknown ones skipped)
        results += to_coco_results(pred.masks[known], pred.scores[known], pred.classes[known], im["id"], cats)
    metrics = ap_intervals(evaluated(gt, results, [im["id"] for im in coco["images"]]))
    return Evaluation(version, coco, results, metrics, analyse(coco, results, min_score=min_score), min_score, scope)


def summary_markdown(ev: Evaluation) -> str:
    """AP and per-class AP, each with its 95% interval and what it rests on, and error totals."""
    m = ev.metrics
    per_class = "\n".join(f"- {k.removeprefix('segm/AP-')}: {ap_text(v)}" for k, v in m.items()
                          if k.startswith("segm/AP-"))
    fp = sum(len(e.false_positives) for e in ev.analysis.images)
    fn = sum(len(e.false_negatives) for e in ev.analysis.images)
    wrong = sum(len(e.wrong_class) for e in ev.analysis.images)
    return (f"**`{ev.version}`** on {len(ev.coco['images'])} images · mask AP **{ap_text(m.get('segm/AP'))}** "
            f"(95% bootstrap interval over images)"
            + ("" if ev.scope == SCOPES[0] else " · these images include those a fine-tuned model trained on: "
               "not a measure of how it does on new images")
            + ("" if len(ev.coco["images"]) >= FEW_TEST_IMAGES else f" · {FEW_TEST_IMAGES_NOTE}")
            + f"\n\nper class:\n{per_class}\n\n"
            f"at IoU 0.5 and score >= {ev.min_score:.2f}: {fp} false positives, {fn} false negatives, "
            f"{wrong} of them wrong classes")


def image_rows(project: Project, ev: Evaluation) -> list[list[Any]]:
    """Per-image errors, worst first (the first column is the store's image id)."""
    names = {im["id"]: im["file_name"] for im in ev.coco["images"]}
    by_coco_id = {r.coco_id: r.id for r in project.store.list_images(project.dataset_id)}
    return [[by_coco_id[e.image_id], names[e.image_id], len(e.false_positives), len(e.false_negatives),
             len(e.wrong_class), len(e.matches)] for e in ev.analysis.images]


def confusion_frame(ev: Evaluation) -> pd.DataFrame:
    """Rows: the objects' classes (+ background); columns: the predicted class (+ missed)."""
    labels = ev.analysis.labels
    frame = pd.DataFrame(ev.analysis.confusion, columns=[*labels, "missed"])
    frame.insert(0, "object \\ predicted", [*labels, "background (false pos.)"])
    return frame


def render_errors(project: Project, ev: Evaluation, image_id: int) -> np.ndarray:
    """One image large with its outcome: correct detections green, false positives red, wrong
    classes orange (labelled "said X, is Y"), missed objects yellow."""
    from pycocotools import mask as mask_utils
    entry = project.store.image(image_id)
    errs = next((e for e in ev.analysis.images if e.image_id == entry.coco_id), None)
    if errs is None:
        raise StudioError(f"{entry.file_name} was not part of this evaluation")
    h, w = entry.height, entry.width
    gts = [a for a in ev.coco["annotations"] if a["image_id"] == entry.coco_id]
    dets = [r for r in ev.results if r["image_id"] == entry.coco_id and r["score"] >= ev.min_score]
    decode = lambda o: mask_utils.decode(o["segmentation"]).astype(bool)  # noqa: E731
    names = dict(project.categories())
    wrong = dict(errs.wrong_class)
    masks, colours, labels = [], [], []
    for d, _ in errs.matches:
        masks.append(decode(dets[d])), colours.append(TP_RGB), labels.append(f"ok {names[dets[d]['category_id']]}")
    for d in errs.false_positives:
        said = names[dets[d]["category_id"]]
        if d in wrong:
            label, colour = f"said {said}, is {names[gts[wrong[d]]['category_id']]}", WRONG_RGB
        else:
            label, colour = f"false pos. {said} {dets[d]['score']:.2f}", FP_RGB
        masks.append(decode(dets[d])), colours.append(colour), labels.append(label)
    wrong_g = set(wrong.values())
    for g in errs.false_negatives:
        if g not in wrong_g:
            masks.append(decode(gts[g])), colours.append(FN_RGB), labels.append(f"missed {names[gts[g]['category_id']]}")
    image = project.pixels(image_id)
    k = visualize.display_factor(h, w, min_side=480)
    stack = visualize.enlarge_masks(np.stack(masks), k) if masks else np.zeros((0, h * k, w * k), bool)
    out = visualize.overlay_instances(visualize.enlarge(image, k), stack, colours, labels)
    visualize.title_bar(out, f"{entry.file_name}: {len(errs.false_positives)} false pos., "
                          f"{len(errs.false_negatives)} missed, {len(errs.wrong_class)} wrong class")
    return out


def review_next(project: Project, models: VersionModels, version: str, limit: int = 50) -> list[list[Any]]:
    """Unreviewed images ranked by the model's uncertainty (most unsure first)."""
    from training.analysis import image_uncertainty, rank_for_review
    entries = {e.id: e for e in project.images() if e.review_state != "reviewed"}
    if not entries:
        raise StudioError("every image is reviewed")
    ranked = rank_for_review({i: image_uncertainty(models.predict(version, i)) for i in entries})
    return [[i, entries[i].file_name, round(u.score, 3), round(u.ambiguity, 3), round(u.mask_change, 3), u.instances]
            for i, u in ranked[:limit]]


def side_by_side(project: Project, models: VersionModels, other: str, image_id: int, min_score: float) -> np.ndarray:
    """The current model's instances (left) and version ``other``'s (right) on one image, each
    titled with its version and model; instances without a same-class partner at mask IoU >= 0.5
    on the other side are outlined (red: only left, green: only right)."""
    from engines.load import display_name
    from app.train_view import render_comparison

    current = project.model.version
    if not other or other == current:
        raise StudioError("choose another model version to compare the current model with")
    left, right = models.predict(current, image_id), models.predict(other, image_id)
    titles = (f"{display_name(project.model.model)} {current}", f"{display_name(models.slot(other).model)} {other}")
    return render_comparison(project.pixels(image_id), left, right, min_score, titles, ("only here", "only here"))
