"""Crawling in the tests: a fetch policy that gives up fast, and the CLI's engine traffic sent
to a loopback server."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from curator.config import load_settings
from curator.crawl import runner
from curator.crawl.http import FetchPolicy
from curator.crawl.runner import CrawlOptions, crawl
from db.catalog import open_catalog

#: Short waits and budgets, so that hostile servers end their URLs in seconds.
FAST = FetchPolicy(
    read_timeout=3,
    deadline=2,
    retries=2,
    backoff=0.05,
    max_retry_after=2,
    max_bytes=2_000_000,
    per_host=8,
)


def route_to(monkeypatch: pytest.MonkeyPatch, routes: dict[str, str]) -> None:
    """Send the CLI's engine traffic to loopback: the one patch, at the network's edge."""
    real = runner.new_session
    monkeypatch.setattr(runner, "new_session", lambda **kw: real(**{**kw, "routes": routes}))


def crawl_home(home: Path, queries: list[str], options: CrawlOptions) -> dict[str, Any]:
    """`crawl` into the home folder's catalog, opened as `curator crawl` opens it: once the
    first result page has come back."""
    opener = functools.partial(open_catalog, load_settings(home=home).db_url)
    return crawl(opener, home, queries, options)
