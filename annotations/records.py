"""Plain records the store hands out: detached from the database, safe to keep and pass around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from annotations import rle
from annotations.schema import Annotation, Edit, Image


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset and how much it holds (annotations counted without rejected ones; ``num_reviewed``
    images marked reviewed, ``num_accepted`` accepted annotations: a person's work)."""

    id: int
    name: str
    image_root: Path
    num_images: int
    num_annotations: int
    created_at: datetime
    num_reviewed: int = 0
    num_accepted: int = 0


@dataclass(frozen=True)
class ImageRecord:
    """An image. ``id`` is the store's id (use it with every image call), ``coco_id`` the file's.

    ``revision`` is what to pass as ``expected_revision`` to detect concurrent edits;
    ``num_annotations`` counts the annotations that are not rejected.
    """

    id: int
    dataset_id: int
    coco_id: int
    file_name: str
    width: int
    height: int
    review_state: str
    revision: int
    num_annotations: int = 0
    content_hash: str | None = None
    last_action: str | None = None       # the summary of the image's last edit (or "undo of '...'")

    @classmethod
    def from_row(cls, image: Image, num_annotations: int = 0) -> ImageRecord:
        """Build from an ``images`` row."""
        return cls(
            id=image.id,
            dataset_id=image.dataset_id,
            coco_id=image.coco_id,
            file_name=image.file_name,
            width=image.width,
            height=image.height,
            review_state=image.review_state,
            revision=image.revision,
            num_annotations=num_annotations,
            content_hash=image.content_hash,
            last_action=image.last_action,
        )


@dataclass(frozen=True)
class Category:
    """A category; ``id`` is its COCO id (what ``category_id`` means everywhere in the API)."""

    id: int
    name: str
    supercategory: str | None = None


@dataclass(frozen=True)
class AnnotationRecord:
    """One instance. ``mask`` is decoded from the stored RLE on first access (then cached).

    ``bbox`` is COCO ``[x, y, width, height]``; ``area`` the number of mask pixels.
    """

    id: int
    image_id: int
    coco_id: int
    category_id: int
    rle_counts: str
    height: int
    width: int
    bbox: tuple[float, float, float, float]
    area: int
    iscrowd: bool
    source: str
    state: str
    score: float | None
    model_version: str | None
    extra: dict[str, Any] | None = None   # non-standard keys (e.g. ``placed_query``: [x, y])

    @cached_property
    def mask(self) -> np.ndarray:
        """(H, W) bool mask at the image's size."""
        return rle.decode_mask(self.rle_counts, self.height, self.width)

    @property
    def rle(self) -> dict[str, Any]:
        """The COCO RLE object (``{"size": [h, w], "counts": str}``)."""
        return {"size": [self.height, self.width], "counts": self.rle_counts}

    @classmethod
    def from_row(cls, ann: Annotation, height: int, width: int) -> AnnotationRecord:
        """Build from an ``annotations`` row and its image's size."""
        return cls(
            id=ann.id,
            image_id=ann.image_id,
            coco_id=ann.coco_id,
            category_id=ann.category_id,
            rle_counts=ann.rle_counts,
            height=height,
            width=width,
            bbox=(ann.bbox_x, ann.bbox_y, ann.bbox_w, ann.bbox_h),
            area=ann.area,
            iscrowd=ann.iscrowd,
            source=ann.source,
            state=ann.state,
            score=ann.score,
            model_version=ann.model_version,
            extra=ann.extra,
        )


@dataclass(frozen=True)
class EditRecord:
    """One entry of an image's edit history."""

    id: int
    image_id: int
    revision: int
    user: str
    action: str
    summary: str
    status: str
    created_at: datetime

    @classmethod
    def from_row(cls, edit: Edit) -> EditRecord:
        """Build from an ``edits`` row."""
        return cls(
            id=edit.id,
            image_id=edit.image_id,
            revision=edit.revision,
            user=edit.user,
            action=edit.action,
            summary=edit.summary,
            status=edit.status,
            created_at=edit.created_at,
        )


@dataclass(frozen=True)
class ModelVersionRecord:
    """A model version the studio knows about; ``parent`` is the version it was fine-tuned
    from, ``dataset_revision`` the content hash of the annotations it was trained on."""

    id: int
    name: str
    path: str | None
    metrics: dict[str, Any] | None
    created_at: datetime
    parent: str | None = None
    dataset_revision: str | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class TrainingRunRecord:
    """A fine-tuning run: what it trains (``config``, ``dataset_revision``, ``parent_version``),
    how far it got (``status``, ``iteration`` of ``max_iters``, ``message``), the worker running
    it, and what it produced (``model_version``, ``metrics``, ``report``)."""

    id: int
    name: str
    dataset_id: int | None
    model_version: str | None
    path: str | None
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None
    created_at: datetime
    status: str = "created"
    parent_version: str | None = None
    dataset_revision: str | None = None
    iteration: int = 0
    max_iters: int | None = None
    message: str | None = None
    report: dict[str, Any] | None = None
    worker_pid: int | None = None
    worker_host: str | None = None
    heartbeat_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TrainingMetricRecord:
    """One point of a run's curves (``kind`` "loss" or "eval")."""

    iteration: int
    kind: str
    values: dict[str, Any]
    created_at: datetime
