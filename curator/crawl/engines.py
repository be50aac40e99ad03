"""Search engines: icrawler's own feeders and parsers, fixed where they are wrong.

Each engine keeps icrawler's request format (its feeder builds the result-page URLs, its parser
reads them) and changes only what is broken:

* Bing and Baidu: keywords are URL-encoded (icrawler pastes them raw, so "c# couple" searches
  for "c"); Bing's parser keeps every image URL, not only ``.jpg``, and the page it came from.
* Google: the parser returns an empty list, never None, when nothing matches.
* Baidu: the page URL (``fromURL``) is decoded and kept.
* Flickr: the photo's page is kept; every API call has a timeout (through the session).
* Greedy: the feeder returns once the sites are queued instead of looping forever.
* urls: blank lines and ``#`` comments in the list are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import requests
from bs4 import BeautifulSoup
from icrawler import Feeder, Parser, UrlListFeeder
from icrawler.builtin.baidu import BaiduFeeder as _BaiduFeeder
from icrawler.builtin.baidu import BaiduParser as _BaiduParser
from icrawler.builtin.bing import BingFeeder as _BingFeeder
from icrawler.builtin.bing import BingParser as _BingParser
from icrawler.builtin.flickr import FlickrFeeder, FlickrParser
from icrawler.builtin.google import GoogleFeeder, GoogleParser
from icrawler.builtin.greedy import GreedyFeeder as _GreedyFeeder
from icrawler.builtin.greedy import GreedyParser

from curator.errors import CuratorError

Task = dict[str, Any]


class BingFeeder(_BingFeeder):
    def feed(
        self, keyword: str, offset: int, max_num: int, filters: dict[str, Any] | None = None
    ) -> None:
        super().feed(quote_plus(keyword), offset, max_num, filters)


class BingParser(_BingParser):
    """Every ``a[m]`` of a result tile: its JSON holds the image (murl) and its page (purl)."""

    def parse(self, response: requests.Response) -> Iterator[Task]:
        soup = BeautifulSoup(response.content.decode("utf-8", "ignore"), "lxml")
        for anchor in soup.select("div.imgpt a[m], a.iusc[m]"):
            try:
                meta = json.loads(str(anchor["m"]))  # BeautifulSoup has already unescaped it
            except (ValueError, TypeError):
                continue
            if isinstance(meta, dict) and isinstance(meta.get("murl"), str):
                yield {"file_url": meta["murl"], "page_url": meta.get("purl")}


class SafeGoogleParser(GoogleParser):
    def parse(self, response: requests.Response) -> list[Task]:
        found = super().parse(response) or []
        seen: set[str] = set()
        unique = []
        for task in found:
            if task["file_url"] not in seen:
                seen.add(task["file_url"])
                unique.append(task)
        return unique


class BaiduFeeder(_BaiduFeeder):
    def feed(
        self, keyword: str, offset: int, max_num: int, filters: dict[str, Any] | None = None
    ) -> None:
        super().feed(quote(keyword), offset, max_num, filters)


class BaiduParser(_BaiduParser):
    def parse(self, response: requests.Response) -> Iterator[Task]:
        try:
            content = json.loads(
                response.content.decode("utf-8", "ignore").replace("\\'", "'"), strict=False
            )
        except ValueError:
            return
        for item in content.get("data") or []:
            if not isinstance(item, dict):
                continue
            if "objURL" in item:
                url = self._decode_url(item["objURL"])
            elif "hoverURL" in item:
                url = item["hoverURL"]
            else:
                continue
            page = item.get("fromURL")
            yield {"file_url": url, "page_url": self._decode_url(page) if page else None}


class FlickrPageParser(FlickrParser):
    def parse(
        self,
        response: requests.Response,
        apikey: str,
        size_preference: str | list[str] | None = None,
    ) -> Iterator[Task]:
        for task in super().parse(response, apikey, size_preference):
            meta = task.pop("meta", {}) or {}
            if meta.get("owner") and meta.get("id"):
                task["page_url"] = f"https://www.flickr.com/photos/{meta['owner']}/{meta['id']}"
            yield task


class GreedyFeeder(_GreedyFeeder):
    def feed(self, domains: list[str]) -> None:
        for domain in domains:
            self.output(domain)


class CleanUrlListFeeder(UrlListFeeder):
    def feed(self, url_list: list[str], offset: int = 0, max_num: int = 0) -> None:
        for url in url_list[offset : offset + max_num if max_num else None]:
            self.out_queue.put(url)


@dataclass(frozen=True)
class Engine:
    """How to turn a query into result pages, and result pages into image URLs."""

    name: str
    feeder: type[Feeder]
    parser: type[Parser] | None  # None: the fed URLs are the images themselves
    host: str | None  # the address result pages come from, for "cannot reach" messages
    limit: int = 1000  # results the engine serves for one query

    def feed_kwargs(self, query: str, flickr_key: str | None) -> dict[str, Any]:
        """What the feeder's ``feed`` takes, for every result page the engine serves."""
        if self.name == "flickr":
            return {"apikey": flickr_key, "max_num": self.limit, "text": query}
        if self.name == "greedy":
            return {"domains": site_urls([query])}
        if self.name == "urls":
            return {"url_list": read_url_list(Path(query))}
        return {"keyword": query, "offset": 0, "max_num": self.limit}

    def parse_kwargs(self, query: str, flickr_key: str | None) -> dict[str, Any]:
        """What the parser's ``parse`` takes beside the response."""
        if self.name == "flickr":
            return {"apikey": flickr_key, "size_preference": FLICKR_SIZES}
        if self.name == "greedy":  # links count as the site's when under its scheme and host
            return {"domains": [site_root(url) for url in site_urls([query])]}
        return {}


ENGINES: dict[str, Engine] = {
    "bing": Engine("bing", BingFeeder, BingParser, "www.bing.com"),
    "google": Engine("google", GoogleFeeder, SafeGoogleParser, "www.google.com"),
    "baidu": Engine("baidu", BaiduFeeder, BaiduParser, "image.baidu.com"),
    "flickr": Engine("flickr", FlickrFeeder, FlickrPageParser, "api.flickr.com", limit=4000),
    "greedy": Engine("greedy", GreedyFeeder, GreedyParser, None),
    "urls": Engine("urls", CleanUrlListFeeder, None, None),
}
#: The engines whose query is search words (greedy's is a site, urls' a list of addresses).
WORD_ENGINES = tuple(name for name in ENGINES if name not in ("greedy", "urls"))
#: Flickr sizes, largest first (icrawler's order).
FLICKR_SIZES = [
    "original",
    "large 2048",
    "large 1600",
    "large",
    "medium 800",
    "medium 640",
    "medium",
    "small 320",
    "small",
    "thumbnail",
    "large square",
    "square",
]


def engines_named(spec: str) -> list[Engine]:
    """The engines of ``--engine``: one name, or several separated by commas, tried in that
    order. greedy and urls take sites and URL lists, not search words: they stand alone."""
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    if not names:
        raise CuratorError(f"no engine given; one of {', '.join(ENGINES)}")
    for name in names:
        if name not in ENGINES:
            raise CuratorError(f"unknown engine {name!r}; one of {', '.join(ENGINES)}")
    alone = [name for name in names if name in ("greedy", "urls")]
    if alone and len(names) > 1:
        raise CuratorError(
            f"--engine {alone[0]} takes {'sites' if alone[0] == 'greedy' else 'a URL list'}, "
            "not search words: it cannot be listed with other engines"
        )
    return [ENGINES[name] for name in names]


def site_urls(sites: list[str]) -> list[str]:
    """Sites as absolute http(s) URLs without a trailing slash (as GreedyParser expects)."""
    out = []
    for site in sites:
        url = site if "://" in site else f"http://{site}"
        if urlsplit(url).scheme not in ("http", "https"):
            raise CuratorError(f"{site!r} is not an http(s) site")
        out.append(url.rstrip("/"))
    return out


def site_root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def read_url_list(path: Path) -> list[str]:
    """Image URLs from a file, one a line; blank lines and # comments skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise CuratorError(f"no such URL list: {path}") from None
    except OSError as exc:
        raise CuratorError(f"cannot read the URL list {path}: {exc.strerror}") from None
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line)
    return urls
