"""Model predictions on an image: validating a batch and swapping it for the previous one.

A new prediction run replaces only what is still a machine proposal (``source="predicted"``,
``state="proposed"``); what a person accepted, rejected, relabelled, drew or edited stays, and a new
mask that matches one of those, or a model's annotation the person deleted (mask IoU >=
``match_iou``, any class), is not proposed again: the person has already decided about that object.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sqlalchemy import or_, select

from annotations import history, rle
from annotations.editing import ImageEdit, NewAnnotation, insert_annotations, require_category
from annotations.errors import InvalidInputError
from annotations.schema import Annotation, Edit


def mask_stack(masks: Any, num_categories: int, num_scores: int) -> np.ndarray:
    """(N, H, W) bool array of ``masks``, checked against the number of categories and scores."""
    stack = np.asarray(masks, dtype=bool)
    if len(stack) == 0 and num_categories == num_scores == 0:
        return stack.reshape(0, 0, 0)
    if stack.ndim != 3 or not len(stack) == num_categories == num_scores:
        raise InvalidInputError(
            f"replace_predictions: got masks of shape {stack.shape}, {num_categories} "
            f"category ids and {num_scores} scores; need (N, H, W) masks and N of each"
        )
    return stack


MATCH_IOU = 0.5   # a new proposal overlapping a decided annotation this much is the same object


def drop_proposals(edit: ImageEdit) -> int:
    """Delete (and log) the image's still-proposed predictions; returns how many."""
    proposals = edit.session.scalars(
        select(Annotation).where(
            Annotation.image_id == edit.image.id,
            Annotation.source == "predicted",
            Annotation.state == "proposed",
        ).order_by(Annotation.id)
    )
    dropped = 0
    for ann in proposals:
        edit.log.changed(ann.id, history.snapshot(ann), None)
        edit.session.delete(ann)
        dropped += 1
    edit.session.flush()
    return dropped


def decided_counts(edit: ImageEdit) -> list[str]:
    """RLE counts of every object on the edited image a person decided about: annotations that
    are not machine proposals (accepted, rejected, or a person's), and the model's annotations a
    person deleted (a delete in force: applied, not undone), which are suppressed as rejected ones are."""
    kept = list(edit.session.scalars(
        select(Annotation.rle_counts).where(
            Annotation.image_id == edit.image.id,
            or_(Annotation.state != "proposed", Annotation.source != "predicted"),
        ).order_by(Annotation.id)
    ))
    deletes = edit.session.scalars(select(Edit.payload).where(
        Edit.image_id == edit.image.id, Edit.action == "delete_annotation", Edit.status == "applied"
    ).order_by(Edit.id))
    deleted = [change["before"]["rle_counts"] for payload in deletes for change in payload["annotations"]
               if change["before"] is not None and change["after"] is None
               and change["before"].get("source") == "predicted"]
    return kept + deleted


def add_predictions(
    edit: ImageEdit, stack: np.ndarray, category_ids: Sequence[int], scores: Sequence[float],
    model_version: str, match_iou: float = MATCH_IOU,
) -> tuple[list[int | None], int]:
    """Insert proposals for the non-empty masks that match no decided annotation.

    Returns the new ids aligned with ``stack`` (None = empty or matched) and the number matched.
    """
    image = edit.image
    if len(stack) and stack.shape[1:] != (image.height, image.width):
        raise InvalidInputError(
            f"replace_predictions on image {image.id}: masks are {stack.shape[1:]} but the "
            f"image is {(image.height, image.width)} (HxW)"
        )
    for category_id in sorted({int(c) for c in category_ids}):
        require_category(edit.session, image.dataset_id, category_id)
    keep = [i for i in range(len(stack)) if stack[i].any()]
    counts = rle.encode_masks(stack[i] for i in keep)
    iou = rle.iou_matrix(counts, decided_counts(edit), image.height, image.width)
    novel = [k for k in range(len(keep)) if not (iou.shape[1] and iou[k].max() >= match_iou)]
    new = [
        NewAnnotation(counts[k], category_ids[keep[k]], "predicted", "proposed",
                      scores[keep[k]], model_version)
        for k in novel
    ]
    ids: list[int | None] = [None] * len(stack)
    for k, ann in zip(novel, insert_annotations(edit, new)):
        ids[keep[k]] = ann.id
    return ids, len(keep) - len(novel)
