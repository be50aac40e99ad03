"""A crawl: its queries in turn, into one run of the catalog (the crawl of one query is
`query.QueryCrawl`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests

from curator.config import Settings
from curator.crawl.engines import ENGINES, Engine
from curator.crawl.http import HostGate, new_session
from curator.crawl.query import CrawlOptions, CrawlProgress, NoNetwork, QueryCrawl
from curator.errors import CuratorError
from curator.runs import tracked_run
from curator.storage import Store
from db.catalog import open_catalog
from db.labels import check_author, check_label

log = logging.getLogger("curator.crawl")

__all__ = ["CrawlOptions", "CrawlProgress", "NoNetwork", "QueryCrawl", "crawl"]


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
