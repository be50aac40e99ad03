"""Label conflicts: weak labels that met a different one, and groups whose people disagree.

* ``label_conflicts``: an import's or a crawl's label that differed from the label the
  image's group already had, with what happened (kept, or replaced with ``--relabel``).
* ``images.human_conflict``: set on a representative whose group's members carry different
  human labels (kept by db/grouplabels.py); such groups are left out of training and fill
  the ``conflicts`` review queue. This migration sets it from the label history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Representatives whose members' current human labels differ: each image's latest human
#: event, when it names a label, is its human label (db/labels.py current_labels).
CONFLICTED = """
SELECT rep FROM (
    SELECT COALESCE(i.duplicate_of, i.id) AS rep, e.label AS label
    FROM (SELECT image_id, MAX(id) AS id FROM label_events
          WHERE origin = 'human' GROUP BY image_id) AS latest
    JOIN label_events AS e ON e.id = latest.id
    JOIN images AS i ON i.id = latest.image_id
    WHERE e.label IS NOT NULL
) AS human
GROUP BY rep HAVING COUNT(DISTINCT label) > 1
"""


def upgrade() -> None:
    op.add_column(
        "images",
        sa.Column("human_conflict", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index("ix_images_human_conflict", "images", ["human_conflict"], unique=False)
    op.create_table(
        "label_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("held", sa.String(length=64), nullable=False),
        sa.Column("held_origin", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_label_conflicts_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_label_conflicts_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_conflicts")),
    )
    op.create_index("ix_label_conflicts_image_id", "label_conflicts", ["image_id"], unique=False)
    op.execute(f"UPDATE images SET human_conflict = TRUE WHERE id IN ({CONFLICTED})")


def downgrade() -> None:
    op.drop_index("ix_label_conflicts_image_id", table_name="label_conflicts")
    op.drop_table("label_conflicts")
    op.drop_index("ix_images_human_conflict", table_name="images")
    # Not a batch operation: on SQLite that rebuilds the table and loses 0005's triggers.
    op.execute("ALTER TABLE images DROP COLUMN human_conflict")
