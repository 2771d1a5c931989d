"""Inspect: what the model predicted on this image, filtered by confidence, and which instance is
selected. Plain functions over ``Instance`` lists; ``app/ui.py`` wires them to components."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fastinst import visualize
from app.project import Instance

TABLE_HEADERS = ["id", "class", "score", "state", "flag", "area", "source", "model"]

STATE_MARKS = {"proposed": "?", "accepted": "✓", "rejected": "✗"}


def visible_instances(instances: Sequence[Instance], min_score: float,
                      show_rejected: bool = False, selected: int | None = None) -> list[Instance]:
    """The instances a person should see: every accepted one, proposals at or above ``min_score``
    (and those of queries a person placed, whatever their score), rejected ones only on request or
    while ``selected`` (the one just rejected stays in sight, so that a quick A after R lands on
    what the person sees). Ordered top-first: decided ones, then proposals by score."""
    keep = []
    for inst in instances:
        if inst.state == "rejected" and not show_rejected and inst.id != selected:
            continue
        if inst.state == "proposed" and inst.placed_at is None and (inst.score or 0.0) < min_score:
            continue
        keep.append(inst)
    return sorted(keep, key=lambda i: (i.state != "accepted", -(i.score if i.score is not None else 1.0), i.id))


def instance_label(inst: Instance) -> str:
    """Short tag: id, class, score (for predictions) and review mark."""
    score = f" {inst.score:.2f}" if inst.score is not None and inst.source == "predicted" else ""
    mark = STATE_MARKS.get(inst.state, "")
    return f"#{inst.id} {inst.class_name}{score} {mark}".rstrip()


def pick_instance(instances: Sequence[Instance], x: int, y: int) -> int | None:
    """The id of the top-most visible instance under pixel (x, y), or None."""
    if not instances:
        return None
    index = visualize.instance_at(np.stack([i.mask for i in instances]), int(x), int(y))
    return None if index is None else instances[index].id


def instance_rows(instances: Sequence[Instance], dup_iou: float = 0.9) -> list[list]:
    """Rows of the instance table, in the order drawn (top first): the model version that made
    each prediction, and a flag on instances that near-duplicate one drawn above them."""
    flags = near_duplicates(instances, dup_iou)
    return [[i.id, i.class_name, None if i.score is None else round(float(i.score), 3),
             f"{STATE_MARKS.get(i.state, '')} {i.state}".lstrip(),
             f"dup of #{flags[i.id]}" if i.id in flags else "", i.area, i.source, i.model_version or ""]
            for i in instances]


def mask_iou(a: Instance, b: Instance) -> float:
    """Mask IoU of two instances, counting the intersection only where their boxes meet."""
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    x0, y0, x1, y1 = max(ax, bx), max(ay, by), min(ax + aw, bx + bw), min(ay + ah, by + bh)
    if x0 >= x1 or y0 >= y1:
        return 0.0
    inter = int(np.logical_and(a.mask[y0:y1, x0:x1], b.mask[y0:y1, x0:x1]).sum())
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def near_duplicates(instances: Sequence[Instance], min_iou: float) -> dict[int, int]:
    """Instance id -> id of the instance it near-duplicates: same class, mask IoU ≥ ``min_iou``,
    drawn above it (accepted first, then higher score). Proposals and accepted objects alike (two
    accepted copies of one object would be exported twice); rejected ones are never flagged."""
    flags: dict[int, int] = {}
    for k, inst in enumerate(instances):
        if inst.state == "rejected":
            continue
        for other in instances[:k]:
            if other.category_id == inst.category_id and other.id not in flags and \
                    mask_iou(inst, other) >= min_iou:
                flags[inst.id] = other.id
                break
    return flags


def duplicates_of(inst: Instance, instances: Sequence[Instance], min_iou: float) -> list[Instance]:
    """The proposals and accepted instances of the same class overlapping ``inst`` with mask
    IoU ≥ ``min_iou`` (what Keep-one rejects)."""
    return [o for o in instances if o.id != inst.id and o.state != "rejected"
            and o.category_id == inst.category_id and mask_iou(inst, o) >= min_iou]


def instance_choices(instances: Sequence[Instance], dup_iou: float = 0.9) -> list[tuple[str, int]]:
    """(label, id) pairs for the instance picker; near-duplicates say of which instance."""
    flags = near_duplicates(instances, dup_iou)
    return [(instance_label(i) + (f" · dup of #{flags[i.id]}" if i.id in flags else ""), i.id)
            for i in instances]


def describe(inst: Instance | None) -> str:
    """Markdown summary of the selected instance."""
    if inst is None:
        return "No instance selected: click a mask, a table row, or pick one from the list."
    x, y, w, h = inst.bbox
    score = "—" if inst.score is None else f"{inst.score:.3f}"
    query = "—" if inst.query is None else str(inst.query)
    return (f"**#{inst.id} {inst.class_name}** · score {score} · {inst.state} ({inst.source}) · "
            f"area {inst.area} px · box {x},{y} {w}×{h} · query {query}"
            + (f" · model `{inst.model_version}`" if inst.model_version else ""))
