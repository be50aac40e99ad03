"""Refusing connections to addresses that are not on the public internet (request forgery).

A result page or a URL list is written by strangers: an image URL, or a redirect from one,
may point at this machine (``127.0.0.1``, ``localhost``, ``[::ffff:127.0.0.1]``,
``2130706433``), at the local network or at a cloud's metadata service. The check is made
where the socket is opened, as the ``advocate`` library does it: the host is resolved once,
every address that is not global is dropped, and the connection goes to one of the addresses
that were checked, never to a second resolution of the name (so a name that answers
differently the next time gains nothing). TLS still speaks to the name: the connection's
host stays the name, for SNI and the certificate check.

What passes anyway: every address with ``allow_private`` (crawling one's own intranet or a
local mirror), and the exact ``(address, port)`` endpoints that routes send a host's requests
to (the demo's loopback engine, a test server), so that a redirect from such an engine to
another port of the same machine is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import allowed_gai_family, create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: Properties of an address that rule it out, most telling first.
_NOT_PUBLIC = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


class PrivateAddress(Exception):
    """A connection refused because the host's addresses are not on the public internet.

    Not an OSError, on purpose: urllib3 and requests wrap OSErrors into connection errors that
    are retried and read as "no network"; this one passes through them unchanged."""

    def __init__(self, host: str, address: str, why: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"{shown} is a {why} address, not a public one")
        self.host = host
        self.address = address
        self.why = why


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (``::ffff:a.b.c.d``), NAT64's
    well-known prefix (``64:ff9b::/96``) or 6to4 (``2002::/16``)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def why_not_public(ip: str) -> str | None:
    """Why an address is not one on the public internet (``"loopback"``...), or None."""
    try:
        address: IPAddress = ipaddress.ip_address(ip.split("%", 1)[0])  # drop a scope id
    except ValueError:
        return "malformed"
    # The host reached through these forms is the IPv4 one (the IPv6 wrapping is only a way of
    # writing it, or of getting there through a translator or relay): it is what is judged.
    address = embedded_ipv4(address) or address
    for test, why in _NOT_PUBLIC:
        if getattr(address, test):
            return why
    if not address.is_global:  # shared address space (100.64/10) and the like
        return "non-global"
    return None


def _normal(ip: str) -> str:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).compressed
    except ValueError:
        return ip


@dataclass(frozen=True)
class AddressGuard:
    """Which addresses a crawl may connect to."""

    allow_private: bool = False
    #: Exact (address, port) pairs allowed whatever the address: where routes point.
    endpoints: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def refusal(self, ip: str, port: int) -> str | None:
        """Why a connection to ``ip``:``port`` is refused, or None when it may be made."""
        if self.allow_private or (_normal(ip), port) in self.endpoints:
            return None
        return why_not_public(ip)

    def check_name(self, host: str, port: int) -> None:
        """Raise `PrivateAddress` if ``host`` resolves to any refused address, here and now.

        For requests through a proxy, which makes the connection itself: best effort only,
        since the proxy resolves the name again (and may see other answers), and a name this
        machine cannot resolve is left to the proxy."""
        if self.allow_private:
            return
        try:
            found = socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        for *_, sockaddr in found:
            why = self.refusal(str(sockaddr[0]), port)
            if why:
                raise PrivateAddress(host, str(sockaddr[0]), why)


def endpoints_of(urls: Iterable[str]) -> frozenset[tuple[str, int]]:
    """The (address, port) pairs that base URLs (routes' targets) resolve to now."""
    found: set[tuple[str, int]] = set()
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            infos = socket.getaddrinfo(parts.hostname or "", port, 0, socket.SOCK_STREAM)
        except (OSError, ValueError, UnicodeError):
            continue  # a route nobody can reach: its requests fail on their own
        found.update((_normal(str(info[4][0])), port) for info in infos)
    return frozenset(found)


def connect_checked(
    host: str,
    port: int,
    guard: AddressGuard,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
    socket_options: list[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """A socket connected to one of ``host``'s allowed addresses, resolved once.

    Refused addresses are skipped (a host may have a public address beside a private one);
    `PrivateAddress` when none is left. Connection errors are OSErrors, as from
    ``socket.create_connection``."""
    refused: PrivateAddress | None = None
    error: OSError | None = None
    for *_, sockaddr in socket.getaddrinfo(
        host.strip("[]"), port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        ip = str(sockaddr[0])
        why = guard.refusal(ip, port)
        if why:
            refused = refused or PrivateAddress(host, ip, why)
            continue
        try:
            # A numeric address: urllib3 parses it, it does not look the name up again.
            return create_connection((ip, port), timeout, source_address, socket_options)
        except OSError as exc:
            error = exc
    if error is not None:
        raise error
    if refused is not None:
        raise refused
    raise OSError(f"no address found for {host}")


class _Checked:
    """Mixed into urllib3's connection classes: the socket is opened by `connect_checked`."""

    _guard: AddressGuard

    def __init__(self, *args: Any, guard: AddressGuard | None = None, **kwargs: Any) -> None:
        self._guard = guard or AddressGuard()  # no guard given: the strict one
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        conn = cast(HTTPConnection, self)  # urllib3's own _new_conn, but for the socket
        try:
            sock = connect_checked(
                conn._dns_host,
                conn.port,
                self._guard,
                conn.timeout,
                conn.source_address,
                conn.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(conn.host, conn, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock


class CheckedHTTPConnection(_Checked, HTTPConnection):
    pass


class CheckedHTTPSConnection(_Checked, HTTPSConnection):
    pass


class CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = CheckedHTTPConnection


class CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = CheckedHTTPSConnection


class CheckedPoolManager(PoolManager):
    """A pool manager whose connections all go through ``guard``."""

    def __init__(self, *args: Any, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.pool_classes_by_scheme = {
            "http": CheckedHTTPConnectionPool,
            "https": CheckedHTTPSConnectionPool,
        }

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        # The guard reaches each connection through the pool's connection keywords, not the
        # pool key (urllib3 would refuse a key it does not know).
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["guard"] = self.guard
        return super()._new_pool(scheme, host, port, context)
