"""Separations: pairs of images a person says are not near duplicates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 08:16:18.093445
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "separations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_separations_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["other_id"], ["images.id"], name=op.f("fk_separations_other_id_images")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_separations")),
    )
    with op.batch_alter_table("separations", schema=None) as batch_op:
        batch_op.create_index("ix_separations_pair", ["image_id", "other_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("separations", schema=None) as batch_op:
        batch_op.drop_index("ix_separations_pair")

    op.drop_table("separations")
