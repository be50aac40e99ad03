"""Window hashes in a table of their own, made when crop matching first needs them.

The pHashes of each picture's windows (by which a cropped copy finds its photo) were
measured at ingest with its other properties, and every import paid for them, even in a
catalog too large for crop matching by default. They now come from the stored thumbnail
when ``curator dedup`` or ``curator check`` first matches crops, into ``image_windows``. The
windows the third version of the properties measured move there (``windows-v1``: the same
windows, hashed the same way, on the thumbnail before it was encoded rather than after);
those of earlier versions are made again when needed. ``image_properties`` loses its
column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_windows",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("windows", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_windows_image_id_images")
        ),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_windows")),
    )
    # Only the third version's windows are of today's kind (9-byte records, hashed on the 64
    # square); an empty one may be a downgrade's stand-in for windows never made.
    op.execute(
        "INSERT INTO image_windows (image_id, version, windows) "
        "SELECT image_id, 'windows-v1', windows FROM image_properties "
        "WHERE version = 'props-v3' AND length(windows) > 0"
    )
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.drop_column("windows")


def downgrade() -> None:
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.add_column(sa.Column("windows", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE image_properties SET windows = (SELECT w.windows FROM image_windows w "
        "WHERE w.image_id = image_properties.image_id AND w.version = 'windows-v1')"
    )
    # A picture whose windows were never made has none (as one whose windows are all flat).
    op.get_bind().execute(
        sa.text("UPDATE image_properties SET windows = :none WHERE windows IS NULL"),
        {"none": b""},
    )
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.alter_column("windows", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("image_windows")
