"""Group labels kept on the images table, and tallies kept by triggers: what a million-image
catalog's queues and statistics read, instead of folding the whole label history per request.

* ``images.label``, ``label_origin``, ``label_event``: the current label of the near-duplicate
  group an image represents (its own and its members' events, the strongest origin and then
  the latest winning); NULL on a group's members. curator's write functions keep them
  (db/grouplabels.py); this migration fills them from the label history.
* ``tallies``: counts (and the byte total) of images by status, active images by split, label
  and label origin, and sources by outcome and failure reason, kept by triggers on ``images``
  and ``sources`` in the transaction that changes them, so every writer keeps them right.
* an index on ``predictions (model_id, margin, image_id)``: the ``uncertain`` queue in order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, value, condition) of each tally a row counts in; {r} is NEW or OLD.
IMAGE_TALLIES = [
    ("'images'", "1", "1 = 1"),
    ("'bytes'", "{r}.bytes", "1 = 1"),
    ("'status:' || {r}.status", "1", "1 = 1"),
    ("'split:' || {r}.split", "1", "{r}.status = 'active'"),
    ("'label:' || {r}.label", "1", "{r}.status = 'active' AND {r}.label IS NOT NULL"),
    (
        "'origin:' || {r}.label_origin",
        "1",
        "{r}.status = 'active' AND {r}.label_origin IS NOT NULL",
    ),
]
SOURCE_TALLIES = [
    ("'outcome:' || {r}.outcome", "1", "1 = 1"),
    ("'reason:' || COALESCE({r}.reason, 'unknown')", "1", "{r}.outcome = 'failed'"),
]
TRACKED = {"images": "status, split, bytes, label, label_origin", "sources": "outcome, reason"}

#: Origins from strongest to weakest (db/labels.py ORIGINS, as of this migration).
RANKS = "CASE e.origin WHEN 'human' THEN 4 WHEN 'import' THEN 3 WHEN 'query' THEN 2 " \
    "WHEN 'model' THEN 1 ELSE 0 END"  # fmt: skip


def _statements(tallies: list[tuple[str, str, str]], row: str, sign: str) -> list[str]:
    return [
        f"INSERT INTO tallies (name, count) SELECT {name.format(r=row)}, "
        f"{sign}({value.format(r=row)}) WHERE {cond.format(r=row)} "
        "ON CONFLICT (name) DO UPDATE SET count = tallies.count + excluded.count;"
        for name, value, cond in tallies
    ]


def _create_triggers(table: str, tallies: list[tuple[str, str, str]]) -> None:
    old, new = _statements(tallies, "OLD", "-"), _statements(tallies, "NEW", "")
    if op.get_context().dialect.name == "postgresql":
        body = (
            "BEGIN\n"
            "IF TG_OP IN ('UPDATE', 'DELETE') THEN\n" + "\n".join(old) + "\nEND IF;\n"
            "IF TG_OP IN ('INSERT', 'UPDATE') THEN\n" + "\n".join(new) + "\nEND IF;\n"
            "RETURN NULL;\nEND"
        )
        op.execute(
            f"CREATE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$\n{body}\n$$"
        )
        for event in ("INSERT", f"UPDATE OF {TRACKED[table]}", "DELETE"):
            name = f"tally_{table}_{event.split()[0].lower()}"
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION tally_{table}()"
            )
        return
    for event, statements in (
        ("INSERT", new),
        (f"UPDATE OF {TRACKED[table]}", old + new),
        ("DELETE", old),
    ):
        name = f"tally_{table}_{event.split()[0].lower()}"
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN\n"
            + "\n".join(statements)
            + "\nEND"
        )


def _drop_triggers(table: str) -> None:
    for event in ("insert", "update", "delete"):
        if op.get_context().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{event} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{event}")
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS tally_{table}()")


def _fill_group_labels() -> None:
    """Each group's current label, from the history: per image and origin the latest event;
    a withdrawn (NULL) one leaves that origin out; then per group the strongest origin, then
    the latest event."""
    op.execute("DROP TABLE IF EXISTS group_label_fill")
    op.execute(
        f"""
        CREATE TEMPORARY TABLE group_label_fill AS
        WITH latest AS (
            SELECT max(id) AS id FROM label_events GROUP BY image_id, origin
        ), live AS (
            SELECT COALESCE(i.duplicate_of, i.id) AS rep, e.label, e.origin, e.id,
                   {RANKS} AS rank
            FROM label_events e
            JOIN latest ON latest.id = e.id
            JOIN images i ON i.id = e.image_id
            WHERE e.label IS NOT NULL
        ), ranked AS (
            SELECT rep, label, origin, id,
                   ROW_NUMBER() OVER (PARTITION BY rep ORDER BY rank DESC, id DESC) AS n
            FROM live
        )
        SELECT rep, label, origin, id FROM ranked WHERE n = 1
        """
    )
    op.execute(
        """
        UPDATE images SET label = f.label, label_origin = f.origin, label_event = f.id
        FROM group_label_fill f
        WHERE f.rep = images.id AND images.duplicate_of IS NULL
        """
    )
    op.execute("DROP TABLE group_label_fill")


def _fill_tallies() -> None:
    for table, tallies in (("images", IMAGE_TALLIES), ("sources", SOURCE_TALLIES)):
        for name, value, cond in tallies:
            op.execute(
                f"INSERT INTO tallies (name, count) "
                f"SELECT {name.format(r=table)}, SUM({value.format(r=table)}) FROM {table} "
                f"WHERE {cond.format(r=table)} GROUP BY 1"
            )


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("label_origin", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("label_event", sa.Integer(), nullable=True))
    op.create_table(
        "tallies",
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tallies")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_predictions_model_margin", ["model_id", "margin", "image_id"], unique=False
        )
    _fill_group_labels()
    _fill_tallies()
    _create_triggers("images", IMAGE_TALLIES)
    _create_triggers("sources", SOURCE_TALLIES)


def downgrade() -> None:
    _drop_triggers("sources")
    _drop_triggers("images")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_model_margin")
    op.drop_table("tallies")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("label_event")
        batch_op.drop_column("label_origin")
        batch_op.drop_column("label")
