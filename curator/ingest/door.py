"""The one door into the catalog: import, crawl, scoring with --add and the demo all use it.

Work is split in two:

* `prepare_bytes` / `prepare_file` (any worker process or thread): read, validate, hash, and
  store the original, content-addressed and atomically. Pure of the catalog.
* `Ingestor` (one per run, in the process that owns the catalog): decides what each prepared
  item is (new, an exact or a near duplicate, a failure), stores thumbnails, writes the rows
  in short batched transactions, and keeps the near-duplicate index current.

Files are written (and synced) before rows, so a crash leaves at worst a stored file without a
row, which the next run over the same input completes; never a row that points at a missing
file.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from curator.errors import CuratorError, InvalidImage
from curator.ingest.dedup import merge_group, near_matches
from curator.ingest.imaging import HASH_VERSION, Analysis, Limits, analyze
from curator.ingest.nearfile import keep_index, open_index
from curator.ingest.storage import Store
from curator.ingest.thumbs import ThumbStore
from db.catalog import Catalog
from db.images import (
    ACTIVE,
    ADDED,
    EXACT_DUPLICATE,
    FAILED,
    NEAR_DUPLICATE,
    add_images,
    add_sources,
    ids_by_sha,
    max_image_id,
    phashes_after,
    source_row,
    sources_at,
    split_for,
    to_signed64,
    to_unsigned64,
)
from db.labels import add_label_events, held_label, label_recorded, record_conflict
from db.models import utcnow
from db.properties import add_properties

log = logging.getLogger("curator.ingest.door")

#: Not an outcome stored in a row: the input was already in the catalog exactly like this.
UNCHANGED = "unchanged"


class StorageError(CuratorError):
    """The catalog's home cannot be written (disk full, permissions): the run stops."""


@dataclass(frozen=True)
class Prepared:
    """What a worker made of one input: a stored, analysed image, or a failure with a reason."""

    locator: str
    kind: str  # "file" or "url"
    analysis: Analysis | None = None
    relpath: str | None = None
    reason: str | None = None
    detail: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    page_url: str | None = None
    engine: str | None = None
    query: str | None = None
    #: Set when the input is known unchanged since an earlier run, so it was not read again.
    known_image_id: int | None = None

    @property
    def failed(self) -> bool:
        return self.analysis is None and self.known_image_id is None


def failure(locator: str, kind: str, reason: str, detail: str, **source: Any) -> Prepared:
    return Prepared(locator=locator, kind=kind, reason=reason, detail=detail, **source)


def property_rows(items: list[Prepared], ids: list[int]) -> list[dict[str, Any]]:
    """The ``image_properties`` rows of newly added images."""
    return [
        {"image_id": image_id, **item.analysis.properties.as_row()}
        for item, image_id in zip(items, ids, strict=True)
        if item.analysis is not None and item.analysis.properties is not None
    ]


def store_original(store: Store, data: bytes, analysis: Analysis) -> str:
    """Write the original file; return its path relative to the home."""
    relpath = store.image_relpath(analysis.sha256, analysis.ext)
    try:
        store.put(relpath, data, durable=False)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageError(
                f"the disk holding {store.home} is full; nothing was lost: free space and rerun"
            ) from exc
        raise StorageError(f"cannot write to {store.home}: {exc}; fix that and rerun") from exc
    return relpath


def prepare_bytes(
    data: bytes,
    *,
    locator: str,
    kind: str,
    store: Store,
    limits: Limits,
    **source: Any,
) -> Prepared:
    """Validate and store one image given as bytes (a download, a decoded video frame...)."""
    try:
        analysis = analyze(data, limits)
    except InvalidImage as exc:
        return failure(locator, kind, exc.reason, exc.detail, **source)
    except Exception as exc:  # a decoder bug on a hostile file: this file's failure only
        return failure(locator, kind, "decode-error", f"{type(exc).__name__}: {exc}", **source)
    relpath = store_original(store, data, analysis)
    return Prepared(locator=locator, kind=kind, analysis=analysis, relpath=relpath, **source)


def display_path(path: str) -> str:
    """A path as text that any database accepts (undecodable bytes shown as \\xNN)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def prepare_file(path: str, store: Store, limits: Limits) -> Prepared:
    """Read, validate and store one file. Every problem becomes a failed `Prepared`."""
    locator = display_path(os.path.abspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return failure(locator, "file", "broken-symlink", "a symbolic link to nothing")
        return failure(locator, "file", "missing", "the file disappeared before it was read")
    except OSError as exc:
        return failure(locator, "file", "unreadable", exc.strerror or str(exc))
    info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if not stat.S_ISREG(st.st_mode):
        return failure(locator, "file", "not-a-file", "not a regular file", info=info)
    if st.st_size > limits.max_bytes:
        detail = f"{st.st_size:,} bytes, more than the limit of {limits.max_bytes:,}"
        return failure(locator, "file", "too-large", detail, info=info)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        return failure(locator, "file", "unreadable", exc.strerror or str(exc), info=info)
    return prepare_bytes(data, locator=locator, kind="file", store=store, limits=limits, info=info)


@dataclass
class Tally:
    """Counts of a run's outcomes, with failures by reason."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    #: Images whose group held another label than this run's: kept, or replaced (--relabel).
    conflicts: Counter[str] = field(default_factory=Counter)
    #: Some of those images, to look at with curator show.
    conflict_examples: list[int] = field(default_factory=list)

    def add(self, outcome: str, reason: str | None = None) -> None:
        self.outcomes[outcome] += 1
        if outcome == FAILED and reason:
            self.reasons[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            k: self.outcomes.get(k, 0)
            for k in (ADDED, EXACT_DUPLICATE, NEAR_DUPLICATE, FAILED, UNCHANGED)
        }
        counts["failed_by_reason"] = dict(sorted(self.reasons.items()))
        counts["label_conflicts"] = sum(self.conflicts.values())
        counts["label_conflicts_by_outcome"] = dict(sorted(self.conflicts.items()))
        counts["label_conflict_examples"] = self.conflict_examples
        return counts


class Ingestor:
    """Records prepared items in the catalog, in short batched write transactions.

    Use as a context manager; leaving it flushes what is buffered (also on Ctrl-C).
    ``on_recorded`` is called with each item and its outcome once its rows are committed.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        store: Store,
        run_id: int,
        threshold: int,
        label: str | None = None,
        label_origin: str = "import",
        relabel: bool = False,
        author: str = "curator",
        batch_size: int = 128,
        max_delay: float = 0.5,
        on_recorded: Callable[[Prepared, str], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.thumbs = ThumbStore(store.home)
        self.run_id = run_id
        self.threshold = threshold
        self.label = label
        self.label_origin = label_origin
        self.relabel = relabel
        self.author = author
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.on_recorded = on_recorded
        self.tally = Tally()
        self._buffer: list[Prepared] = []
        self._oldest = 0.0
        with catalog.reading() as session:
            self._opened = open_index(session, home=store.home, radius=threshold)
            self.index = self._opened.index
            self._indexed_up_to = max(self._opened.high_water, max_image_id(session))

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            try:
                self.flush()
            except Exception:
                if exc is None:
                    raise
                # Already failing (disk full, Ctrl-C...): that first error is the one to report.
                log.warning("could not record the last batch", exc_info=True)
                return
            if exc is None:
                self.keep_index()
        finally:
            self.thumbs.close()

    def keep_index(self) -> bool:
        """Write the near-duplicate index's file again if many rows came since it was."""
        with self.catalog.reading() as session:
            return keep_index(
                session, home=self.store.home, opened=self._opened,
                indexed_up_to=self._indexed_up_to,
            )  # fmt: skip

    def add(self, item: Prepared) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(item)
        if len(self._buffer) >= self.batch_size or time.monotonic() - self._oldest > self.max_delay:
            self.flush()

    def flush_if_due(self) -> None:
        """Flush what has waited longer than ``max_delay`` (call it while idle)."""
        if self._buffer and time.monotonic() - self._oldest > self.max_delay:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self.thumbs.put_many(
            (item.analysis.sha256, item.analysis.thumbnail) for item in batch if item.analysis
        )
        self.store.sync()
        with self.catalog.writing() as session:
            outcomes, new_hashes = self._write(session, batch)
        # Only what was committed goes into the in-memory index and the counts.
        for image_id, phash in new_hashes:
            self.index.add(image_id, phash)
            self._indexed_up_to = max(self._indexed_up_to, image_id)
        for item, (outcome, reason) in zip(batch, outcomes, strict=True):
            self.tally.add(outcome, reason)
            if self.on_recorded:
                self.on_recorded(item, outcome)

    def _write(
        self, session: Session, batch: list[Prepared]
    ) -> tuple[list[tuple[str, str | None]], list[tuple[int, int]]]:
        """Rows for a batch, in three steps: new images (one insert), their near-duplicate
        groups (in arrival order), then a source row and a label for every item."""
        self._catch_up(session)
        shas = [item.analysis.sha256 for item in batch if item.analysis is not None]
        known = ids_by_sha(session, sha256s=shas)
        firsts: dict[str, Prepared] = {}
        for item in batch:
            if item.analysis is not None and item.analysis.sha256 not in known:
                firsts.setdefault(item.analysis.sha256, item)
        new = list(firsts.values())
        ids = add_images(session, [self._image_row(item) for item in new])
        add_properties(session, property_rows(new, ids))
        new_hashes: list[tuple[int, int]] = []
        near: set[int] = set()
        for item, image_id in zip(new, ids, strict=True):
            a = item.analysis
            assert a is not None
            known[a.sha256] = image_id
            matches = near_matches(self.index, phash=a.phash, phash_mirror=a.phash_mirror)
            matches += [i for i, h in new_hashes if self._close(h, a.phash, a.phash_mirror)]
            new_hashes.append((image_id, a.phash))
            if matches:
                merge_group(session, image_ids=[image_id, *matches], run_id=self.run_id)
                near.add(image_id)
        sources: list[dict[str, Any]] = []
        to_label: dict[int, None] = {}  # ordered set
        inserted = set(ids)
        outcomes = []
        recorded: set[str] = set()  # locators already given a row in this batch
        row: dict[str, Any] | None
        image: int | None
        for item in batch:
            if item.locator in recorded:  # the same file twice in one batch
                outcome, row, image = UNCHANGED, None, None
            else:
                outcome, row, image = self._decide(session, item, known, firsts, near)
                recorded.add(item.locator)
            outcomes.append((outcome, item.reason if outcome == FAILED else None))
            if row is not None:
                sources.append(row)
            if (
                image is not None
                and self.label is not None
                and image not in to_label
                and self._should_label(session, image, fresh=image in inserted - near)
            ):
                to_label[image] = None
        add_sources(session, sources)
        if self.label is not None:
            add_label_events(
                session,
                image_ids=list(to_label),
                label=self.label,
                origin=self.label_origin,
                author=self.author,
                run_id=self.run_id,
            )
        return outcomes, new_hashes

    def _decide(
        self,
        session: Session,
        item: Prepared,
        known: dict[str, int],
        firsts: dict[str, Prepared],
        near: set[int],
    ) -> tuple[str, dict[str, Any] | None, int | None]:
        """One item's outcome, its source row (None if nothing new), and its image id."""
        if item.known_image_id is not None:
            return UNCHANGED, None, item.known_image_id
        source: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": item.kind,
            "locator": item.locator,
            "page_url": item.page_url,
            "engine": item.engine,
            "query": item.query,
            "info": item.info,
        }
        if item.analysis is None:
            # Failed again: counted as failed (it is not in the catalog, whatever the rows
            # say), but the same failure as last time adds no second row.
            earlier = sources_at(session, locator=item.locator)
            if earlier and earlier[-1].outcome == FAILED and earlier[-1].reason == item.reason:
                return FAILED, None, None
            row = source_row(outcome=FAILED, reason=item.reason, detail=item.detail, **source)
            return FAILED, row, None
        a = item.analysis
        image_id = known[a.sha256]
        if firsts.get(a.sha256) is item:
            outcome = NEAR_DUPLICATE if image_id in near else ADDED
            if a.frames > 1:
                source["info"] = {**item.info, "frames": a.frames}
            return outcome, source_row(outcome=outcome, image_id=image_id, **source), image_id
        if any(s.image_id == image_id for s in sources_at(session, locator=item.locator)):
            return UNCHANGED, None, image_id
        return (
            EXACT_DUPLICATE,
            source_row(outcome=EXACT_DUPLICATE, image_id=image_id, **source),
            image_id,
        )

    def _image_row(self, item: Prepared) -> dict[str, Any]:
        a = item.analysis
        assert a is not None
        return {
            "sha256": a.sha256,
            "phash": to_signed64(a.phash),
            "phash_mirror": to_signed64(a.phash_mirror),
            "hash_version": HASH_VERSION,
            "width": a.width,
            "height": a.height,
            "format": a.format,
            "bytes": a.bytes,
            "path": item.relpath,
            "status": ACTIVE,
            "split": split_for(a.sha256),
            "run_id": self.run_id,
            "created_at": utcnow(),
        }

    def _close(self, stored: int, phash: int, mirror: int) -> bool:
        return (stored ^ phash).bit_count() <= self.threshold or (
            stored ^ mirror
        ).bit_count() <= self.threshold

    def _should_label(self, session: Session, image_id: int, *, fresh: bool) -> bool:
        """Whether this run's label is to be recorded for the image.

        A new picture of its own takes it. Otherwise the label its group already holds
        decides: none, or the same, and the label is recorded once (running the same import
        again adds nothing); another one is a conflict, put on record and counted, and the
        held label stays, unless the run was told to ``relabel`` and the held label is not
        a person's (no import or crawl overrides a human decision).
        """
        if fresh:
            return True
        assert self.label is not None
        held = held_label(session, image_id=image_id)
        # A model's guess is no one's label: an import or a crawl simply outranks it.
        if held is None or held.label == self.label or held.origin == "model":
            return not label_recorded(
                session, image_id=image_id, label=self.label, origin=self.label_origin
            )
        replace = self.relabel and held.origin != "human"
        outcome = "replaced" if replace else ("kept-human" if held.origin == "human" else "kept")
        record_conflict(
            session,
            image_id=image_id,
            label=self.label,
            origin=self.label_origin,
            author=self.author,
            held=held,
            outcome="replaced" if replace else "kept",
            run_id=self.run_id,
        )
        self.tally.conflicts[outcome] += 1
        if len(self.tally.conflict_examples) < 10:
            self.tally.conflict_examples.append(image_id)
        return replace

    def _catch_up(self, session: Session) -> None:
        """Index images other writers committed since this run began (a concurrent import
        or crawl), so that near copies arriving here still find them."""
        for image_id, phash in phashes_after(
            session, image_id=self._indexed_up_to, hash_version=HASH_VERSION
        ):
            self.index.add(image_id, to_unsigned64(phash))
            self._indexed_up_to = image_id
