"""The download threads of a crawl, and the slots that keep ``--max`` exact.

Each downloader thread takes an image URL, fetches it through `Fetcher` (within the URL's
budget), validates and stores it through `prepare_bytes`, and puts the result on a queue the
crawl's own thread records as soon as it arrives: a result waits for nothing but its own
download and the ingest lock, never for a slower one listed before it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from curator.crawl.http import Fetcher, FetchError
from curator.imaging import Limits
from curator.ingest import Prepared, StorageError, failure, prepare_bytes
from curator.storage import Store


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
    ) -> None:
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

    def loop(self, tasks: queue.Queue[dict[str, Any]]) -> None:
        while self.slots.reserve():
            try:
                task = tasks.get(timeout=0.2)
            except queue.Empty:
                self.slots.release()
                if self.parsing_done.is_set() and tasks.empty():
                    return
                continue
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
                self.results.put(item)

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
            info = {"status": exc.status} if exc.status else {}
            return failure(url, "url", exc.reason, exc.detail, info=info, **self.source(task))
        info = {
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
