"""A crawl: its queries in turn, each by the first engine of ``--engine`` that serves it, into
one run of the catalog (the crawl of one query is `query.QueryCrawl`).

``--engine bing,google``: an engine that cannot be reached, or whose parser is broken, is left
for the rest of the crawl and the next one serves (`_EngineChain`). The first result page is
fetched before the catalog is even opened: without network the crawl ends in `NoNetwork`
having written nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from curator.crawl.engines import Engine, engines_named
from curator.crawl.http import new_session
from curator.crawl.pacing import HostGate
from curator.crawl.pages import BrokenEngine
from curator.crawl.query import CrawlOptions, CrawlProgress, NoNetwork, QueryCrawl
from curator.errors import CuratorError
from curator.ingest.storage import Store
from curator.runs import tracked_run
from db.catalog import Catalog
from db.labels import check_author, check_label

log = logging.getLogger("curator.crawl")

__all__ = [
    "BrokenEngine",
    "CrawlOptions",
    "CrawlProgress",
    "NoEngineServed",
    "NoNetwork",
    "QueryCrawl",
    "crawl",
]


class NoEngineServed(CuratorError):
    """Every engine of ``--engine a,b`` was unreachable or broken."""

    def __init__(self, failures: dict[str, CuratorError], *, tail: str) -> None:
        parts = [e.what if isinstance(e, NoNetwork) else str(e) for e in failures.values()]
        offline = all(isinstance(e, NoNetwork) for e in failures.values())
        super().__init__(
            "; ".join(parts) + (f"; is this machine offline? {tail}" if offline else "")
        )
        self.failures = failures


class _EngineChain:
    """The engines of ``--engine a,b`` in order. One that cannot be reached (`NoNetwork`) or
    whose parser is broken (`BrokenEngine`) is left for the rest of the crawl, and the next
    serves; with none left, the crawl stops with their reasons."""

    def __init__(
        self, engines: list[Engine], options: CrawlOptions, session: requests.Session
    ) -> None:
        self.usable = list(engines)
        self.names = tuple(e.name for e in engines)
        self.options = options
        self.session = session
        self.failed: dict[str, CuratorError] = {}
        # One for the whole crawl: a host slowed down in one query stays so in the next.
        self.gate = HostGate(options.policy.per_host, options.policy.delay)
        self.opened = False  # whether the catalog was opened (so something may be written)

    def job(self, query: str) -> QueryCrawl:
        """A crawl of ``query`` by the first engine that can be reached."""
        while self.usable:
            job = QueryCrawl(
                engine=self.usable[0],
                query=query,
                options=self.options,
                session=self.session,
                search=self.names,
                gate=self.gate,
            )
            try:
                job.feed_and_check()
                return job
            except NoNetwork as exc:
                self._drop(job.engine, exc)
        raise self._none_left()

    def serve(
        self,
        job: QueryCrawl,
        catalog: Catalog,
        store: Store,
        run_id: int,
        on_progress: Callable[[CrawlProgress], None] | None,
    ) -> dict[str, Any]:
        while True:
            job.attach(catalog, store)
            try:
                summary = job.run(run_id, on_progress)
            except BrokenEngine as exc:
                self._drop(job.engine, exc)
                job = self.job(job.query)
                continue
            summary["engines_skipped"] = {name: str(e) for name, e in self.failed.items()}
            return summary

    def _drop(self, engine: Engine, exc: CuratorError) -> None:
        log.info("%s", exc)  # the summary says it (a warning would reach stderr unescaped)
        self.failed[engine.name] = exc
        self.usable = [e for e in self.usable if e.name != engine.name]
        if not self.usable:
            raise self._none_left()

    def _none_left(self) -> CuratorError:
        tail = "what was crawled before is kept" if self.opened else "nothing was changed"
        if len(self.failed) == 1:
            only = next(iter(self.failed.values()))
            return NoNetwork(only.what, tail=tail) if isinstance(only, NoNetwork) else only
        return NoEngineServed(dict(self.failed), tail=tail)


def crawl(
    catalog: Catalog | Callable[[], Catalog],
    home: Path,
    queries: list[str],
    options: CrawlOptions,
    *,
    on_progress: Callable[[CrawlProgress], None] | None = None,
) -> dict[str, Any]:
    """Crawl each query in turn into ``catalog``, its images into ``home``; return counts per
    query.

    ``catalog`` may be a function that opens it (`curator crawl` passes one): it is called
    only once the first result page has come back, and the catalog closed again at the end,
    so that without network the crawl ends in `NoNetwork` having written nothing, not even a
    new home folder.
    """
    engines = engines_named(options.engine)
    if any(e.name == "flickr" for e in engines) and not options.flickr_key:
        raise CuratorError("the flickr engine needs an API key: --flickr-key or FLICKR_API_KEY")
    if not queries:
        raise CuratorError("give at least one query")
    check_author(options.author)
    session = new_session(
        pool=2 * options.threads + 4,  # the threads, spares in the place of stragglers too
        policy=options.policy,
        routes=options.routes,
        trust_env=options.trust_env,
    )
    try:
        chain = _EngineChain(engines, options, session)
        return _crawl(catalog, home, chain, queries, on_progress)
    finally:
        session.close()


def _crawl(
    opener: Catalog | Callable[[], Catalog],
    home: Path,
    chain: _EngineChain,
    queries: list[str],
    on_progress: Callable[[CrawlProgress], None] | None,
) -> dict[str, Any]:
    options = chain.options
    first = chain.job(queries[0])
    catalog = opener() if callable(opener) else opener
    chain.opened = True
    try:
        if options.label is not None:
            with catalog.reading() as db:
                check_label(db, label=options.label)
        store = Store(home)
        store.sweep_temporary()
        params = {
            "engine": options.engine,
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
            "retry_failed": options.retry_failed,
        }
        results: dict[str, Any] = {}
        with tracked_run(catalog, kind="crawl", params=params) as run:
            try:
                for index, query in enumerate(queries):
                    job = first if index == 0 else chain.job(query)
                    results[query] = chain.serve(job, catalog, store, run.id, on_progress)
            finally:
                run.counts = {"queries": results}
        return results
    finally:
        if callable(opener):
            catalog.dispose()
