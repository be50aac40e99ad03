"""The parser thread of a crawl: result pages fetched in order through `Fetcher`, read by the
engine's own parser, their image URLs offered for download; and how a parser that no longer
reads its engine's pages is told from an engine that has nothing to show.

Search engines change their pages, and icrawler's parsers have broken many times over it (its
issues #65, #94, #117, #125, #132): the parser then finds nothing on a page full of results,
and the crawl used to end as an empty success. The heuristic:

* a page *answered* when it came with status 200 and a body; one that yielded no image URL is
  counted (``pages_without_images``);
* such a page *shows results* when it holds at least `SIGNS_OF_RESULTS` distinct absolute image
  addresses (``http(s)://...`` ending in .jpg, .jpeg, .png, .gif, .webp or .bmp, JSON-escaped
  slashes too), or when its parser raised: results are there in a form the parser does not
  read (a Bing tile whose JSON lost ``murl``, tiles of a new class, Google's data moved out of
  its script tags);
* a page that yields nothing and shows no results (no tiles at all, an empty result list, an
  empty body) is the engine's "no results" answer: the query's results are exhausted and its
  crawl ends, empty, as any crawl past its last result;
* when the first `JUDGED_PAGES` pages that answered (all of them, if fewer are listed) yielded
  nothing and one of them showed results, the engine is taken as broken: `BrokenEngine`, with
  the first such page saved under the home (``logs/broken-pages/``) for a bug report.

A page that failed (an HTTP error, a timeout) is neither: it counts in ``pages_failed``, as
before. Greedy site pages are not judged (a site page without images is ordinary).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from icrawler import Parser

from curator.crawl.engines import Engine
from curator.crawl.http import Fetcher, FetchError
from curator.errors import CuratorError

log = logging.getLogger("curator.crawl")

#: The first answered pages that must all yield nothing for an engine to be taken as broken.
JUDGED_PAGES = 2
#: Distinct image addresses on a page that yielded none: the page shows results.
SIGNS_OF_RESULTS = 3
#: How much of a broken page is kept for a bug report.
MAX_SAVED_PAGE = 1 << 20
_IMAGE_ADDRESS = re.compile(
    rb"https?:(?:\\?/){2}[^\s\"'<>()\\]{1,2000}?\.(?:jpe?g|png|gif|webp|bmp)(?![a-z0-9])",
    re.IGNORECASE,
)


class BrokenEngine(CuratorError):
    """The engine answered its first result pages, and its parser found no image on them
    although they show results: its page format has likely changed."""

    def __init__(self, engine: str, saved: Path | None) -> None:
        where = f"saved to {saved}" if saved else "it could not be saved"
        super().__init__(
            f"{engine} answered but no image was found on its page; "
            f"its format may have changed ({where})"
        )
        self.engine = engine
        self.saved = saved


def shows_results(body: bytes) -> bool:
    """Whether a page holds at least `SIGNS_OF_RESULTS` distinct image addresses."""
    found: set[bytes] = set()
    for match in _IMAGE_ADDRESS.finditer(body, 0, 4 * MAX_SAVED_PAGE):
        found.add(match.group().replace(b"\\/", b"/"))
        if len(found) >= SIGNS_OF_RESULTS:
            return True
    return False


def save_page(home: Path, engine: str, body: bytes, content_type: str) -> Path | None:
    """Keep a page for a bug report: ``logs/broken-pages/<engine>-<UTC time>.html`` (or .json),
    its first `MAX_SAVED_PAGE` bytes; None if it cannot be written."""
    folder = home / "logs" / "broken-pages"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ext = "json" if "json" in content_type.lower() else "html"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, 100):
            path = folder / f"{engine}-{stamp}{'' if n == 1 else f'-{n}'}.{ext}"
            try:
                with open(path, "xb") as fh:
                    fh.write(body[:MAX_SAVED_PAGE])
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        log.warning("cannot keep the broken page of %s: %s", engine, exc)
    return None


@dataclass
class _Evidence:
    body: bytes
    content_type: str


class PageJudge:
    """Follows the first answered pages of one query and says when the engine is broken (see
    the module's docstring)."""

    def __init__(self, engine: str, home: Path | None) -> None:
        self.engine = engine
        self.home = home
        self.answered = 0
        self.yielded = False
        self.evidence: _Evidence | None = None

    def after(self, response: requests.Response, *, found: int, new: int, raised: bool) -> bool:
        """Whether to read the next page after this one (False: the results are exhausted);
        `BrokenEngine` when the first pages showed results the parser did not yield."""
        body = response.content or b""
        if found:
            self.yielded = True
        elif body and not self.yielded and (raised or shows_results(body)):
            kind = response.headers.get("Content-Type", "")
            self.evidence = self.evidence or _Evidence(body[:MAX_SAVED_PAGE], kind)
        if body:
            self.answered += 1
        if self.evidence is not None and not self.yielded:
            if self.answered >= JUDGED_PAGES:
                raise self.broken()
            return True  # one more page before judging: this one may be a passing glitch
        # Past the last result, engines answer empty pages or repeat the last ones: either
        # way the results are exhausted. A page the parser raised on costs only that page.
        return raised or new > 0

    def finish(self) -> None:
        """The pages ran out: `BrokenEngine` if those there were showed results unread."""
        if self.evidence is not None and not self.yielded:
            raise self.broken()

    def broken(self) -> BrokenEngine:
        assert self.evidence is not None
        saved = None
        if self.home is not None:
            saved = save_page(
                self.home, self.engine, self.evidence.body, self.evidence.content_type
            )
        return BrokenEngine(self.engine, saved)


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
        home: Path | None,
    ) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.stop = stop
        self.counts = counts
        self.page_reasons = page_reasons
        self.max_pages = max_pages
        self.offer = offer
        self.prefetched = prefetched
        self.judge = PageJudge(engine.name, home) if engine.name != "greedy" else None

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
            found, new, raised = self._parse(parser, response, kwargs, pages)
            if self.stop.is_set():
                return
            if self.judge is None:
                continue
            if not self.judge.after(response, found=found, new=new, raised=raised):
                self.counts["pages_not_fetched"] += pages.qsize()
                break
        if self.judge is not None and not self.stop.is_set():
            self.judge.finish()

    def _parse(
        self,
        parser: Parser,
        response: requests.Response,
        kwargs: dict[str, Any],
        pages: queue.Queue[str],
    ) -> tuple[int, int, bool]:
        """Offer a page's image URLs: (URLs found, of which new, whether the parser raised)."""
        found = new = 0
        try:
            for task in parser.parse(response, **kwargs) or ():
                if self.stop.is_set():
                    break
                if isinstance(task, str):  # greedy: another page of the site
                    pages.put(task)
                elif isinstance(task, dict):
                    url = task.get("file_url")
                    found += isinstance(url, str) and bool(url.strip())
                    new += self.offer(task)
        except Exception as exc:  # a parser bug or an unexpected page: count it, go on
            self.counts["pages_failed"] += 1
            self.page_reasons["unreadable-page"] += 1
            # Counted in the summary; a warning would reach stderr unescaped through logging's
            # last-resort handler, the page's words in it.
            log.info("cannot parse %s: %s", response.url, exc)
            return found, new, True
        self.counts["pages"] += 1
        if not found and response.content:
            self.counts["pages_without_images"] += 1
        return found, new, False
