"""The download threads of a crawl, and the slots that keep ``--max`` exact.

Each downloader thread takes an image URL, fetches it through `Fetcher` (within the URL's
budget), validates and stores it through `prepare_bytes`, and puts the result on a queue the
crawl's own thread records as soon as it arrives: a result waits for nothing but its own
download and the ingest lock, never for a slower one listed before it.

Nor do stragglers take the crawl's threads: a download that has run `STRAGGLER_FACTOR` times
as long as the median download so far (and at least `STRAGGLER_MIN` seconds) no longer counts
against ``--threads``, and a spare thread takes its place, up to as many spares as threads; a
thread leaves once more than ``--threads`` downloads are at work without it. (Four drips among
eight threads otherwise halve the crawl's pace for their whole budget; per-host limits still
hold.)
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from typing import Any

from curator.crawl.http import Fetcher, FetchError
from curator.ingest.door import Prepared, StorageError, failure, prepare_bytes
from curator.ingest.imaging import Limits
from curator.ingest.storage import Store

#: A download running this many times as long as the median one so far is a straggler...
STRAGGLER_FACTOR = 3.0
#: ...once it has run this long at least (and before any download has finished, twice that).
STRAGGLER_MIN = 0.5


class Slots:
    """Download slots: a download starts only while added + in flight < target, so the crawl
    stops exactly at its target, whatever order downloads finish in."""

    def __init__(self, target: int, stop: threading.Event) -> None:
        self.target = target
        self.stop = stop
        self.added = 0
        self._reserved = 0
        self._cond = threading.Condition()

    def reserve(self) -> bool:
        """Wait for a slot; False once the crawl stops."""
        with self._cond:
            while self.added + self._reserved >= self.target:
                if self.stop.is_set():
                    return False
                self._cond.wait(0.2)
            if self.stop.is_set():
                return False
            self._reserved += 1
            return True

    def release(self, added: bool = False) -> None:
        with self._cond:
            self._reserved -= 1
            if added:
                self.added += 1
                if self.added >= self.target:
                    self.stop.set()
            self._cond.notify_all()


class Downloads:
    """What every downloader thread of one query runs."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        slots: Slots,
        parsing_done: threading.Event,
        engine: str,
        query: str,
        limits: Limits,
        threads: int,
    ) -> None:
        self.threads = threads
        self.fetcher = fetcher
        self.slots = slots
        self.stop = slots.stop
        self.parsing_done = parsing_done
        self.engine = engine
        self.query = query
        self.limits = limits
        self.results: queue.Queue[Prepared | None] = queue.Queue()
        self.store: Store | None = None
        #: An error that stops the whole crawl (the disk, not a URL).
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._workers = 0
        self._running: dict[int, float] = {}  # thread id -> when its download began
        self._took: deque[float] = deque(maxlen=64)  # the last downloads' durations

    def loop(self, tasks: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._workers += 1
        try:
            while not self._retire() and self.slots.reserve():
                try:
                    task = tasks.get(timeout=0.2)
                except queue.Empty:
                    self.slots.release()
                    if self.parsing_done.is_set() and tasks.empty():
                        return
                    continue
                self._download(task)
        finally:
            with self._lock:
                self._workers -= 1

    def _download(self, task: dict[str, Any]) -> None:
        me = threading.get_ident()
        began = time.monotonic()
        with self._lock:
            self._running[me] = began
        item: Prepared | None = None
        try:
            item = self.fetch(task)
        except StorageError as exc:  # the disk, not the URL: stop the whole crawl
            self.fatal = exc
            self.stop.set()
        except BaseException as exc:  # never let a worker die silently
            detail = f"{type(exc).__name__}: {exc}"
            item = failure(task["file_url"], "url", "error", detail, **self.source(task))
        finally:
            with self._lock:
                del self._running[me]
                self._took.append(time.monotonic() - began)
            self.results.put(item)

    def _straggling(self) -> int:
        """Downloads under way that are stragglers (the lock held)."""
        if self._took:
            after = max(STRAGGLER_MIN, STRAGGLER_FACTOR * statistics.median(self._took))
        else:
            after = 2 * STRAGGLER_MIN
        now = time.monotonic()
        return sum(1 for began in self._running.values() if now - began > after)

    def _retire(self) -> bool:
        """Whether this thread leaves: more than ``threads`` are at work without it."""
        with self._lock:
            return self._workers - 1 - self._straggling() >= self.threads

    def spares_wanted(self) -> int:
        """Threads to start so that ``threads`` downloads go on beside the stragglers."""
        with self._lock:
            straggling = self._straggling()
            if not straggling:
                return 0
            short = self.threads - (self._workers - straggling)
            return max(0, min(short, 2 * self.threads - self._workers))

    def source(self, task: dict[str, Any]) -> dict[str, Any]:
        return {
            "page_url": task.get("page_url"),
            "engine": task.get("engine") or self.engine,
            "query": self.query,
        }

    def fetch(self, task: dict[str, Any]) -> Prepared | None:
        """One URL's result: an image stored, a failure, or None if the crawl stopped."""
        url = task["file_url"]
        try:
            response = self.fetcher.image(url)
        except FetchError as exc:
            if exc.reason == "stopped":
                return None
            status = {"status": exc.status} if exc.status else {}
            return failure(url, "url", exc.reason, exc.detail, info=status, **self.source(task))
        info: dict[str, Any] = {
            "status": response.status_code,
            "content_type": response.headers.get("Content-Type"),
        }
        if response.url != url:
            info["final_url"] = response.url
        assert self.store is not None, "attach the crawl to a catalog first"
        return prepare_bytes(
            response.content,
            locator=url,
            kind="url",
            store=self.store,
            limits=self.limits,
            info=info,
            **self.source(task),
        )
