"""One crawl: icrawler's components, wired to the catalog's ingest door, with none of the
defects listed in CRAWLING.md.

For each query a new icrawler ``Crawler`` is built (its caches make a second ``crawl()`` on one
object a silent no-op), with the engine's own feeder and parser classes and a downloader that
feeds the catalog. curator drives them itself instead of ``Crawler.crawl()``:

* the feeder runs to completion first (it only lists result-page URLs), into an unbounded
  queue, so it can never block; the first page is fetched before anything is written, and a
  machine without network gets one clear sentence instead of an empty run;
* one parser thread fetches pages in order (through `Fetcher`) and calls the engine's
  ``parse``; any exception there is counted, never fatal to the thread;
* a page's image URLs wait for room in the download queue without icrawler's cache, which
  drops an item whose first put timed out as a duplicate of itself (a crawl of a slow site
  otherwise stalls, then ends short);
* downloader threads wait for work for as long as pages keep coming (no 5 s queue timeout
  that loses a slow page's images), fetch through `Fetcher`, validate and store through
  `prepare_bytes`, and hand each result to this thread, which records it through the
  `Ingestor` in result order;
* ``--max`` counts images *added*: a download starts only while added + in flight < max, so
  the crawl stops exactly there; and it counts over earlier runs of the same search, so an
  interrupted crawl run again continues rather than starting over;
* every thread is joined before the crawl returns.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from icrawler import Crawler, ImageDownloader, Parser
from icrawler.storage import BaseStorage
from icrawler.utils import CachedQueue

from curator.config import Settings
from curator.crawl.engines import ENGINES, Engine
from curator.crawl.http import TRANSIENT, Fetcher, FetchError, FetchPolicy, HostGate, new_session
from curator.dedup import DEFAULT_THRESHOLD
from curator.errors import CuratorError
from curator.imaging import Limits
from curator.ingest import ADDED, Ingestor, Prepared, StorageError, failure, prepare_bytes
from curator.runs import tracked_run
from curator.storage import Store
from db.catalog import Catalog, open_catalog
from db.images import count_added, locator_key, settled_url_keys
from db.labels import check_author, check_label

log = logging.getLogger("curator.crawl")


class NoNetwork(CuratorError):
    """The engine (or every image host) could not be reached at all."""


@dataclass(frozen=True)
class CrawlOptions:
    engine: str = "bing"
    max_images: int = 100
    threads: int = 8
    label: str | None = None
    #: Replace a group's different weak label with this crawl's (see `Ingestor`).
    relabel: bool = False
    author: str = "curator"
    threshold: int = DEFAULT_THRESHOLD
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    limits: Limits = field(default_factory=Limits)
    flickr_key: str | None = None
    max_pages: int = 200  # result pages (or site pages, for greedy) per query
    routes: dict[str, str] = field(default_factory=dict)
    trust_env: bool = False


@dataclass
class CrawlProgress:
    query: str
    target: int
    added: int
    counts: dict[str, Any]


class _NoStorage(BaseStorage):
    """icrawler wants a storage backend; the catalog is ours."""

    def write(self, id: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, id: str) -> bool:
        return False

    def max_file_idx(self) -> int:
        return 0


class _Crawler(Crawler):
    """icrawler's Crawler with our session and without its global logging set-up."""

    def __init__(self, session: requests.Session, **kwargs: Any) -> None:
        self._curator_session = session
        super().__init__(**kwargs)

    def set_logger(self, log_level: int = logging.INFO) -> None:
        self.logger = log
        for name in ("feeder", "parser", "downloader"):
            logging.getLogger(name).propagate = False
            logging.getLogger(name).addHandler(logging.NullHandler())

    def set_session(self, headers: dict[str, str] | None = None) -> None:
        self.session = self._curator_session


class _PageLoop:
    """Mixed into an engine's parser: curator's page loop instead of icrawler's."""

    def __init__(self, *args: Any, context: QueryCrawl, **kwargs: Any) -> None:
        self.context = context
        super().__init__(*args, **kwargs)

    def worker_exec(self, **kwargs: Any) -> None:
        self.context.parse_pages(self, kwargs)


class _PassThrough(Parser):
    """The ``urls`` engine: each fed URL is an image."""

    def parse(self, response: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []


class CatalogDownloader(ImageDownloader):
    def __init__(self, *args: Any, context: QueryCrawl, **kwargs: Any) -> None:
        self.context = context
        super().__init__(*args, **kwargs)

    def worker_exec(self, *args: Any, **kwargs: Any) -> None:
        self.context.download_loop(self)


class QueryCrawl:
    """One query of one engine, from result pages to catalog rows."""

    def __init__(
        self,
        *,
        engine: Engine,
        query: str,
        options: CrawlOptions,
        session: requests.Session,
        gate: HostGate | None = None,
    ) -> None:
        self.engine = engine
        self.query = query
        self.options = options
        self.stop = threading.Event()
        self.parsing_done = threading.Event()
        self.fetcher = Fetcher(session, options.policy, self.stop, gate)
        self.results: queue.Queue[tuple[int, Prepared | None]] = queue.Queue()
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.page_reasons: Counter[str] = Counter()
        self.fatal: BaseException | None = None
        self._cond = threading.Condition()
        self._added = 0
        self._reserved = 0
        self._seq = itertools.count()
        self._seen: set[str] = set()
        self._prefetched: dict[str, requests.Response | FetchError] = {}
        self._known: set[str] = set()
        self.already = 0
        self.conflicts: dict[str, Any] = {}
        self.target = options.max_images
        parser_cls: type[Parser] = type(
            f"Catalog{(engine.parser or _PassThrough).__name__}",
            (_PageLoop, engine.parser or _PassThrough),
            {},
        )
        self.crawler = _Crawler(
            session,
            feeder_cls=engine.feeder,
            parser_cls=parser_cls,
            downloader_cls=CatalogDownloader,
            feeder_threads=1,
            parser_threads=1,
            downloader_threads=options.threads,
            storage=_NoStorage(),
            extra_parser_args={"context": self},
            extra_downloader_args={"context": self},
        )
        # Feeder -> parser: unbounded, so a feeder never blocks; parser -> downloaders:
        # bounded, so result pages are fetched only as fast as images are.
        pages: CachedQueue = CachedQueue()
        self.crawler.feeder.out_queue = self.crawler.parser.in_queue = pages
        tasks: CachedQueue = CachedQueue(4 * options.threads)
        self.crawler.parser.out_queue = self.crawler.downloader.in_queue = tasks

    # -- before anything is written ---------------------------------------------------------

    def feed_and_check(self) -> None:
        """List the result pages and fetch the first: raise `NoNetwork` if it cannot be
        reached at all. Writes nothing."""
        self.crawler.feeder.feed(**self.engine.feed_kwargs(self.query, self.options.flickr_key))
        pages = list(self.crawler.parser.in_queue.queue)
        if not pages:
            return
        if self.engine.parser is None:
            self._check_hosts(pages)
            return
        try:
            self._prefetched[pages[0]] = self.fetcher.page(pages[0])
        except FetchError as exc:
            host = urlsplit(pages[0]).hostname or pages[0]
            if exc.reason in ("connection-error", "timeout"):
                raise NoNetwork(
                    f"cannot reach {host} ({exc.detail}); is this machine offline? "
                    "nothing was changed"
                ) from None
            self._prefetched[pages[0]] = exc

    def _check_hosts(self, urls: list[str]) -> None:
        hosts = list(dict.fromkeys(urlsplit(u).hostname for u in urls if urlsplit(u).hostname))
        if not hosts:
            return
        for host in hosts[:20]:
            try:
                socket.getaddrinfo(host, None)
                return
            except OSError:
                continue
        raise NoNetwork(
            f"cannot resolve {hosts[0]}"
            + (f" or any of {min(len(hosts), 20) - 1} other hosts" if len(hosts) > 1 else "")
            + "; is this machine offline? nothing was changed"
        )

    def attach(self, catalog: Catalog, store: Store) -> None:
        """Where results go, and what the catalog already holds of this search."""
        self.catalog = catalog
        self.store = store
        with catalog.reading() as session:
            self.already = count_added(session, engine=self.engine.name, query=self.query)
            self._known = settled_url_keys(session, transient=self._retried())
        self.target = max(0, self.options.max_images - self.already)

    def _retried(self) -> frozenset[str]:
        """Failure reasons after which a URL is fetched again by this crawl: passing ones, and
        a refused address once private addresses are allowed."""
        if self.options.policy.allow_private:
            return TRANSIENT | {"private-address"}
        return TRANSIENT

    # -- the parser thread ------------------------------------------------------------------

    def parse_pages(self, parser: Parser, kwargs: dict[str, Any]) -> None:
        try:
            self._parse_pages(parser, kwargs)
        finally:
            self.parsing_done.set()

    def _parse_pages(self, parser: Parser, kwargs: dict[str, Any]) -> None:
        pages = parser.in_queue
        fetched = 0
        while not self.stop.is_set():
            try:
                url = pages.get_nowait()
            except queue.Empty:
                return
            if self.engine.parser is None:
                self._offer(parser, {"file_url": url})
                continue
            if fetched >= self.options.max_pages:
                self.counts["pages_not_fetched"] += 1 + pages.qsize()
                return
            fetched += 1
            try:
                response = self._prefetched.pop(url, None) or self.fetcher.page(url)
                if isinstance(response, FetchError):
                    raise response
                new = 0
                for task in parser.parse(response, **kwargs) or ():
                    if self.stop.is_set():
                        return
                    if isinstance(task, str):  # greedy: another page of the site
                        pages.put(task)
                    elif isinstance(task, dict) and self._offer(parser, task):
                        new += 1
                self.counts["pages"] += 1
                if new == 0 and self.engine.name != "greedy":
                    # Past the last result, engines answer empty pages or repeat the last
                    # ones: either way the results are exhausted.
                    self.counts["pages_not_fetched"] += pages.qsize()
                    return
            except FetchError as exc:
                if exc.reason != "stopped":
                    self.counts["pages_failed"] += 1
                    self.page_reasons[exc.reason] += 1
            except Exception as exc:  # a parser bug or an unexpected page: count it, go on
                self.counts["pages_failed"] += 1
                self.page_reasons["unreadable-page"] += 1
                log.warning("cannot parse %s: %s", url, exc)

    def _offer(self, parser: Parser, task: dict[str, Any]) -> bool:
        """Queue an image URL for download; False if it was seen before in this crawl."""
        url = task.get("file_url")
        if not isinstance(url, str) or not url.strip():
            return False
        url = url.strip()
        if url in self._seen:
            return False
        self._seen.add(url)
        if locator_key(url) in self._known:
            self.counts["known"] += 1
            return True
        page = task.get("page_url")
        item = {"file_url": url, "page_url": page if isinstance(page, str) else None}
        item["seq"] = next(self._seq)
        while not self.stop.is_set():
            try:
                # Queue.put, not icrawler's CachedQueue.put: that one marks an item seen before
                # the put succeeds, so a put retried after a full queue's timeout would be
                # dropped as a duplicate, and the crawl would wait for it forever.
                queue.Queue.put(parser.out_queue, item, timeout=0.2)
                break
            except queue.Full:
                continue
        return True

    # -- downloader threads -----------------------------------------------------------------

    def download_loop(self, downloader: ImageDownloader) -> None:
        tasks = downloader.in_queue
        while self._reserve():
            try:
                task = tasks.get(timeout=0.2)
            except queue.Empty:
                self._release()
                if self.parsing_done.is_set() and tasks.empty():
                    return
                continue
            item: Prepared | None = None
            try:
                item = self._download(task)
            except StorageError as exc:  # the disk, not the URL: stop the whole crawl
                self.fatal = exc
                self.stop.set()
            except BaseException as exc:  # never let a worker die silently
                item = failure(
                    task["file_url"],
                    "url",
                    "error",
                    f"{type(exc).__name__}: {exc}",
                    **self._source(task),
                )
            finally:
                self.results.put((task["seq"], item))

    def _source(self, task: dict[str, Any]) -> dict[str, Any]:
        return {"page_url": task.get("page_url"), "engine": self.engine.name, "query": self.query}

    def _download(self, task: dict[str, Any]) -> Prepared | None:
        url = task["file_url"]
        try:
            response = self.fetcher.image(url)
        except FetchError as exc:
            if exc.reason == "stopped":
                return None
            info = {"status": exc.status} if exc.status else {}
            return failure(url, "url", exc.reason, exc.detail, info=info, **self._source(task))
        info = {
            "status": response.status_code,
            "content_type": response.headers.get("Content-Type"),
        }
        if response.url != url:
            info["final_url"] = response.url
        return prepare_bytes(
            response.content,
            locator=url,
            kind="url",
            store=self.store,
            limits=self.options.limits,
            info=info,
            **self._source(task),
        )

    def _reserve(self) -> bool:
        """Wait for a download slot: added + in flight stays within the target."""
        with self._cond:
            while self._added + self._reserved >= self.target:
                if self.stop.is_set():
                    return False
                self._cond.wait(0.2)
            if self.stop.is_set():
                return False
            self._reserved += 1
            return True

    def _release(self, added: bool = False) -> None:
        with self._cond:
            self._reserved -= 1
            if added:
                self._added += 1
                if self._added >= self.target:
                    self.stop.set()
            self._cond.notify_all()

    # -- this thread: recording, in result order ---------------------------------------------

    def run(
        self, run_id: int, on_progress: Callable[[CrawlProgress], None] | None
    ) -> dict[str, Any]:
        if self.target <= 0:
            return self.summary()
        ingestor = Ingestor(
            self.catalog,
            store=self.store,
            run_id=run_id,
            threshold=self.options.threshold,
            label=self.options.label,
            label_origin="query",
            relabel=self.options.relabel,
            author=self.options.author,
            batch_size=16,
            max_delay=0.3,
            on_recorded=self._recorded,
        )
        self.crawler.parser.start(**self.engine.parse_kwargs(self.query, self.options.flickr_key))
        self.crawler.downloader.start()
        threads = [*self.crawler.parser.workers, *self.crawler.downloader.workers]
        waiting: dict[int, Prepared | None] = {}
        next_seq = 0
        try:
            with ingestor:
                while True:
                    try:
                        seq, item = self.results.get(timeout=0.1)
                        waiting[seq] = item
                    except queue.Empty:
                        pass
                    while next_seq in waiting:
                        self._hand_over(waiting.pop(next_seq), ingestor)
                        next_seq += 1
                    ingestor.flush_if_due()
                    if on_progress:
                        on_progress(self.progress())
                    if self.fatal:
                        raise self.fatal
                    if not any(t.is_alive() for t in threads) and self.results.empty():
                        break
                for seq in sorted(waiting):  # after a stop: whatever finished, in order
                    self._hand_over(waiting[seq], ingestor)
        finally:
            self.stop.set()
            self._join(threads)
        if on_progress:
            on_progress(self.progress())
        self.conflicts = ingestor.tally.as_dict()
        return self.summary()

    def _hand_over(self, item: Prepared | None, ingestor: Ingestor) -> None:
        if item is None:
            self._release()
        else:
            ingestor.add(item)

    def _recorded(self, item: Prepared, outcome: str) -> None:
        self.counts[outcome] += 1
        if outcome == "failed" and item.reason:
            self.reasons[item.reason] += 1
        self._release(added=outcome == ADDED)

    def _join(self, threads: list[threading.Thread]) -> None:
        policy = self.options.policy
        wait = min(policy.deadline, policy.connect_timeout + policy.read_timeout) + 5
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("threads still running after the crawl: %s", ", ".join(alive))

    def progress(self) -> CrawlProgress:
        return CrawlProgress(
            query=self.query, target=self.target, added=self._added, counts=dict(self.counts)
        )

    def summary(self) -> dict[str, Any]:
        counts = {
            "target": self.options.max_images,
            "already": self.already,
            "added": self.counts["added"],
            "exact_duplicate": self.counts["exact_duplicate"],
            "near_duplicate": self.counts["near_duplicate"],
            "failed": self.counts["failed"],
            "unchanged": self.counts["unchanged"],
            "known": self.counts["known"],
            "failed_by_reason": dict(sorted(self.reasons.items())),
            "pages": self.counts["pages"],
            "pages_failed": self.counts["pages_failed"],
            "pages_failed_by_reason": dict(sorted(self.page_reasons.items())),
        }
        for key in ("label_conflicts", "label_conflicts_by_outcome", "label_conflict_examples"):
            counts[key] = self.conflicts.get(key, 0 if key == "label_conflicts" else {})
        return counts


def crawl(
    settings: Settings,
    queries: list[str],
    options: CrawlOptions,
    *,
    on_progress: Callable[[CrawlProgress], None] | None = None,
) -> dict[str, Any]:
    """Crawl each query in turn into the catalog of ``settings``; return counts per query.

    The first result page is fetched before the catalog is even opened: without network the
    crawl ends in `NoNetwork` having written nothing.
    """
    engine = ENGINES.get(options.engine)
    if engine is None:
        raise CuratorError(f"unknown engine {options.engine!r}; one of {', '.join(ENGINES)}")
    if engine.name == "flickr" and not options.flickr_key:
        raise CuratorError("the flickr engine needs an API key: --flickr-key or FLICKR_API_KEY")
    if not queries:
        raise CuratorError("give at least one query")
    check_author(options.author)
    session = new_session(
        pool=options.threads + 4,
        policy=options.policy,
        routes=options.routes,
        trust_env=options.trust_env,
    )
    try:
        return _crawl(settings, engine, queries, options, session, on_progress)
    finally:
        session.close()


def _crawl(
    settings: Settings,
    engine: Engine,
    queries: list[str],
    options: CrawlOptions,
    session: requests.Session,
    on_progress: Callable[[CrawlProgress], None] | None,
) -> dict[str, Any]:
    gate = HostGate(options.policy.per_host, options.policy.delay)  # hosts slowed stay so
    jobs = [
        QueryCrawl(engine=engine, query=q, options=options, session=session, gate=gate)
        for q in queries
    ]
    jobs[0].feed_and_check()
    catalog = open_catalog(settings.db_url)
    try:
        if options.label is not None:
            with catalog.reading() as db:
                check_label(db, label=options.label)
        store = Store(settings.home)
        store.sweep_temporary()
        params = {
            "engine": engine.name,
            "queries": queries,
            "label": options.label,
            "relabel": options.relabel,
            "max": options.max_images,
            "threads": options.threads,
            "delay": options.policy.delay,
            "deadline": options.policy.deadline,
            "per_host": options.policy.per_host,
            "respect_noai": options.policy.respect_noai,
            "allow_private": options.policy.allow_private,
        }
        results: dict[str, Any] = {}
        with tracked_run(catalog, kind="crawl", params=params) as run:
            try:
                for index, job in enumerate(jobs):
                    if index:
                        job.feed_and_check()
                    job.attach(catalog, store)
                    results[job.query] = job.run(run.id, on_progress)
            finally:
                run.counts = {"queries": results}
        return results
    finally:
        catalog.dispose()
