"""The catalog's tables, as typed SQLAlchemy 2.0 models.

Nothing here decodes images or imports torch: this is the data layer and nothing else.
The same models run on SQLite and PostgreSQL, so only portable column types are used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Setting(Base):
    """Catalog-wide settings such as the class names; one JSON value per key."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Run(Base):
    """One invocation of a batch job (import, dedup, crawl, ...) with its parameters and counts."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Image(Base):
    """One distinct file content (by sha256), stored once under the catalog's home."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # 64-bit perceptual hashes stored as signed integers (portable BIGINT); the mirror hash
    # is the pHash of the horizontally flipped pixels, so mirrored copies match too.
    phash: Mapped[int] = mapped_column(BigInteger)
    phash_mirror: Mapped[int] = mapped_column(BigInteger)
    hash_version: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    split: Mapped[str] = mapped_column(String(8), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The current label of the near-duplicate group this image represents, kept by
    #: db/grouplabels.py from the label events; NULL on a group's members.
    label: Mapped[str | None] = mapped_column(String(64))
    label_origin: Mapped[str | None] = mapped_column(String(16))
    label_event: Mapped[int | None] = mapped_column(Integer)
    #: True on a representative whose group's members carry different human labels: the
    #: group is left out of training until a person settles it (the ``conflicts`` queue).
    human_conflict: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )


class Tally(Base):
    """A count kept by triggers on images and sources (alembic 0005): images by status,
    active images by split, label and label origin, the byte total, sources by outcome and
    failure reason. Read by `curator stats` and the review queues' counts."""

    __tablename__ = "tallies"

    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class Source(Base):
    """One input item that was tried (a file path or a URL) and what became of it."""

    __tablename__ = "sources"
    __table_args__ = (Index("ix_sources_locator_key", "locator_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    locator: Mapped[str] = mapped_column(Text)
    # sha256 of the locator: an index key of fixed width, whatever the length of a URL.
    locator_key: Mapped[str] = mapped_column(String(64))
    page_url: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(32))
    query: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelEvent(Base):
    """An append-only label decision; the current label is derived from these, never stored."""

    __tablename__ = "label_events"
    __table_args__ = (Index("ix_label_events_image_origin", "image_id", "origin", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    # None clears the decision of that origin (an undo of a first decision).
    label: Mapped[str | None] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImageChange(Base):
    """A change of an image's status, duplicate_of or split, kept so that it can be undone."""

    __tablename__ = "image_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    status_before: Mapped[str] = mapped_column(String(16))
    status_after: Mapped[str] = mapped_column(String(16))
    duplicate_of_before: Mapped[int | None] = mapped_column(Integer)
    duplicate_of_after: Mapped[int | None] = mapped_column(Integer)
    split_before: Mapped[str] = mapped_column(String(8))
    split_after: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelConflict(Base):
    """A weak label (an import's folder, a crawl's query) that met a different label the
    image's group already had: kept as it was, or replaced when the run was told to
    (``--relabel``). Either way it is on record, for `curator show` and the summary."""

    __tablename__ = "label_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    #: What the run said, and with which origin.
    label: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(128))
    #: What the group had, and with which origin.
    held: Mapped[str] = mapped_column(String(64))
    held_origin: Mapped[str] = mapped_column(String(16))
    #: ``kept`` (the group's label stayed) or ``replaced`` (the run's label was recorded).
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Separation(Base):
    """A person's verdict that two images are not near duplicates, whatever their hashes say;
    de-duplication never groups them again."""

    __tablename__ = "separations"
    __table_args__ = (Index("ix_separations_pair", "image_id", "other_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    other_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """A trained (or training) classifier: its settings, where its files are, how it did."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="training", index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # classifier.model.ModelConfig
    training: Mapped[dict[str, Any]] = mapped_column(JSON)  # classifier.config.TrainConfig
    classes: Mapped[list[str]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(String(255))  # its folder, relative to the home
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: "learned", or "chance": no better than chance on val, never the default model
    #: (classifier/chance.py); None for a model unfinished, or trained before verdicts.
    verdict: Mapped[str | None] = mapped_column(String(16))
    torch_version: Mapped[str] = mapped_column(String(32))
    curator_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Prediction(Base):
    """A model's class probabilities for one image, and whether the model trained on it."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_model_image", "model_id", "image_id", unique=True),
        Index("ix_predictions_model_margin", "model_id", "margin", "image_id"),
        Index("ix_predictions_image", "image_id", "in_sample"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    probs: Mapped[list[float]] = mapped_column(JSON)  # in the model's class order
    predicted: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)  # the largest probability
    margin: Mapped[float] = mapped_column(Float)  # largest minus second largest
    #: True when the model trained on this image: its opinion of that label is not independent.
    in_sample: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ranked(Base):
    """An image's place in a ranked review queue (``uncertain``, ``disagree``, ...), kept by
    db/rankings.py in the transaction of each write that changes it, so a page walks the
    index on (queue, score, image) instead of ranking a million predictions per request.
    Its count per queue is a tally (alembic 0010)."""

    __tablename__ = "rankings"
    __table_args__ = (Index("ix_rankings_queue_score", "queue", "score", "image_id"),)

    queue: Mapped[str] = mapped_column(String(32), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)


class Embedding(Base):
    """A set of vectors: one embedder at one version, over the catalog's images. The vectors
    are in a file beside the catalog (``folder``, relative to the home); ``count`` says how
    many of its rows are whole, so that rows written past it by an interrupted run are
    written again, never read."""

    __tablename__ = "embeddings"
    __table_args__ = (Index("ix_embeddings_embedder_version", "embedder", "version", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedder: Mapped[str] = mapped_column(String(32))  # model, imagenet, clip
    version: Mapped[str] = mapped_column(String(255))  # which weights, exactly
    dim: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))  # of the file: float16 or float32
    folder: Mapped[str] = mapped_column(String(255))
    count: Mapped[int] = mapped_column(Integer, default=0)
    #: How many rows the outlier scores and clusters were computed over (0: not yet).
    scored: Mapped[int] = mapped_column(Integer, default=0)
    clusters: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Embedded(Base):
    """One image's row in an embedding's file, and what its neighbours say of it."""

    __tablename__ = "embedded"
    __table_args__ = (
        Index("ix_embedded_outlier", "embedding_id", "outlier", "image_id"),
        Index("ix_embedded_cluster", "embedding_id", "cluster", "centre_distance"),
    )

    embedding_id: Mapped[int] = mapped_column(ForeignKey("embeddings.id"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    row: Mapped[int] = mapped_column(Integer)
    #: Mean cosine distance to its nearest neighbours (cleanlab's out-of-distribution score).
    outlier: Mapped[float | None] = mapped_column(Float)
    cluster: Mapped[int | None] = mapped_column(Integer)
    centre_distance: Mapped[float | None] = mapped_column(Float)
    #: CLIP vectors only: cosine distance to the words of the nearest crawl query that found
    #: the picture (None: not a CLIP set, or no query found it).
    query_distance: Mapped[float | None] = mapped_column(Float)


class ImageProperty(Base):
    """What one picture looks like, in numbers measured from its thumbnail at ingest
    (curator/ingest/properties.py): what the health checks (``curator check``) and the
    ``issue:`` review queues compare with their thresholds."""

    __tablename__ = "image_properties"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(16))
    sharpness: Mapped[float] = mapped_column(Float)
    brightness_p5: Mapped[float] = mapped_column(Float)
    brightness_p50: Mapped[float] = mapped_column(Float)
    brightness_p95: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    colourfulness: Mapped[float] = mapped_column(Float)
    aspect: Mapped[float] = mapped_column(Float)
    #: The original's shorter side in pixels.
    short_side: Mapped[int] = mapped_column(Integer)
    graphic: Mapped[float] = mapped_column(Float)


class ImageWindows(Base):
    """The pHashes of one picture's windows (curator/ingest/windows.py), by which a copy cut
    from it finds it: measured from its thumbnail when crop matching first needs them."""

    __tablename__ = "image_windows"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(16))
    #: A record per window not left out as flat: its index (1 byte), its hash (8 bytes).
    windows: Mapped[bytes] = mapped_column(LargeBinary)
