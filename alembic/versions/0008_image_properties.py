"""Image properties: what each picture looks like in numbers (sharpness, brightness,
entropy, colourfulness, aspect, size, a graphic score) and the pHashes of its sub-regions,
measured at ingest; ``curator check --backfill`` fills the table for images imported before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOATS = (
    "sharpness",
    "brightness_p5",
    "brightness_p50",
    "brightness_p95",
    "contrast",
    "entropy",
    "colourfulness",
    "aspect",
)


def upgrade() -> None:
    op.create_table(
        "image_properties",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in _FLOATS),
        sa.Column("short_side", sa.Integer(), nullable=False),
        sa.Column("graphic", sa.Float(), nullable=False),
        sa.Column("windows", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_properties_image_id_images")
        ),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_properties")),
    )


def downgrade() -> None:
    op.drop_table("image_properties")
