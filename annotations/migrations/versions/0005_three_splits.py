"""The reviewed images split three ways (train, val, test) instead of two (train, heldout).

A ``heldout`` image was never trained on: it becomes a ``test`` image (``training.split`` says
why that is the honest mapping); ``train`` images stay. Downgrading makes ``test`` and ``val``
images ``heldout`` again (neither was trained on).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CHECK = "ck_image_splits_split"


def _recheck(allowed: str, renames: dict[str, str]) -> None:
    """Drop the split check, rename split values, add the check for ``allowed``."""
    with op.batch_alter_table("image_splits") as batch:
        batch.drop_constraint(op.f(_CHECK), type_="check")
    splits = sa.table("image_splits", sa.column("split", sa.String(8)))
    for old, new in renames.items():
        op.execute(splits.update().where(splits.c.split == old).values(split=new))
    with op.batch_alter_table("image_splits") as batch:
        batch.create_check_constraint(op.f(_CHECK), f"split IN ({allowed})")


def upgrade() -> None:
    """``heldout`` -> ``test``; the check allows train, val, test."""
    _recheck("'train', 'val', 'test'", {"heldout": "test"})


def downgrade() -> None:
    """``test`` and ``val`` -> ``heldout``; the check allows train, heldout."""
    _recheck("'train', 'heldout'", {"test": "heldout", "val": "heldout"})
