"""How long and how often: the budget of one URL, and the gate that paces requests to each
host (`http.Fetcher` uses both)."""

from __future__ import annotations

import threading
import time


class HostGate:
    """At most ``per_host`` requests at once to one host, starting ``delay`` seconds apart; a
    host that was slowed down gets one at a time."""

    def __init__(self, per_host: int, delay: float) -> None:
        self.per_host = max(1, per_host)
        self.delay = max(0.0, delay)
        self._cond = threading.Condition()
        self._active: dict[str, int] = {}
        self._slowed: set[str] = set()
        self._next_start: dict[str, float] = {}

    def acquire(self, host: str, stop: threading.Event) -> bool:
        with self._cond:
            while self._active.get(host, 0) >= self.limit(host):
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._active[host] = self._active.get(host, 0) + 1
            now = time.monotonic()
            start = max(now, self._next_start.get(host, 0.0))
            if self.delay:
                self._next_start[host] = start + self.delay
        if start > now and stop.wait(start - now):
            self.release(host)
            return False
        return True

    def release(self, host: str) -> None:
        with self._cond:
            self._active[host] -= 1
            self._cond.notify_all()

    def limit(self, host: str) -> int:
        return 1 if host in self._slowed else self.per_host

    def slow_down(self, host: str) -> None:
        """One request at a time to ``host`` from now on. A server that lets a request time
        out or drips its body is overloaded or hostile: more connections to it would only
        tie up more download threads waiting on it (and weigh on it more), while one keeps it
        served and leaves the other threads to the other hosts. Requests under way finish."""
        with self._cond:
            self._slowed.add(host)

    @property
    def slowed(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._slowed)


class Budget:
    """What one URL may still spend: a deadline on the monotonic clock, shared by all its hops,
    attempts and back-off waits. It starts when the URL's first request may go, and time spent
    waiting for a turn at a host (`HostGate`) is given back: that wait is the crawl's
    politeness, not the URL's cost."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None

    def left(self) -> float:
        if self.deadline is None:
            return self.seconds
        return self.deadline - time.monotonic()

    def waited(self, since: float) -> None:
        """A turn at a host came, having been waited for since ``since``."""
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.seconds
        else:
            self.deadline += now - since

    def timeouts(self, connect: float, read: float) -> tuple[float, float] | None:
        """A request's (connect, read) timeouts: its own, or the time left if that is less;
        None if nothing is left."""
        left = self.left()
        if left <= 0:
            return None
        return min(connect, left), min(read, left)

    def spent(self, redirects: int) -> str:
        after = f" after {redirects} redirect{'s' * (redirects != 1)}" if redirects else ""
        return f"no answer within the budget of {self.seconds:g} s{after}"
