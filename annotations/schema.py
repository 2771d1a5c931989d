"""Database schema of the annotation store (SQLAlchemy 2.0 declarative models).

The migrations in ``annotations/migrations/versions`` create exactly this schema; a test compares
the two. Changing a model means adding a migration.

Tables:
    datasets        a COCO dataset: image root, COCO ``info``/``licenses``, id counters, the model
                    version its studio predicts with
    images          one image: COCO id, file name, path relative to the root, size, content hash,
                    review state and the revision number used for optimistic locking
    categories      COCO categories, keeping their COCO ids (unique per dataset)
    annotations     one instance: compressed COCO RLE counts, bbox and area computed from the mask,
                    source, state, score and model version of predictions
    edits           per-image edit history (before/after snapshots) for undo/redo and audit
    model_versions  trained models the studio knows about, each tied to the run, the parent
                    version and the dataset revision it was trained from
    training_runs   fine-tuning runs: status, progress, the worker running it, its report
    training_metrics  a run's loss and held-out AP curves (one row per logged point)
    image_splits    the fixed train / validation / test assignment of each image
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SOURCES = ("imported", "predicted", "human")
STATES = ("proposed", "accepted", "rejected")
REVIEW_STATES = ("unreviewed", "in_progress", "reviewed")
EDIT_STATUSES = ("applied", "undone", "discarded")
RUN_STATUSES = ("created", "running", "done", "stopped", "failed", "killed")
SPLITS = ("train", "val", "test")     # training.split; "heldout" before migration 0005

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """Current time in UTC (stored without time zone by SQLite)."""
    return datetime.now(timezone.utc)


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so that migrations can name constraints."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Dataset(Base):
    """A COCO dataset; ``next_*`` counters hand out COCO ids for new items, never reused."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    image_root: Mapped[str] = mapped_column(Text)
    coco_info: Mapped[dict[str, Any] | None]
    next_image_id: Mapped[int] = mapped_column(default=1)
    next_category_id: Mapped[int] = mapped_column(default=1)
    next_annotation_id: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # the model version (a model_versions.name) the studio predicts with; added by migration 0003
    active_model_version: Mapped[str | None] = mapped_column(String(255))


class Image(Base):
    """An image of a dataset; ``revision`` increases with every edit of the image."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "coco_id"),
        UniqueConstraint("dataset_id", "file_name"),
        _one_of("review_state", REVIEW_STATES, "review_state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    coco_id: Mapped[int]
    file_name: Mapped[str] = mapped_column(Text)
    rel_path: Mapped[str] = mapped_column(Text)
    width: Mapped[int]
    height: Mapped[int]
    content_hash: Mapped[str | None] = mapped_column(String(64))
    review_state: Mapped[str] = mapped_column(String(16), default="unreviewed")
    revision: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime | None]
    updated_by: Mapped[str | None] = mapped_column(String(255))
    last_action: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any] | None]


class Category(Base):
    """A COCO category; ``coco_id`` is the id the COCO file uses, unique within the dataset."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("dataset_id", "coco_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    coco_id: Mapped[int]
    name: Mapped[str] = mapped_column(String(255))
    supercategory: Mapped[str | None] = mapped_column(String(255))
    extra: Mapped[dict[str, Any] | None]


class Annotation(Base):
    """One instance mask. ``category_id`` is the category's COCO id within the same dataset.

    ``rle_counts`` is the compressed COCO RLE string; the size is the image's. ``area`` and the
    ``bbox_*`` columns are computed from it with pycocotools. Ids are never reused (undo of a
    delete puts the annotation back under its old id).
    """

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("dataset_id", "coco_id"),
        ForeignKeyConstraint(
            ["dataset_id", "category_id"],
            ["categories.dataset_id", "categories.coco_id"],
            name="fk_annotations_category",
        ),
        _one_of("source", SOURCES, "source"),
        _one_of("state", STATES, "state"),
        Index("ix_annotations_dataset_source", "dataset_id", "source"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    coco_id: Mapped[int]
    category_id: Mapped[int]
    rle_counts: Mapped[str] = mapped_column(Text)
    area: Mapped[int]
    bbox_x: Mapped[float] = mapped_column(Float)
    bbox_y: Mapped[float] = mapped_column(Float)
    bbox_w: Mapped[float] = mapped_column(Float)
    bbox_h: Mapped[float] = mapped_column(Float)
    iscrowd: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(255))
    extra: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Edit(Base):
    """One entry of an image's edit history.

    ``payload`` holds what undo and redo need: ``{"annotations": [{"id", "before", "after"}],
    "image": {"review_state": [before, after]}}`` where ``before``/``after`` are full annotation
    rows (``None`` when the annotation did not exist). ``revision`` is the image revision the edit
    produced. ``status`` is ``applied``, ``undone`` (can be redone) or ``discarded`` (undone and then
    superseded by a new edit; kept for the record).
    """

    __tablename__ = "edits"
    __table_args__ = (
        _one_of("status", EDIT_STATUSES, "status"),
        Index("ix_edits_image_status", "image_id", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    revision: Mapped[int]
    user: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="applied")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ModelVersion(Base):
    """A model the studio can predict with (added by migration 0002; lineage by 0004).

    ``parent`` names the version a fine-tuning run started from, ``dataset_revision`` is the
    content hash of the exact annotation set it was trained on, ``run_id`` the run that made it.
    """

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    path: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    parent: Mapped[str | None] = mapped_column(String(255))
    dataset_revision: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None]


class TrainingRun(Base):
    """A fine-tuning run (added by migration 0002; progress and worker by 0004).

    ``model_version`` is the version the run produced, ``parent_version`` the one it started
    from; ``status`` is one of RUN_STATUSES; ``worker_pid``/``worker_host``/``heartbeat_at``
    identify the worker process and when it last reported; ``report`` holds what the run wants
    the person to know (weights skipped when starting, the split, AP before and after).
    """

    __tablename__ = "training_runs"
    __table_args__ = (_one_of("status", RUN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL")
    )
    model_version: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    status: Mapped[str] = mapped_column(String(16), default="created")
    parent_version: Mapped[str | None] = mapped_column(String(255))
    dataset_revision: Mapped[str | None] = mapped_column(String(64))
    iteration: Mapped[int] = mapped_column(default=0)
    max_iters: Mapped[int | None]
    message: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None]
    worker_pid: Mapped[int | None]
    worker_host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]


class TrainingMetric(Base):
    """One point of a run's curves: ``kind`` "loss" (smoothed losses and their parts) or
    "eval" (held-out AP); ``values`` maps metric names to numbers (added by migration 0004)."""

    __tablename__ = "training_metrics"
    __table_args__ = (Index("ix_training_metrics_run_iteration", "run_id", "iteration"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    iteration: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ImageSplit(Base):
    """The split an image belongs to, fixed when first assigned (added by migration 0004; three
    splits since 0005: :mod:`training.split`)."""

    __tablename__ = "image_splits"
    __table_args__ = (_one_of("split", SPLITS, "split"),)

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    split: Mapped[str] = mapped_column(String(8))
    assigned_at: Mapped[datetime] = mapped_column(default=utc_now)
