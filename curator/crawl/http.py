"""Fetching result pages and images safely: what icrawler's downloader does not do.

Every request goes through `Fetcher`, which:

* accepts http and https only, and follows at most a few redirects itself, checking each hop;
* gives each URL one budget (``deadline``): every hop, attempt and back-off wait of it comes out
  of the same monotonic deadline, each request's connect and read timeouts are the smaller of
  their own and the time left, and a wait that would pass the deadline ends the URL with the
  reason it had (`pacing.Budget`);
* streams the body with a byte cap within that budget (a slowly dripped body is cut off as
  ``too-slow``, not only a silent socket), refusing an oversized body from its Content-Length up
  front;
* retries connection errors, timeouts, 429 and 5xx with exponential back-off and jitter,
  honouring Retry-After (capped), and gives up with a reason; a body cut off as ``too-slow`` is
  not retried within the crawl (a server that drips once drips again);
* keeps a per-host limit on concurrent requests and a per-host delay between them, and drops a
  host that timed out or dripped to one request at a time for the rest of the crawl;
* names itself in its User-Agent, and skips images whose response says
  ``X-Robots-Tag: noai`` or ``noimageai`` unless told otherwise;
* connects only to public addresses, checked at connect time for every hop (`addresses`),
  unless told otherwise (``allow_private``) or the address is where a route points;
* decodes gzip and deflate bodies itself, within the byte cap on the decoded size
  (`encoding`).

Failures are `FetchError`s with a short reason (``http-404``, ``timeout``, ``too-slow``...) and
whether trying again later could help; the crawler turns them into source rows.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy

from curator import __version__
from curator.crawl.addresses import AddressGuard, CheckedPoolManager, PrivateAddress, endpoints_of
from curator.crawl.encoding import ACCEPT_ENCODING, Decoder, EncodingError, decoder_for
from curator.crawl.pacing import Budget, HostGate
from curator.defaults import CRAWL

USER_AGENT = (
    f"curator/{__version__} (image data set builder; +https://pypi.org/project/curator/) "
    f"python-requests/{requests.__version__}"
)
#: Reasons after which a later crawl may try the same URL again.
TRANSIENT = frozenset({"timeout", "connection-error", "too-slow", "http-429", "http-5xx"})
#: Of those, the ones tried again at once, within the URL's budget: not ``too-slow``, since the
#: budget is spent by then and a server that dripped once will drip again.
RETRIED_AT_ONCE = TRANSIENT - {"too-slow"}
#: Reasons after which a host gets one request at a time (`HostGate.slow_down`).
SLOW_HOST = frozenset({"timeout", "too-slow"})
_NOAI = frozenset({"noai", "noimageai"})
#: A timeout that fires this close to the end of the budget was the budget's (socket timeouts
#: round to milliseconds).
_SLACK = 0.05


class FetchError(Exception):
    """A URL that could not be fetched; ``reason`` is a short code for summaries."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after  # seconds the server asked for (429, 503), capped

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT


@dataclass(frozen=True)
class FetchPolicy:
    """How patient and how polite to be. Times in seconds, sizes in bytes."""

    connect_timeout: float = 10.0
    read_timeout: float = CRAWL["read_timeout"]
    #: Everything one URL may cost: its redirects, attempts and back-off waits, however the
    #: bytes trickle in.
    deadline: float = CRAWL["deadline"]
    max_bytes: int = 64 * 1024 * 1024
    max_page_bytes: int = 16 * 1024 * 1024
    max_redirects: int = 5
    retries: int = CRAWL["retries"]
    backoff: float = 0.5
    max_retry_after: float = 60.0
    per_host: int = CRAWL["per_host"]
    delay: float = CRAWL["delay"]  # between the starts of two requests to one host
    respect_noai: bool = True
    allow_private: bool = False  # loopback, private, link-local... addresses too


class _Adapter(HTTPAdapter):
    """Connection pool sized for the crawl's threads, with a timeout on every request (so
    that no library code path, icrawler's included, can wait forever), optional routes
    that send a host's requests elsewhere (a mirror, or a local test engine), and every
    connection checked by ``guard`` as it is opened."""

    def __init__(
        self,
        pool: int,
        timeout: tuple[float, float],
        routes: Mapping[str, str],
        guard: AddressGuard | None = None,
    ) -> None:
        self._guard = guard or AddressGuard()  # set first: the pool manager is made at init
        super().__init__(pool_connections=pool, pool_maxsize=pool)
        self._timeout = timeout
        self._routes = dict(routes)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = CheckedPoolManager(
            num_pools=connections, maxsize=maxsize, block=block, guard=self._guard, **pool_kwargs
        )

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        original = request.url or ""
        parts = urlsplit(original)
        target = self._routes.get(parts.netloc)
        if target:
            base = urlsplit(target)
            request.url = urlunsplit(
                (base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, "")
            )
        if select_proxy(request.url or "", kwargs.get("proxies")):
            # The proxy opens the connection, not this machine: the target's addresses can
            # only be checked before the request is sent, and the proxy resolves it again.
            where = urlsplit(request.url)
            port = where.port or (443 if where.scheme == "https" else 80)
            self._guard.check_name(str(where.hostname or ""), port)
        response = super().send(request, **kwargs)
        if target:
            response.url = original  # parsers and redirects see the engine's own address
        return response


def new_session(
    *,
    pool: int = 16,
    policy: FetchPolicy | None = None,
    routes: Mapping[str, str] | None = None,
    trust_env: bool = False,
) -> requests.Session:
    """A session for one crawl. ``routes`` maps a host (``www.bing.com``) to a base URL that
    serves it instead, and the address and port it points to may be connected to whatever
    ``policy.allow_private`` says; ``trust_env`` honours HTTP(S)_PROXY and .netrc (off unless
    asked)."""
    policy = policy or FetchPolicy()
    routes = routes or {}
    session = requests.Session()
    session.trust_env = trust_env
    session.headers.update(
        {
            "User-Agent": USER_AGENT,
            "Accept-Language": "en;q=0.9,*;q=0.5",
            # requests would offer br and zstd too where their packages are installed: only
            # what Fetcher decodes is asked for.
            "Accept-Encoding": ACCEPT_ENCODING,
        }
    )
    guard = AddressGuard(
        allow_private=policy.allow_private, endpoints=endpoints_of(routes.values())
    )
    adapter = _Adapter(pool, (policy.connect_timeout, policy.read_timeout), routes, guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), cap))


def robots_tags(headers: Mapping[str, str]) -> set[str]:
    """The directives of X-Robots-Tag headers that apply to every agent (or to ours)."""
    tags: set[str] = set()
    values = headers.get("X-Robots-Tag", "")
    for part in values.split(","):
        part = part.strip().lower()
        if ":" in part:  # "googlebot: noindex" speaks to another agent
            agent, _, part = part.partition(":")
            if agent.strip() not in ("curator", "*"):
                continue
        tags.update(p for p in part.split() if p)
    return tags


class Fetcher:
    """GETs under a `FetchPolicy`, shared by the threads of one crawl."""

    def __init__(
        self,
        session: requests.Session,
        policy: FetchPolicy,
        stop: threading.Event,
        gate: HostGate | None = None,
    ) -> None:
        self.session = session
        self.policy = policy
        self.stop = stop
        #: Shared by the queries of one crawl, so that a host slowed down stays so.
        self.gate = gate or HostGate(policy.per_host, policy.delay)

    def page(self, url: str) -> requests.Response:
        """A result page, with its body read (up to the page limit)."""
        return self._get(url, image=False)

    def image(self, url: str) -> requests.Response:
        """An image response whose ``content`` holds the whole body."""
        return self._get(url, image=True)

    def _get(self, url: str, *, image: bool) -> requests.Response:
        budget = Budget(self.policy.deadline)
        attempt = 0
        while True:
            try:
                return self._follow(url, image=image, budget=budget)
            except FetchError as exc:
                attempt += 1
                if (
                    exc.reason not in RETRIED_AT_ONCE
                    or attempt > self.policy.retries
                    or self.stop.is_set()
                ):
                    raise
                wait = exc.retry_after
                if wait is None:
                    wait = self.policy.backoff * 2 ** (attempt - 1) * (0.5 + random.random())
                # A wait that outlasts the budget would only end in the same failure, later.
                if wait >= budget.left() or self.stop.wait(wait):
                    raise

    def _follow(self, url: str, *, image: bool, budget: Budget) -> requests.Response:
        for hop in range(self.policy.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError("bad-url", f"not an http(s) URL: {url[:200]}")
            result = self._once(url, parts.netloc, image=image, budget=budget, hop=hop)
            if isinstance(result, requests.Response):
                return result
            url = result  # a redirect's target
        raise FetchError("too-many-redirects", f"more than {self.policy.max_redirects} redirects")

    def _once(
        self, url: str, host: str, *, image: bool, budget: Budget, hop: int
    ) -> requests.Response | str:
        """One request: the response with its body read, or the URL a redirect points to."""
        asked = time.monotonic()
        if not self.gate.acquire(host, self.stop):
            raise FetchError("stopped", "the crawl stopped")
        budget.waited(asked)
        try:
            timeouts = budget.timeouts(self.policy.connect_timeout, self.policy.read_timeout)
            if timeouts is None:
                raise FetchError("timeout", budget.spent(hop))
            try:
                return self._request(url, image=image, budget=budget, timeouts=timeouts, hop=hop)
            except FetchError as exc:
                if exc.reason in SLOW_HOST:
                    self.gate.slow_down(host)
                raise
        finally:
            self.gate.release(host)

    def _request(
        self, url: str, *, image: bool, budget: Budget, timeouts: tuple[float, float], hop: int
    ) -> requests.Response | str:
        try:
            response = self.session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=timeouts,
                headers={"Accept": "image/*,*/*;q=0.8"} if image else None,
            )
        except PrivateAddress as exc:
            raise FetchError("private-address", str(exc)) from None
        except requests.exceptions.Timeout as exc:
            if budget.left() < _SLACK:
                raise FetchError("timeout", budget.spent(hop)) from None
            raise FetchError("timeout", f"no answer in time: {exc}") from None
        except requests.exceptions.InvalidURL as exc:
            raise FetchError("bad-url", str(exc)) from None
        except requests.exceptions.RequestException as exc:
            raise FetchError("connection-error", _short(exc)) from None
        try:
            return self._read(response, url, image=image, budget=budget)
        finally:
            response.close()

    def _read(
        self, response: requests.Response, url: str, *, image: bool, budget: Budget
    ) -> requests.Response | str:
        status = response.status_code
        if response.is_redirect:
            target = urljoin(url, response.headers.get("Location", ""))
            scheme = urlsplit(target).scheme
            if scheme not in ("http", "https"):
                raise FetchError("bad-redirect", f"redirect to a {scheme or 'relative'} URL")
            return target
        if status == 429 or status >= 500:
            raise FetchError(
                "http-429" if status == 429 else "http-5xx",
                f"HTTP {status}",
                status=status,
                retry_after=_retry_after(
                    response.headers.get("Retry-After"), self.policy.max_retry_after
                ),
            )
        if status != 200:
            raise FetchError(
                f"http-{status}", f"HTTP {status} {response.reason or ''}".strip(), status=status
            )
        if image:
            if self.policy.respect_noai and robots_tags(response.headers) & _NOAI:
                raise FetchError("robots-noai", "X-Robots-Tag forbids use for AI")
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind.startswith("text/") or kind in ("application/json", "application/xhtml+xml"):
                raise FetchError("not-an-image", f"served as {kind}")
        limit = self.policy.max_bytes if image else self.policy.max_page_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:  # the encoded size: over already
            raise FetchError("too-large", f"{int(declared):,} bytes, more than {limit:,}")
        try:
            decoder = decoder_for(response.headers.get("Content-Encoding"), limit)
            body = self._body(response, limit, decoder, budget)
        except EncodingError as exc:
            raise FetchError(exc.reason, str(exc)) from None
        response._content = body  # where requests keeps a read body
        response._content_consumed = True  # read to the end: the connection can be reused
        return response

    def _body(
        self, response: requests.Response, limit: int, decoder: Decoder, budget: Budget
    ) -> bytes:
        """The body, decoded, by the end of the budget; both its size on the wire and decoded
        are capped at ``limit`` (a body that never ends while decoding to nothing is cut off
        too)."""
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        while True:
            left = budget.left()
            if left <= 0:
                raise FetchError("too-slow", f"not finished within {budget.seconds:g} s")
            # Each read waits no longer than the budget has left, so that a server sending a
            # byte just before each read timeout cannot stretch the URL past its deadline.
            _read_timeout(raw, min(self.policy.read_timeout, left))
            try:
                chunk = raw.read1(65536)
            except Exception as exc:  # urllib3 read timeouts and protocol errors
                if "timed out" not in str(exc).lower():
                    raise FetchError("connection-error", _short(exc)) from None
                if budget.left() < _SLACK:
                    raise FetchError(
                        "too-slow", f"not finished within {budget.seconds:g} s"
                    ) from None
                raise FetchError(
                    "timeout", f"the body stopped arriving for {self.policy.read_timeout:g} s"
                ) from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise FetchError("too-large", f"more than {limit:,} bytes")
            chunks.extend(decoder.feed(chunk))
            if self.stop.is_set():
                raise FetchError("stopped", "the crawl stopped")
        decoder.finish()
        return b"".join(chunks)


def _read_timeout(raw: object, seconds: float) -> None:
    """Set the socket timeout of a streamed urllib3 response for its next read (the socket is
    the connection's while the response holds it; without one, the request's timeout stays)."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Failed to resolve",
        "Name or service not known",
        "Connection refused",
        "Network is unreachable",
        "timed out",
    ):
        if marker in text:
            return marker.lower()
    return text[:200]
