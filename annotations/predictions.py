"""Model predictions on an image: validating a batch and swapping it for the previous one.

A new prediction run replaces only what is still a machine proposal (``source="predicted"``,
``state="proposed"``); what a person accepted, rejected, drew or edited stays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sqlalchemy import select

from annotations import history, rle
from annotations.editing import ImageEdit, NewAnnotation, insert_annotations, require_category
from annotations.errors import InvalidInputError
from annotations.schema import Annotation


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


def drop_proposals(edit: ImageEdit) -> None:
    """Delete (and log) the image's still-proposed predictions."""
    proposals = edit.session.scalars(
        select(Annotation).where(
            Annotation.image_id == edit.image.id,
            Annotation.source == "predicted",
            Annotation.state == "proposed",
        ).order_by(Annotation.id)
    )
    for ann in proposals:
        edit.log.changed(ann.id, history.snapshot(ann), None)
        edit.session.delete(ann)


def add_predictions(
    edit: ImageEdit, stack: np.ndarray, category_ids: Sequence[int], scores: Sequence[float],
    model_version: str,
) -> list[int | None]:
    """Insert proposals for the non-empty masks; ids aligned with ``stack`` (None = empty)."""
    image = edit.image
    if len(stack) and stack.shape[1:] != (image.height, image.width):
        raise InvalidInputError(
            f"replace_predictions on image {image.id}: masks are {stack.shape[1:]} but the "
            f"image is {(image.height, image.width)} (HxW)"
        )
    for category_id in sorted({int(c) for c in category_ids}):
        require_category(edit.session, image.dataset_id, category_id)
    keep = [i for i in range(len(stack)) if stack[i].any()]
    new = [
        NewAnnotation(counts, category_ids[index], "predicted", "proposed", scores[index],
                      model_version)
        for index, counts in zip(keep, rle.encode_masks(stack[i] for i in keep))
    ]
    ids: list[int | None] = [None] * len(stack)
    for index, ann in zip(keep, insert_annotations(edit, new)):
        ids[index] = ann.id
    return ids
