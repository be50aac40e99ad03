"""Kept vector rankings: the ``outlier`` and ``clusters`` queues kept in ``rankings`` too.

Ranked from the vectors' own table on each request, an outlier page and the clusters'
count read every row of the newest set: seconds at a million images. This migration fills
their rows from the newest set of vectors (as db/rankings.py keeps them: active images
without a human label; ``outlier`` by minus the score, ``clusters`` by the cluster's number
plus a fraction of the distance to its centre) and records which set and scores they were
made from, so the first write does not make them again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The setting naming the set (and its scored rows) the vector rankings were made from.
VECTOR_BASIS = "kept_vector_basis"
SETTINGS = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.JSON))


def _cluster_score(cluster: int, distance: float | None) -> float:
    """db/vectors.py cluster_score as of this migration."""
    d = max(0.0, float(distance or 0.0))
    return cluster + min(d / (1.0 + d), 0.999999)


def upgrade() -> None:
    conn = op.get_bind()
    newest = conn.execute(
        sa.text("SELECT id, scored FROM embeddings ORDER BY updated_at DESC, id DESC LIMIT 1")
    ).first()
    if newest is None:
        op.bulk_insert(SETTINGS, [{"key": VECTOR_BASIS, "value": None}])
        return
    rows = conn.execute(
        sa.text(
            "SELECT e.image_id, e.outlier, e.cluster, e.centre_distance FROM embedded e "
            "JOIN images i ON i.id = e.image_id WHERE e.embedding_id = :e "
            "AND i.status = 'active' AND (i.label_origin IS NULL OR i.label_origin != 'human')"
        ),
        {"e": newest.id},
    )
    out = []
    for image_id, outlier, cluster, distance in rows:
        if outlier is not None:
            out.append({"q": "outlier", "i": image_id, "s": -float(outlier)})
        if cluster is not None:
            out.append({"q": "clusters", "i": image_id, "s": _cluster_score(cluster, distance)})
    insert = sa.text("INSERT INTO rankings (queue, image_id, score) VALUES (:q, :i, :s)")
    for start in range(0, len(out), 5000):
        conn.execute(insert, out[start : start + 5000])
    op.bulk_insert(SETTINGS, [{"key": VECTOR_BASIS, "value": [newest.id, newest.scored]}])


def downgrade() -> None:
    op.execute("DELETE FROM rankings WHERE queue IN ('outlier', 'clusters')")
    op.execute(f"DELETE FROM settings WHERE key = '{VECTOR_BASIS}'")
