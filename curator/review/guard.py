"""What stands between the review app and every other page the reviewer's browser opens.

A server on 127.0.0.1 is reachable by any web page: a page can post a form to it, and a page
whose name its owner re-points at 127.0.0.1 (DNS rebinding) can read what it serves. So:

* `Guard` answers only requests whose Host is a name the server is bound as (a rebinding page
  sends its own name); a change (any method but GET/HEAD) must be JSON and come from the page
  itself (its Origin, or ``Sec-Fetch-Site: same-origin``), which no form of another site can
  fake; a request another site's page embeds (an image, a script) is refused by
  ``Sec-Fetch-Site``; and every answer carries headers that keep the page out of frames,
  stop content sniffing and referrers, and keep its files out of other origins.
* `TokenGate`, off loopback, wants the token on every request: once in the address, then a
  cookie (named for the port, holding a key of this server's own rather than the token),
  or a header.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from curator.errors import CuratorError

#: The fewest characters a token may have: guessing one must be out of reach.
MIN_TOKEN = 20
#: Names the server answers to when it is bound to loopback.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
        b"style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        b"form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class BadToken(CuratorError):
    """A token too short to keep anyone out."""


def check_token(token: str) -> str:
    """A token given by the user, refused when it is too short to be a secret."""
    if len(token) < MIN_TOKEN:
        raise BadToken(
            f"a token needs at least {MIN_TOKEN} characters; leave --token out and one is made up"
        )
    return token


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to ``bind`` answers to.

    Loopback: 127.0.0.1, localhost and ::1. A specific address: that address, and this
    machine's names. All addresses (0.0.0.0, ::): this machine's names, and any address
    literal, marked ``*ip`` (a rebinding page always sends a name, never an address).
    ``extra`` adds names (a reverse proxy's, say).
    """
    names = {_host_name(h) for h in extra}
    bind = bind.strip("[]").lower()
    if is_loopback(bind):
        return frozenset(LOOPBACK_NAMES | names | {bind})
    names |= {bind} | LOOPBACK_NAMES
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    if _is_wildcard(bind):
        names.add("*ip")
    return frozenset(n for n in names if n)


def _host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8765`` -> ``::1``, ``Example.org.`` ->
    ``example.org``."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name[:-1] if name.endswith(".") else name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _deny(message: str, status: int = 403) -> Response:
    return JSONResponse({"error": message}, status)


class Guard:
    """ASGI middleware: Host allow-list, same-origin JSON writes, no cross-site embedding,
    security headers on every answer."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        name = _host_name(host)
        if not name or not (name in self.hosts or ("*ip" in self.hosts and _is_address(name))):
            return _deny("this server does not answer to that host name", 421)
        method = scope["method"]
        site = headers.get("sec-fetch-site", "")
        if method in _SAFE_METHODS:
            # Another site's page may link here (a navigation), never embed what we serve.
            if site in ("cross-site", "same-site") and headers.get("sec-fetch-mode") != "navigate":
                return _deny("this server's files are for its own page")
            return None
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return _deny("a change must be sent as application/json", 415)
        origin = headers.get("origin")
        if origin is None:
            if site != "same-origin":
                return _deny("a change must come from the review page itself")
        elif not _same_origin(origin, scope["scheme"], host):
            return _deny("a change must come from the review page itself")
        return None


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    default = 443 if scheme == "https" else 80
    try:
        parts = urlsplit(origin)
        theirs = (parts.scheme, parts.hostname, parts.port or default)
        mine = urlsplit(f"{scheme}://{host}")
        return theirs == (scheme, mine.hostname, mine.port or default)
    except ValueError:  # a port out of range, an unparseable address
        return False


class TokenGate:
    """ASGI middleware: every request needs the token. It comes once in the address (the
    page's, then removed by a redirect), then as this server's cookie, or in a header for
    scripts. The cookie holds a key made at start, not the token: browsers send a host's
    cookies to all its ports, and the token may be what a team shares."""

    def __init__(self, app: ASGIApp, *, token: str, port: int) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = f"curator_review_{port}"
        self.key = secrets.token_urlsafe(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        in_query = request.query_params.get("token")
        header = request.headers.get("x-curator-token")
        cookie = request.cookies.get(self.cookie)
        valid = (
            _matches(in_query, self.token)
            or _matches(header, self.token)
            or _matches(cookie, self.key.encode())
        )
        if not valid:
            await _deny("a valid token is required")(scope, receive, send)
            return
        if in_query is None:
            await self.app(scope, receive, send)
            return
        set_cookie = f"{self.cookie}={self.key}; Path=/; HttpOnly; SameSite=Strict".encode()
        if request.method == "GET" and request.url.path == "/":
            # Out of the address bar and the history as soon as the cookie is set.
            rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
            target = "/" + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.raw_headers.append((b"set-cookie", set_cookie))
            await redirect(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _matches(given: str | None, secret: bytes) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), secret)


def protect(app: ASGIApp, *, hosts: frozenset[str], token: str | None, port: int) -> ASGIApp:
    """The app behind its gates: the Host and origin checks first, then the token."""
    inner = TokenGate(app, token=token, port=port) if token is not None else app
    return Guard(inner, hosts=hosts)
