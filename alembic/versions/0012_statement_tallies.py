"""PostgreSQL counts the tallies once per statement, not once per row.

The tally triggers of 0005 and 0010 upsert a few counters once per row. Within one
transaction PostgreSQL keeps every version of an updated row, and each upsert walks the
versions before it: a write of a million rankings rows in one transaction (a new set of
vectors scored, other issue thresholds, a new default model) slows down quadratically, to
hours. Statement triggers with transition tables count each statement's rows in one grouped
upsert instead: as many upserts per statement as tally names it touches. SQLite updates a
row in place and keeps its row triggers.

The counts are unchanged: each statement's old rows are taken out and its new rows put in,
as the row triggers did (an update that changes no counted column nets to nothing).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, value, condition) of each tally a row counts in, as of 0005 and 0010; {r} is a row.
TALLIES = {
    "images": [
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
    ],
    "sources": [
        ("'outcome:' || {r}.outcome", "1", "1 = 1"),
        ("'reason:' || COALESCE({r}.reason, 'unknown')", "1", "{r}.outcome = 'failed'"),
    ],
    "rankings": [("'queue:' || {r}.queue", "1", "1 = 1")],
    "predictions": [
        ("'predictions'", "1", "1 = 1"),
        ("'predictions:independent'", "1", "NOT {r}.in_sample"),
        ("'predictions:model:' || CAST({r}.model_id AS VARCHAR(20))", "1", "1 = 1"),
    ],
}
#: The columns the row triggers of 0005 and 0010 fire on, for the downgrade.
TRACKED = {
    "images": "status, split, bytes, label, label_origin",
    "sources": "outcome, reason",
    "rankings": "queue",
    "predictions": "model_id, in_sample",
}


def _grouped(table: str, rows: str, sign: str) -> str:
    """One upsert of every tally the statement's ``rows`` (a transition table) count in."""
    parts = [
        f"SELECT {name.format(r='t')} AS name, {value.format(r='t')} AS n "
        f"FROM {rows} t WHERE {cond.format(r='t')}"
        for name, value, cond in TALLIES[table]
    ]
    return (
        f"INSERT INTO tallies (name, count) SELECT name, {sign}SUM(n) FROM ("
        + " UNION ALL ".join(parts)
        + ") counted WHERE name IS NOT NULL GROUP BY name "
        "ON CONFLICT (name) DO UPDATE SET count = tallies.count + excluded.count;"
    )


def _row_statements(table: str, row: str, sign: str) -> list[str]:
    return [
        f"INSERT INTO tallies (name, count) SELECT {name.format(r=row)}, "
        f"{sign}({value.format(r=row)}) WHERE {cond.format(r=row)} "
        "ON CONFLICT (name) DO UPDATE SET count = tallies.count + excluded.count;"
        for name, value, cond in TALLIES[table]
    ]


def _drop(table: str) -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{event} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS tally_{table}()")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TALLIES:
        _drop(table)
        # plpgsql plans a statement when it first runs it: the branch of another event never
        # names a transition table its trigger lacks.
        body = (
            "BEGIN\n"
            "IF TG_OP IN ('UPDATE', 'DELETE') THEN\n" + _grouped(table, "old_rows", "-") + "\n"
            "END IF;\n"
            "IF TG_OP IN ('INSERT', 'UPDATE') THEN\n" + _grouped(table, "new_rows", "") + "\n"
            "END IF;\n"
            "RETURN NULL;\nEND"
        )
        op.execute(
            f"CREATE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$\n{body}\n$$"
        )
        for event, tables in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            op.execute(
                f"CREATE TRIGGER tally_{table}_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()"
            )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TALLIES:
        _drop(table)
        old, new = _row_statements(table, "OLD", "-"), _row_statements(table, "NEW", "")
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
