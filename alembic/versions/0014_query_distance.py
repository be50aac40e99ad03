"""Each CLIP vector's distance to the words of the crawl's query that found its picture: the
``off-query`` review queue ranks the pictures farthest from them first.

The column is empty for the sets made before; the next ``curator embed`` of a CLIP set fills
it (the vectors stay as they are), and the queue's rankings follow from there.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("embedded") as batch:
        batch.add_column(sa.Column("query_distance", sa.Float(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM rankings WHERE queue = 'off-query'")
    with op.batch_alter_table("embedded") as batch:
        batch.drop_column("query_distance")
