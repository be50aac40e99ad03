"""A model's verdict: whether it learned, or is no better than chance on its val split.

* ``models.verdict``: ``learned`` or ``chance`` (classifier/chance.py), set when a model's
  training finishes; a model at chance is never the default model for scoring. NULL for the
  models trained before verdicts were given, which keep the rules they had.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("models", sa.Column("verdict", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # Not a batch operation: on SQLite that rebuilds the table (see 0006).
    op.execute("ALTER TABLE models DROP COLUMN verdict")
