"""Training runs in the store: status, progress and worker of a run, its curves, the fixed
held-out split, and model-version lineage (parent version, dataset revision, run).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_RUN_STATUSES = "status IN ('created', 'running', 'done', 'stopped', 'failed', 'killed')"


def upgrade() -> None:
    """Add the run and lineage columns and the ``training_metrics`` / ``image_splits`` tables."""
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("parent", sa.String(255), nullable=True))
        batch.add_column(sa.Column("dataset_revision", sa.String(64), nullable=True))
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="created"))
        batch.add_column(sa.Column("parent_version", sa.String(255), nullable=True))
        batch.add_column(sa.Column("dataset_revision", sa.String(64), nullable=True))
        batch.add_column(sa.Column("iteration", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_iters", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("report", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("worker_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", _TIME, nullable=True))
        batch.add_column(sa.Column("updated_at", _TIME, nullable=True))
        batch.create_check_constraint(op.f("ck_training_runs_status"), _RUN_STATUSES)
    # the ORM fills these; the server defaults only served the rows that existed before
    with op.batch_alter_table("training_runs") as batch:
        batch.alter_column("status", server_default=None)
        batch.alter_column("iteration", server_default=None)
    op.create_table(
        "training_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["training_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_training_metrics_run_id_training_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_metrics")),
    )
    op.create_index("ix_training_metrics_run_iteration", "training_metrics", ["run_id", "iteration"])
    op.create_table(
        "image_splits",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("assigned_at", _TIME, nullable=False),
        sa.CheckConstraint("split IN ('train', 'heldout')", name=op.f("ck_image_splits_split")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE",
                                name=op.f("fk_image_splits_image_id_images")),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_splits")),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("image_splits")
    op.drop_index("ix_training_metrics_run_iteration", table_name="training_metrics")
    op.drop_table("training_metrics")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_constraint(op.f("ck_training_runs_status"), type_="check")
        for column in ("updated_at", "heartbeat_at", "worker_host", "worker_pid", "report", "message",
                       "max_iters", "iteration", "dataset_revision", "parent_version", "status"):
            batch.drop_column(column)
    with op.batch_alter_table("model_versions") as batch:
        for column in ("run_id", "dataset_revision", "parent"):
            batch.drop_column(column)
