"""Embeddings: which embedder made the vectors beside the catalog, and each image's row.

* ``embeddings``: one set of vectors per embedder and version (a model's trunk, ImageNet's
  ResNet-50, a CLIP model), its dimension, the file's folder and how many rows are whole;
* ``embedded``: an image's row in that file, its outlier score and its cluster.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("embedder", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("clusters", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_embeddings_embedder_version", ["embedder", "version"], unique=True
        )
    op.create_table(
        "embedded",
        sa.Column("embedding_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("outlier", sa.Float(), nullable=True),
        sa.Column("cluster", sa.Integer(), nullable=True),
        sa.Column("centre_distance", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["embedding_id"], ["embeddings.id"], name=op.f("fk_embedded_embedding_id_embeddings")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_embedded_image_id_images")
        ),
        sa.PrimaryKeyConstraint("embedding_id", "image_id", name=op.f("pk_embedded")),
    )
    with op.batch_alter_table("embedded", schema=None) as batch_op:
        batch_op.create_index(
            "ix_embedded_outlier", ["embedding_id", "outlier", "image_id"], unique=False
        )
        batch_op.create_index(
            "ix_embedded_cluster", ["embedding_id", "cluster", "centre_distance"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("embedded", schema=None) as batch_op:
        batch_op.drop_index("ix_embedded_cluster")
        batch_op.drop_index("ix_embedded_outlier")
    op.drop_table("embedded")
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index("ix_embeddings_embedder_version")
    op.drop_table("embeddings")
