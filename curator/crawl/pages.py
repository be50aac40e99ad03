"""The parser thread of a crawl: result pages fetched in order through `Fetcher`, read by the
engine's own parser, their image URLs offered for download. Any exception in a parser is
counted against its page, never fatal to the thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from icrawler import Parser

from curator.crawl.engines import Engine
from curator.crawl.http import Fetcher, FetchError

log = logging.getLogger("curator.crawl")


class PageReader:
    """The parser thread's loop over one query's result pages."""

    def __init__(
        self,
        *,
        engine: Engine,
        fetcher: Fetcher,
        stop: threading.Event,
        counts: Counter[str],
        page_reasons: Counter[str],
        max_pages: int,
        offer: Callable[[dict[str, Any]], bool],
        prefetched: dict[str, requests.Response | FetchError],
    ) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.stop = stop
        self.counts = counts
        self.page_reasons = page_reasons
        self.max_pages = max_pages
        self.offer = offer
        self.prefetched = prefetched

    def read(self, parser: Parser, kwargs: dict[str, Any]) -> None:
        """Read pages until they run out, the results are exhausted or the crawl stops."""
        pages = parser.in_queue
        fetched = 0
        while not self.stop.is_set():
            try:
                url = pages.get_nowait()
            except queue.Empty:
                break
            if fetched >= self.max_pages:
                self.counts["pages_not_fetched"] += 1 + pages.qsize()
                break
            fetched += 1
            try:
                response = self.prefetched.pop(url, None) or self.fetcher.page(url)
                if isinstance(response, FetchError):
                    raise response
            except FetchError as exc:
                if exc.reason != "stopped":
                    self.counts["pages_failed"] += 1
                    self.page_reasons[exc.reason] += 1
                continue
            new, raised = self._parse(parser, response, kwargs, pages)
            if self.stop.is_set():
                return
            if new == 0 and not raised and self.engine.name != "greedy":
                # Past the last result, engines answer empty pages or repeat the last ones:
                # either way the results are exhausted.
                self.counts["pages_not_fetched"] += pages.qsize()
                return

    def _parse(
        self, parser: Parser, response: requests.Response, kwargs: dict[str, Any], pages: Any
    ) -> tuple[int, bool]:
        """Offer a page's image URLs: (how many were new, whether the parser raised)."""
        new = 0
        try:
            for task in parser.parse(response, **kwargs) or ():
                if self.stop.is_set():
                    break
                if isinstance(task, str):  # greedy: another page of the site
                    pages.put(task)
                elif isinstance(task, dict):
                    new += self.offer(task)
        except Exception as exc:  # a parser bug or an unexpected page: count it, go on
            self.counts["pages_failed"] += 1
            self.page_reasons["unreadable-page"] += 1
            log.warning("cannot parse %s: %s", response.url, exc)
            return new, True
        self.counts["pages"] += 1
        return new, False
