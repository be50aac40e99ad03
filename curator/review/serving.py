"""uvicorn, with the limits a server open to other programs needs.

uvicorn starts no clock before a request's headers are complete, and a byte now and then
cancels its keep-alive clock: 300 half-sent requests stay open forever, and 20,000 use up
the process's file descriptors (asyncio then logs "Too many open files" at every accept).
`GuardedH11Protocol` gives every request `HEADER_SECONDS` to arrive whole and closes the
connection otherwise; past `MAX_CONNECTIONS` open connections it closes the oldest one that
is not being answered (so a flood cannot lock a reviewer out), and `Server` logs a failing
accept once a minute at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from curator.errors import CuratorError

log = logging.getLogger("curator.review")

#: Seconds a request's headers may take to arrive, from the connection or the last answer.
HEADER_SECONDS = 10.0
#: Open connections at most; a reviewer's browser keeps about six.
MAX_CONNECTIONS = 256
#: Seconds between two log lines about failing accepts.
ACCEPT_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    header_seconds: float = HEADER_SECONDS
    max_connections: int = MAX_CONNECTIONS


class GuardedH11Protocol(H11Protocol):
    header_timer: asyncio.TimerHandle | None
    """uvicorn's h11 protocol with a deadline for headers and a cap on connections."""

    limits = Limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = time.monotonic()
        self._arm()
        if len(self.connections) > self.limits.max_connections:
            self._evict()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers get their own time

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self.header_timer = self.loop.call_later(self.limits.header_seconds, self._expire)

    def _disarm(self) -> None:
        timer = getattr(self, "header_timer", None)
        if timer is not None:
            timer.cancel()
            self.header_timer = None

    def _expire(self) -> None:
        self.header_timer = None
        if not self._busy() and not self.transport.is_closing():
            self.transport.close()

    def _evict(self) -> None:
        idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c._busy()]
        if idle:
            min(idle, key=lambda c: c.opened).transport.close()


def protocol_with(limits: Limits) -> type[GuardedH11Protocol]:
    return type("ReviewProtocol", (GuardedH11Protocol,), {"limits": limits})


class Server(uvicorn.Server):
    """uvicorn's server whose event loop reports a failing accept once a minute at most."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_QuietAccept().handle)
        await super().serve(sockets)


class _QuietAccept:
    def __init__(self) -> None:
        self.last = -ACCEPT_LOG_SECONDS
        self.missed = 0

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "accept" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.last < ACCEPT_LOG_SECONDS:
            self.missed += 1
            return
        more = f" ({self.missed} more since the last report)" if self.missed else ""
        log.warning("cannot accept connections: %s%s", context.get("exception"), more)
        self.last, self.missed = now, 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on the port asked for, or on a free one when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in (port, 0):
        # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on connections
        # of such sockets; without it every response waits out a 40 ms delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if candidate == 0:
                raise CuratorError(f"cannot listen on {host}: {exc.strerror}") from None
            continue
        sock.listen(128)
        return sock
    raise AssertionError("unreachable")


def raise_open_files_limit() -> None:
    """Let the process open as many files as it is allowed to (the soft limit is often
    1,024, the hard one far more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65_536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def make_server(app: ASGIApp, *, limits: Limits | None = None, **config: Any) -> Server:
    """A server for ``app`` with curator's limits; run it with ``serve(server, sockets)``."""
    return Server(
        uvicorn.Config(
            app,
            http=protocol_with(limits or Limits()),
            log_level=config.pop("log_level", "warning"),
            lifespan="off",
            access_log=False,
            **config,
        )
    )


def run(server: Server, sockets: Iterable[socket.socket]) -> None:
    raise_open_files_limit()
    server.run(sockets=list(sockets))
