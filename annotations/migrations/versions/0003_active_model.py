"""The model version each dataset's studio predicts with, so that a restart keeps a switch.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``datasets.active_model_version`` (a ``model_versions.name``; NULL: none chosen)."""
    op.add_column("datasets", sa.Column("active_model_version", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop ``datasets.active_model_version``."""
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("active_model_version")
