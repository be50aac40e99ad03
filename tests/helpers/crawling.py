"""Crawling in the tests: a fetch policy that gives up fast, and the CLI's engine traffic sent
to a loopback server."""

from __future__ import annotations

import pytest

from curator.crawl import runner
from curator.crawl.http import FetchPolicy

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
