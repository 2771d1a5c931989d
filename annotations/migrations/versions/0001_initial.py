"""Initial schema: datasets, images, categories, annotations and the per-image edit history.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the core tables."""
    _create_datasets()
    _create_images()
    _create_categories()
    _create_annotations()
    _create_edits()


def downgrade() -> None:
    """Drop the core tables."""
    for table in ("edits", "annotations", "categories", "images", "datasets"):
        op.drop_table(table)


def _create_datasets() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("image_root", sa.Text(), nullable=False),
        sa.Column("coco_info", sa.JSON(), nullable=True),
        sa.Column("next_image_id", sa.Integer(), nullable=False),
        sa.Column("next_category_id", sa.Integer(), nullable=False),
        sa.Column("next_annotation_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )


def _create_images() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("coco_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("rel_path", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("review_state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=True),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column("last_action", sa.Text(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "review_state IN ('unreviewed', 'in_progress', 'reviewed')",
            name=op.f("ck_images_review_state"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], ondelete="CASCADE",
            name=op.f("fk_images_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("dataset_id", "coco_id", name=op.f("uq_images_dataset_id_coco_id")),
        sa.UniqueConstraint(
            "dataset_id", "file_name", name=op.f("uq_images_dataset_id_file_name")
        ),
        sqlite_autoincrement=True,
    )


def _create_categories() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("coco_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("supercategory", sa.String(255), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], ondelete="CASCADE",
            name=op.f("fk_categories_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_categories")),
        sa.UniqueConstraint(
            "dataset_id", "coco_id", name=op.f("uq_categories_dataset_id_coco_id")
        ),
    )


def _create_annotations() -> None:
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("coco_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("rle_counts", sa.Text(), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("bbox_x", sa.Float(), nullable=False),
        sa.Column("bbox_y", sa.Float(), nullable=False),
        sa.Column("bbox_w", sa.Float(), nullable=False),
        sa.Column("bbox_h", sa.Float(), nullable=False),
        sa.Column("iscrowd", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(255), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "source IN ('imported', 'predicted', 'human')", name=op.f("ck_annotations_source")
        ),
        sa.CheckConstraint(
            "state IN ('proposed', 'accepted', 'rejected')", name=op.f("ck_annotations_state")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id", "category_id"], ["categories.dataset_id", "categories.coco_id"],
            name=op.f("fk_annotations_category"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], ondelete="CASCADE",
            name=op.f("fk_annotations_dataset_id_datasets"),
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name=op.f("fk_annotations_image_id_images"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotations")),
        sa.UniqueConstraint(
            "dataset_id", "coco_id", name=op.f("uq_annotations_dataset_id_coco_id")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_annotations_image_id"), "annotations", ["image_id"])
    op.create_index(
        op.f("ix_annotations_dataset_source"), "annotations", ["dataset_id", "source"]
    )


def _create_edits() -> None:
    op.create_table(
        "edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('applied', 'undone', 'discarded')", name=op.f("ck_edits_status")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name=op.f("fk_edits_image_id_images"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edits")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_edits_image_status"), "edits", ["image_id", "status"])
