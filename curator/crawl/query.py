"""The crawl of one query: icrawler's components, wired to the catalog's ingest door, with
none of the icrawler defects the README's crawl section lists.

For each query a new icrawler ``Crawler`` is built (its caches make a second ``crawl()`` on one
object a silent no-op), with the engine's own feeder and parser classes and a downloader that
feeds the catalog. curator drives them itself instead of ``Crawler.crawl()``:

* the feeder runs to completion first (it only lists result-page URLs), into an unbounded
  queue, so it can never block; the first page is fetched before anything is written, and a
  machine without network gets one clear sentence instead of an empty run;
* one parser thread fetches pages in order (through `Fetcher`) and calls the engine's
  ``parse`` (`pages.PageReader`); any exception there is counted, never fatal to the thread,
  and first pages that show results the parser cannot read stop the crawl (`BrokenEngine`);
* a page's image URLs wait for room in the download queue without icrawler's cache, which
  drops an item whose first put timed out as a duplicate of itself (a crawl of a slow site
  otherwise stalls, then ends short);
* downloader threads wait for work for as long as pages keep coming (no 5 s queue timeout
  that loses a slow page's images), fetch through `Fetcher` within each URL's budget, validate
  and store through `prepare_bytes`, and hand each result to this thread, which records it
  through the `Ingestor` as soon as it arrives (`downloads`): a straggler holds up nothing
  but itself;
* ``--max`` counts images *added*: a download starts only while added + in flight < max, so
  the crawl stops exactly there; and it counts over earlier runs of the same search, so an
  interrupted crawl run again continues rather than starting over;
* every thread is joined before the crawl returns.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from icrawler import Crawler, ImageDownloader, Parser
from icrawler.storage import BaseStorage
from icrawler.utils import CachedQueue

from curator.crawl.downloads import Downloads, Slots
from curator.crawl.engines import Engine
from curator.crawl.http import TRANSIENT, Fetcher, FetchError, FetchPolicy
from curator.crawl.pacing import HostGate
from curator.crawl.pages import PageReader
from curator.defaults import CRAWL
from curator.errors import CuratorError
from curator.ingest.dedup import DEFAULT_THRESHOLD
from curator.ingest.door import ADDED, Ingestor, Prepared
from curator.ingest.imaging import Limits
from curator.ingest.storage import Store
from db.catalog import Catalog
from db.images import count_added, failed_urls, locator_key, settled_url_keys

log = logging.getLogger("curator.crawl")


class NoNetwork(CuratorError):
    """The engine (or every image host) could not be reached at all."""

    def __init__(self, what: str, *, tail: str = "nothing was changed") -> None:
        super().__init__(f"{what}; is this machine offline? {tail}")
        self.what = what


@dataclass(frozen=True)
class CrawlOptions:
    #: One engine, or several separated by commas, tried in that order (`_EngineChain`).
    engine: str = "bing"
    max_images: int = CRAWL["max_images"]
    threads: int = CRAWL["threads"]
    label: str | None = None
    #: Replace a group's different weak label with this crawl's (see `Ingestor`).
    relabel: bool = False
    author: str = "curator"
    threshold: int = DEFAULT_THRESHOLD
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    limits: Limits = field(default_factory=Limits)
    flickr_key: str | None = None
    max_pages: int = CRAWL["max_pages"]  # result pages (or site pages, for greedy) per query
    routes: dict[str, str] = field(default_factory=dict)
    trust_env: bool = False
    #: Fetch again only the URLs of earlier runs of each search that failed for a passing
    #: reason (`TRANSIENT`); no result page is fetched.
    retry_failed: bool = False


@dataclass
class CrawlProgress:
    query: str
    target: int
    added: int
    counts: dict[str, Any]
    engine: str = ""


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

    def parse(self, response: requests.Response, **kwargs: Any) -> list[dict[str, Any]]:
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
        search: tuple[str, ...] = (),
        gate: HostGate | None = None,
    ) -> None:
        self.engine = engine
        self.query = query
        self.options = options
        #: The engines whose earlier runs of this query count as this search's (--max).
        self.search = search or (engine.name,)
        self.retry = options.retry_failed
        self.stop = threading.Event()
        self.parsing_done = threading.Event()
        self.fetcher = Fetcher(session, options.policy, self.stop, gate)
        self._slowed_before = self.fetcher.gate.slowed  # hosts slowed by earlier queries
        self.slots = Slots(options.max_images, self.stop)
        self.downloads = Downloads(
            fetcher=self.fetcher,
            slots=self.slots,
            parsing_done=self.parsing_done,
            engine=engine.name,
            query=query,
            limits=options.limits,
            threads=options.threads,
        )
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.page_reasons: Counter[str] = Counter()
        self.fatal: BaseException | None = None
        self.home: Path | None = None
        self._seen: set[str] = set()
        self._prefetched: dict[str, requests.Response | FetchError] = {}
        self._known: set[str] = set()
        self._again: list[tuple[str, str | None, str | None]] = []
        self.already = 0
        self.conflicts: dict[str, Any] = {}
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
        self.tasks: CachedQueue = CachedQueue(4 * options.threads)
        self.crawler.parser.out_queue = self.crawler.downloader.in_queue = self.tasks

    # -- before anything is written ---------------------------------------------------------

    def feed_and_check(self) -> None:
        """List the result pages and fetch the first: raise `NoNetwork` if it cannot be
        reached at all. Writes nothing. (A retry of failed URLs lists no page.)"""
        if self.retry:
            return
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
                raise NoNetwork(f"cannot reach {host} ({exc.detail})") from None
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
        others = min(len(hosts), 20) - 1
        raise NoNetwork(
            f"cannot resolve {hosts[0]}" + (f" or any of {others} other hosts" if others else "")
        )

    def attach(self, catalog: Catalog, store: Store) -> None:
        """Where results go, and what the catalog already holds of this search."""
        self.catalog = catalog
        self.store = self.downloads.store = store
        self.home = store.home
        with catalog.reading() as session:
            self.already = sum(
                count_added(session, engine=name, query=self.query) for name in self.search
            )
            self._known = settled_url_keys(session, transient=self._retried())
            if self.retry:
                self._again = failed_urls(
                    session, engines=self.search, query=self.query, reasons=self._retried()
                )
        self.slots.target = max(0, self.options.max_images - self.already)
        if self.retry and self.slots.target:
            self._check_hosts([url for url, _page, _engine in self._again])

    def _retried(self) -> frozenset[str]:
        """Failure reasons after which a URL is fetched again by this crawl: passing ones, and
        a refused address once private addresses are allowed."""
        if self.options.policy.allow_private:
            return TRANSIENT | {"private-address"}
        return TRANSIENT

    # -- the parser thread ------------------------------------------------------------------

    def parse_pages(self, parser: Parser, kwargs: dict[str, Any]) -> None:
        try:
            if self.retry:
                for url, page, engine in self._again:
                    if self.stop.is_set():
                        break
                    self._offer({"file_url": url, "page_url": page, "engine": engine})
            elif self.engine.parser is None:
                while not self.stop.is_set() and not parser.in_queue.empty():
                    self._offer({"file_url": parser.in_queue.get_nowait()})
            else:
                self._reader().read(parser, kwargs)
        except Exception as exc:  # a broken engine, or a defect here: the crawl stops on it
            self.fatal = exc
            self.stop.set()
        finally:
            self.parsing_done.set()

    def _reader(self) -> PageReader:
        return PageReader(
            engine=self.engine,
            fetcher=self.fetcher,
            stop=self.stop,
            counts=self.counts,
            page_reasons=self.page_reasons,
            max_pages=self.options.max_pages,
            offer=self._offer,
            prefetched=self._prefetched,
            home=self.home,
        )

    def _offer(self, task: dict[str, Any]) -> bool:
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
        if task.get("engine"):
            item["engine"] = task["engine"]
        while not self.stop.is_set():
            try:
                # Queue.put, not icrawler's CachedQueue.put: that one marks an item seen before
                # the put succeeds, so a put retried after a full queue's timeout would be
                # dropped as a duplicate, and the crawl would wait for it forever.
                queue.Queue.put(self.tasks, item, timeout=0.2)
                break
            except queue.Full:
                continue
        return True

    # -- downloader threads -----------------------------------------------------------------

    def download_loop(self, downloader: ImageDownloader) -> None:
        self.downloads.loop(downloader.in_queue)

    # -- this thread: recording, as results finish ------------------------------------------

    def run(
        self, run_id: int, on_progress: Callable[[CrawlProgress], None] | None
    ) -> dict[str, Any]:
        if self.slots.target <= 0:
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
        try:
            with ingestor:
                self._record(ingestor, threads, on_progress)
        finally:
            self.stop.set()
            self._join(threads)
        if on_progress:
            on_progress(self.progress())
        self.conflicts = ingestor.tally.as_dict()
        return self.summary()

    def _record(
        self,
        ingestor: Ingestor,
        threads: list[threading.Thread],
        on_progress: Callable[[CrawlProgress], None] | None,
    ) -> None:
        """Hand each result to the ingestor as it arrives, whatever the order of the list: a
        download that is still running holds up nothing but itself. (Which URLs are tried
        does not depend on that order: slots make it the shortest prefix of the list holding
        the target's images, and the resume gives the same catalog.)"""
        results = self.downloads.results
        while True:
            try:
                self._hand_over(results.get(timeout=0.1), ingestor)
                for _ in range(64):
                    self._hand_over(results.get_nowait(), ingestor)
            except queue.Empty:
                pass
            ingestor.flush_if_due()
            self._spare(threads)
            if on_progress:
                on_progress(self.progress())
            fatal = self.fatal or self.downloads.fatal
            if fatal:
                raise fatal
            if not any(t.is_alive() for t in threads) and results.empty():
                return

    def _spare(self, threads: list[threading.Thread]) -> None:
        """Start downloader threads in the place of stragglers (`downloads`)."""
        if self.stop.is_set() or self.tasks.empty():
            return
        for _ in range(self.downloads.spares_wanted()):
            spare = threading.Thread(
                target=self.downloads.loop,
                args=(self.tasks,),
                name=f"downloader-spare-{len(threads)}",
                daemon=True,
            )
            spare.start()
            threads.append(spare)

    def _hand_over(self, item: Prepared | None, ingestor: Ingestor) -> None:
        if item is None:
            self.slots.release()
        else:
            ingestor.add(item)

    def _recorded(self, item: Prepared, outcome: str) -> None:
        self.counts[outcome] += 1
        if outcome == "failed" and item.reason:
            self.reasons[item.reason] += 1
        self.slots.release(added=outcome == ADDED)

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
            query=self.query,
            target=self.slots.target,
            added=self.slots.added,
            counts=dict(self.counts),
            engine=self.engine.name,
        )

    def summary(self) -> dict[str, Any]:
        c = self.counts
        counts: dict[str, Any] = {
            "engine": self.engine.name,
            "target": self.options.max_images,
            "already": self.already,
            **{
                key: c[key]
                for key in ("added", "exact_duplicate", "near_duplicate", "failed", "unchanged")
            },
            "known": c["known"],
            "failed_by_reason": dict(sorted(self.reasons.items())),
            "pages": c["pages"],
            "pages_failed": c["pages_failed"],
            "pages_failed_by_reason": dict(sorted(self.page_reasons.items())),
            "pages_without_images": c["pages_without_images"],
            "hosts_slowed": len(self.fetcher.gate.slowed - self._slowed_before),
        }
        if self.retry:
            counts["to_retry"] = len(self._again)
        for key in ("label_conflicts", "label_conflicts_by_outcome", "label_conflict_examples"):
            counts[key] = self.conflicts.get(key, 0 if key == "label_conflicts" else {})
        return counts
