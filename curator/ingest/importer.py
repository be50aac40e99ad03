"""``curator import``: files and folders into the catalog, in parallel, safely re-runnable."""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curator.errors import PathNotFound
from curator.ingest.door import Ingestor, Prepared, display_path, failure, prepare_file
from curator.ingest.imaging import Limits, warm_up
from curator.ingest.storage import Store
from curator.runs import tracked_run
from db.catalog import Catalog
from db.images import locator_key, recorded_files
from db.labels import check_author, check_label

#: Names taken from folders; a file named on the command line is always tried.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    | {".avif", ".mpo"}
)


#: How many of the names skipped in folders are kept to be shown (the rest are counted).
IGNORED_SHOWN = 5


@dataclass(frozen=True)
class Inputs:
    files: list[str]
    #: Files in folders whose names are not image names (counted, not tried).
    ignored: int
    #: Folders that could not be listed: (path, why).
    unreadable: list[tuple[str, str]]
    #: The first `IGNORED_SHOWN` of the ignored files, in the order found.
    ignored_examples: list[str] = field(default_factory=list)
    #: Files in folders with one of the names asked for apart (videos, for scoring).
    others: list[str] = field(default_factory=list)


def collect_inputs(paths: list[str], *, also: frozenset[str] = frozenset()) -> Inputs:
    """Expand files and folders recursively, sorted; a file reached twice (two spellings of
    one path) is listed once. A folder named on the command line is followed even through a
    symbolic link; links to folders inside it are not (they could loop). Files in folders
    whose suffix is in ``also`` are listed apart, in ``others``.

    Raises `PathNotFound` before anything is read if an argument does not exist.
    """
    for path in paths:
        if not os.path.lexists(path):
            raise PathNotFound(display_path(path))
    files: list[str] = []
    others: list[str] = []
    ignored: list[str] = []
    count_ignored = 0
    unreadable: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str, to: list[str]) -> None:
        key = os.path.normpath(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            to.append(path)

    def on_error(error: OSError) -> None:
        unreadable.append((str(error.filename), error.strerror or str(error)))

    for path in paths:
        if not os.path.isdir(path):
            add(path, files)
            continue
        for root, dirs, names in os.walk(path, onerror=on_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                suffix = os.path.splitext(name)[1].lower()
                if suffix in IMAGE_SUFFIXES:
                    add(os.path.join(root, name), files)
                elif suffix in also:
                    add(os.path.join(root, name), others)
                else:
                    count_ignored += 1
                    if len(ignored) < IGNORED_SHOWN:
                        ignored.append(os.path.join(root, name))
    return Inputs(
        files=files,
        ignored=count_ignored,
        unreadable=unreadable,
        ignored_examples=ignored,
        others=others,
    )


def some_names(examples: list[str], count: int) -> str:
    """Names to show (already made displayable) of ``count`` in all: the first few, then how
    many more."""
    more = count - len(examples)
    return ", ".join(examples) + (f" and {more} more" if more > 0 else "")


def _unchanged_files(catalog: Catalog, paths: list[str]) -> dict[str, int]:
    """Files recorded before with the same size and mtime: path -> image id (not re-read)."""
    by_key = {}
    for path in paths:
        by_key[locator_key(display_path(os.path.abspath(path)))] = path
    known: dict[str, int] = {}
    keys = list(by_key)
    with catalog.reading() as session:
        for key, image_id, info in recorded_files(session, locator_keys=keys):
            path = by_key[key]
            try:
                st = os.stat(path)
            except OSError:
                continue
            if info and info.get("size") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns:
                known[path] = image_id
    return known


@dataclass
class ImportProgress:
    total: int
    done: int
    counts: dict[str, Any]


def _ignore_interrupts() -> None:
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group; only the
    # parent winds the import down, and its workers finish their chunk and exit. (A worker
    # that died of SIGTERM instead could leave the parent waiting on a broken pool.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


#: glibc's ``mallopt`` parameters (malloc.h), and what an import worker sets them to.
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3
_KEEP_FREED = 16 << 20
_MAPPED_FROM = 32 << 20


def keep_freed_memory() -> bool:
    """Let this process keep freed memory for the next file. By default glibc hands the top
    of the heap back to the system whenever more than 128 KB of it is free, and maps and
    unmaps every buffer of 128 KB and more, so that each file's decode, thumbnail and
    properties fault their pages in afresh: a quarter of a millisecond a file here, as much
    as the properties themselves (bench/import_throughput.py, docs/check.md). Keeps up to
    16 MB free at the top and maps only buffers of 32 MB and more. Says whether the C
    library took it (only glibc on Linux does)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mapped = bool(mallopt(_M_MMAP_THRESHOLD, _MAPPED_FROM))
    return bool(mallopt(_M_TOP_PAD, _KEEP_FREED)) and mapped


def _start_worker() -> None:
    _ignore_interrupts()
    keep_freed_memory()


def _prepare_chunk(paths: list[str], store: Store, limits: Limits) -> list[Prepared]:
    return [prepare_file(path, store, limits) for path in paths]


def _prepared(
    files: list[str], store: Store, limits: Limits, workers: int, known: dict[str, int]
) -> Iterator[Prepared]:
    """Prepared items, in the order of ``files``.

    Order matters: the first image of a near-duplicate group to arrive is its oldest, which
    decides ties and the group's split. In input order, an import interrupted and run again
    ends with the same catalog as one that ran straight through. Paths go out in small chunks
    (fewer round trips), with enough in flight to keep workers busy while rows are written.
    """
    todo = []
    for path in files:
        if path in known:
            locator = display_path(os.path.abspath(path))
            yield Prepared(locator=locator, kind="file", known_image_id=known[path])
        else:
            todo.append(path)
    if not todo:
        return
    if workers <= 1 or len(todo) < 8:
        for path in todo:
            yield prepare_file(path, store, limits)
        return
    warm_up()
    chunk = max(1, min(8, len(todo) // (workers * 4)))
    chunks = iter([todo[i : i + chunk] for i in range(0, len(todo), chunk)])
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    in_flight: deque[Future[list[Prepared]]] = deque()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker
    ) as pool:
        try:
            for paths in itertools.islice(chunks, workers * 8):
                in_flight.append(pool.submit(_prepare_chunk, paths, store, limits))
            while in_flight:
                results = in_flight.popleft().result()
                for paths in itertools.islice(chunks, 1):
                    in_flight.append(pool.submit(_prepare_chunk, paths, store, limits))
                yield from results
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def import_paths(
    catalog: Catalog,
    home: Path,
    paths: list[str],
    *,
    label: str | None = None,
    relabel: bool = False,
    author: str,
    threshold: int,
    limits: Limits | None = None,
    workers: int | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> dict[str, Any]:
    """Import files and folders; return the run's counts (also stored with the run)."""
    limits = limits or Limits()
    author = check_author(author)
    inputs = collect_inputs(paths)
    if label is not None:
        with catalog.reading() as session:
            check_label(session, label=label)
    store = Store(home)
    store.sweep_temporary()
    workers = workers or os.cpu_count() or 1
    params = {
        "paths": [display_path(os.path.abspath(p)) for p in paths],
        "label": label,
        "relabel": relabel,
        "threshold": threshold,
        "max_bytes": limits.max_bytes,
        "max_pixels": limits.max_pixels,
        "min_side": limits.min_side,
    }
    known = _unchanged_files(catalog, inputs.files)
    progress = ImportProgress(total=len(inputs.files), done=0, counts={})
    with tracked_run(catalog, kind="import", params=params) as run:
        skipped = {
            "ignored_names": inputs.ignored,
            "ignored_examples": [display_path(p) for p in inputs.ignored_examples],
        }
        run.counts = dict(skipped)

        def recorded(_item: Prepared, _outcome: str) -> None:
            progress.done += 1
            if on_progress:
                progress.counts = ingestor.tally.as_dict()
                on_progress(progress)

        ingestor = Ingestor(
            catalog,
            store=store,
            run_id=run.id,
            threshold=threshold,
            label=label,
            label_origin="import",
            relabel=relabel,
            author=author,
            on_recorded=recorded,
        )
        try:
            with ingestor:
                for folder, why in inputs.unreadable:
                    locator = display_path(os.path.abspath(folder))
                    ingestor.add(failure(locator, "file", "unreadable-folder", why))
                for item in _prepared(inputs.files, store, limits, workers, known):
                    ingestor.add(item)
        finally:
            run.counts = {**ingestor.tally.as_dict(), **skipped}
            # Also at the end: writers killed just before this run started are gone by now.
            store.sweep_temporary()
    return run.counts
