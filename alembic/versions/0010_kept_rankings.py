"""Kept rankings: the ranked review queues and their counts, kept instead of recomputed.

* ``rankings (queue, image_id, score)``: each image's place in the ``uncertain``,
  ``disagree`` and ``weak-disagree`` queues, the issue queues (``issues``, ``issue:blurry``...)
  and the groups of ``duplicates`` (for its count), kept by db/rankings.py in the transaction
  of each write that changes it, with an index on (queue, score, image_id) a page walks. This
  migration fills it from the predictions, the group labels and the image properties.
* tallies ``queue:<name>`` (rows of a ranking), ``predictions``, ``predictions:independent``
  (of models that did not train on the image) and ``predictions:model:<id>``, kept by
  triggers on ``rankings`` and ``predictions``, so the review page's counts and the queues'
  "no predictions yet" checks read a row instead of scanning a million.
* the setting ``catalog_id``: this catalog's identity, which files kept beside it (the
  near-duplicate index) record; ``db copy`` gives a copy a new one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, value, condition) of each tally a row counts in; {r} is NEW or OLD.
TALLIES = {
    "rankings": [("'queue:' || {r}.queue", "1", "1 = 1")],
    "predictions": [
        ("'predictions'", "1", "1 = 1"),
        ("'predictions:independent'", "1", "NOT {r}.in_sample"),
        ("'predictions:model:' || CAST({r}.model_id AS VARCHAR(20))", "1", "1 = 1"),
    ],
}
TRACKED = {"rankings": "queue", "predictions": "model_id, in_sample"}
#: The setting that names the model the kept ``uncertain`` ranking was made with.
BASIS = "kept_uncertain_model"
WEAK = ("import", "query", "model")
#: The issue types as of this migration (db/properties.py ISSUES): column, below, default.
ISSUE_RULES = {
    "blurry": ("sharpness", True, 0.099),
    "dark": ("brightness_p50", True, 0.19),
    "bright": ("brightness_p5", False, 0.52),
    "low-information": ("entropy", True, 3.8),
    "grayscale": ("colourfulness", True, 7.9),
    "odd-aspect": ("aspect", False, 2.8),
    "small": ("short_side", True, 130),
}
#: The setting holding the thresholds the kept issue rankings were made with.
ISSUE_BASIS = "kept_issue_thresholds"
SETTINGS = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.JSON))


def _statements(tallies: list[tuple[str, str, str]], row: str, sign: str) -> list[str]:
    return [
        f"INSERT INTO tallies (name, count) SELECT {name.format(r=row)}, "
        f"{sign}({value.format(r=row)}) WHERE {cond.format(r=row)} "
        "ON CONFLICT (name) DO UPDATE SET count = tallies.count + excluded.count;"
        for name, value, cond in tallies
    ]


def _create_triggers(table: str) -> None:
    tallies = TALLIES[table]
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
    postgresql = op.get_context().dialect.name == "postgresql"
    for event in ("insert", "update", "delete"):
        on = f" ON {table}" if postgresql else ""
        op.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{event}{on}")
    if postgresql:
        op.execute(f"DROP FUNCTION IF EXISTS tally_{table}()")


def _default_model(conn: sa.Connection) -> int | None:
    """db/registry.py default_model as of this migration: the chosen one if it is done and
    not at chance (0007's verdict), else the newest such model."""
    chosen = conn.execute(sa.text("SELECT value FROM settings WHERE key = 'default_model'"))
    value = chosen.scalar()
    value = json.loads(value) if isinstance(value, str) else value
    usable = sa.text(
        "SELECT id FROM models WHERE status = 'done' AND (verdict IS NULL OR verdict != 'chance')"
    )
    done = {i for (i,) in conn.execute(usable)}
    if isinstance(value, int) and value in done:
        return value
    return max(done) if done else None


def _fill() -> None:
    """The three rankings from the predictions: ``uncertain`` by the default model's margin
    for active groups without a human label; ``disagree`` (weak labels) and
    ``weak-disagree`` (a query's) by the probability each group's newest prediction of a
    model that did not train on it gives the group's label; ``duplicates``, the active
    groups with members (kept for their count)."""
    conn = op.get_bind()
    model = _default_model(conn)
    if model is not None:
        op.execute(
            sa.text(
                "INSERT INTO rankings (queue, image_id, score) "
                "SELECT 'uncertain', p.image_id, p.margin FROM predictions p "
                "JOIN images i ON i.id = p.image_id WHERE p.model_id = :m "
                "AND i.status = 'active' "
                "AND (i.label_origin IS NULL OR i.label_origin != 'human')"
            ).bindparams(m=model)
        )
        op.bulk_insert(SETTINGS, [{"key": BASIS, "value": model}])
    classes = {
        i: json.loads(c) if isinstance(c, str) else c
        for i, c in conn.execute(sa.text("SELECT id, classes FROM models"))
    }
    rows = conn.execute(
        sa.text(
            "SELECT p.image_id, p.model_id, p.probs, i.label, i.label_origin FROM predictions p "
            "JOIN images i ON i.id = p.image_id WHERE p.id IN (SELECT max(id) FROM predictions "
            "WHERE NOT in_sample GROUP BY image_id) AND i.status = 'active'"
        )
    )
    out = []
    for image_id, model_id, probs, label, origin in rows:
        names = classes.get(model_id) or []
        if origin not in WEAK or label not in names:
            continue
        probs = json.loads(probs) if isinstance(probs, str) else probs
        score = float(probs[names.index(label)])
        out.append({"q": "disagree", "i": image_id, "s": score})
        if origin == "query":
            out.append({"q": "weak-disagree", "i": image_id, "s": score})
    op.execute(
        "INSERT INTO rankings (queue, image_id, score) SELECT 'duplicates', i.id, 0 "
        "FROM images i WHERE i.status = 'active' AND i.duplicate_of IS NULL AND i.id IN "
        "(SELECT duplicate_of FROM images WHERE duplicate_of IS NOT NULL)"
    )
    insert = sa.text("INSERT INTO rankings (queue, image_id, score) VALUES (:q, :i, :s)")
    for start in range(0, len(out), 5000):
        conn.execute(insert, out[start : start + 5000])


def _setting(conn: sa.Connection, key: str) -> object:
    value = conn.execute(sa.text("SELECT value FROM settings WHERE key = :k"), {"k": key})
    found = value.scalar()
    return json.loads(found) if isinstance(found, str) else found


def _fill_issues() -> None:
    """The issue queues, as db/properties.py issue_ranking ranks them: active images without
    a human label whose properties a type flags, by minus how far past its threshold."""
    conn = op.get_bind()
    stored = _setting(conn, "issue_thresholds")
    stored = stored if isinstance(stored, dict) else {}
    limits = {name: float(stored.get(name, rule[2])) for name, rule in ISSUE_RULES.items()}
    columns = sorted({column for column, _below, _default in ISSUE_RULES.values()})
    rows = conn.execute(
        sa.text(
            f"SELECT p.image_id, {', '.join('p.' + c for c in columns)} FROM image_properties p "
            "JOIN images i ON i.id = p.image_id WHERE i.status = 'active' "
            "AND (i.label_origin IS NULL OR i.label_origin != 'human')"
        )
    )
    out = []
    for row in rows.mappings():
        worst = []
        for name, (column, below, _default) in ISSUE_RULES.items():
            limit, value = limits[name], float(row[column])
            if (value < limit) if below else (value > limit):
                scale = max(abs(limit), 1e-9)
                severity = (limit - value) / scale if below else (value - limit) / scale
                out.append({"q": f"issue:{name}", "i": row["image_id"], "s": -severity})
                worst.append(severity)
        if worst:
            out.append({"q": "issues", "i": row["image_id"], "s": -max(worst)})
    insert = sa.text("INSERT INTO rankings (queue, image_id, score) VALUES (:q, :i, :s)")
    for start in range(0, len(out), 5000):
        conn.execute(insert, out[start : start + 5000])
    op.bulk_insert(SETTINGS, [{"key": ISSUE_BASIS, "value": limits}])


def _fill_tallies() -> None:
    for table, tallies in TALLIES.items():
        for name, value, cond in tallies:
            op.execute(
                f"INSERT INTO tallies (name, count) "
                f"SELECT {name.format(r=table)}, SUM({value.format(r=table)}) FROM {table} "
                f"WHERE {cond.format(r=table)} GROUP BY 1"
            )


def upgrade() -> None:
    op.create_table(
        "rankings",
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_rankings_image_id_images")
        ),
        sa.PrimaryKeyConstraint("queue", "image_id", name=op.f("pk_rankings")),
    )
    op.create_index(
        "ix_rankings_queue_score", "rankings", ["queue", "score", "image_id"], unique=False
    )
    _fill()
    _fill_issues()
    _fill_tallies()
    op.bulk_insert(SETTINGS, [{"key": "catalog_id", "value": uuid.uuid4().hex}])
    _create_triggers("rankings")
    _create_triggers("predictions")


def downgrade() -> None:
    _drop_triggers("predictions")
    _drop_triggers("rankings")
    op.execute("DELETE FROM tallies WHERE name LIKE 'queue:%' OR name LIKE 'predictions%'")
    op.execute(f"DELETE FROM settings WHERE key IN ('{BASIS}', '{ISSUE_BASIS}', 'catalog_id')")
    op.drop_index("ix_rankings_queue_score", table_name="rankings")
    op.drop_table("rankings")
