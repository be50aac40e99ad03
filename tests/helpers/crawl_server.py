"""A loopback web server that plays Bing, Google, Baidu, Flickr, a plain web site, and the
image hosts behind them, hostile ones included. Used by the crawl tests and benchmark.

Result pages are built in each engine's own format (the formats icrawler's parsers read):

* Bing:   ``/bing/images/async?q=..&first=N``  HTML tiles ``<div class="imgpt"><a class="iusc"
  m="{&quot;murl&quot;:..,&quot;purl&quot;:..}">``, 20 a page
* Google: ``/google/search?q=..&start=N&tbm=isch``  image URLs inside ``<script>`` text
* Baidu:  ``/baidu/search/acjson?word=..&pn=N``  JSON whose ``objURL``/``fromURL`` are
  enciphered as Baidu does
* Flickr: ``/flickr/services/rest/?method=flickr.photos.search|getSizes``  JSON
* a site: ``/site/<page>.html`` pages with ``<img>`` tags and links

Images are served from ``/img/<name>``; `Behaviour` says how (status, headers, delays, a
truncated or dripped body, redirects...). Every request is logged with its time, every
connection accepted is counted. It listens on 127.0.0.1, or on another loopback address
(``host="127.0.0.2"``) to stand for a machine inside the network; it also answers requests
for absolute URLs (``GET http://host/img/x``) as a forward proxy's would be, from its own
images.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

from PIL import Image

from curator.demo.localsearch import PAGE, QuietHandler, bing_results_page
from tests.helpers import imagefiles as f


@dataclass
class Behaviour:
    """How /img/<name> answers."""

    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before answering
    drip: float = 0.0  # seconds between single bytes of the body
    declare_length: bool = True
    #: Statuses to answer first, one per request, before the normal answer (e.g. [429]).
    first: list[int] = field(default_factory=list)
    retry_after: str | None = None
    #: Read the request and never answer (until the server stops).
    hang: bool = False
    #: Send the headers (a Content-Length of the body) and then nothing.
    stall: bool = False
    #: Answer 200 with a body that never ends: `chunk` bytes every `endless` seconds (0: as
    #: fast as the client reads), until the client goes or the server stops.
    endless: float | None = None
    chunk: int = 1024
    #: Set when an answer to this image begins, and when it has ended (sent, or cut off).
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    host: str
    ended: float | None = None


class EngineServer:
    """Start with `start()`; ``routes`` maps engine hosts to this server for new_session()."""

    def __init__(
        self,
        *,
        image_delay: float = 0.0,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.tls = tls  # (certificate file, key file): serve https
        self.tls_names: list[str | None] = []  # the server names clients asked for (SNI)
        self.images: dict[str, Behaviour] = {}
        self.results: dict[str, list[tuple[str, str | None]]] = {}  # query -> (image, page)
        self.site_pages: dict[str, str] = {}
        self.page_delay: dict[str, float] = {}  # query -> seconds before its first page
        self.image_delay = image_delay
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self.images_by_id: dict[str, str] = {}
        self.page_encoding: str | None = None  # "gzip": result pages are sent gzip-encoded
        self.connections = 0
        #: Set by stop(): answers that hang, stall or never end stop with it.
        self.closing = threading.Event()

    # -- set-up ---------------------------------------------------------------------------

    def start(self, ports: int = 1) -> EngineServer:
        """Listen on its host; with ``ports`` > 1, on more ports too (other "hosts")."""
        handler = _handler(self)
        for _ in range(ports):
            server = _CountingServer(self, (self.host, 0), handler)
            if self.tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self.tls)
                context.sni_callback = lambda _sock, name, _ctx: self.tls_names.append(name)
                server.socket = context.wrap_socket(server.socket, server_side=True)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self._server = self._servers[0]
        return self

    def stop(self) -> None:
        self.closing.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def port(self, index: int) -> int:
        return self._servers[index % len(self._servers)].server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"{self.scheme}://{self.host}:{self._server.server_address[1]}"

    @property
    def routes(self) -> dict[str, str]:
        return {
            "www.bing.com": f"{self.base}/bing",
            "www.google.com": f"{self.base}/google",
            "image.baidu.com": f"{self.base}/baidu",
            "api.flickr.com": f"{self.base}/flickr",
        }

    def image_url(self, name: str, port_index: int = 0) -> str:
        return f"{self.scheme}://{self.host}:{self.port(port_index)}/img/{name}"

    def add_image(self, name: str, behaviour: Behaviour) -> str:
        self.images[name] = behaviour
        return self.image_url(name)

    def image_requests(self, name: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path.startswith("/img/") and (name is None or r.path == f"/img/{name}")
        ]

    # -- answers ----------------------------------------------------------------------------

    def _results(self, query: str, start: int, count: int) -> list[tuple[str, str | None]]:
        return self.results.get(query, [])[start : start + count]

    def bing(self, q: dict[str, str]) -> bytes:
        # The shipped loopback engine's page, whose results here may be hostile.
        found = self._results(q.get("q", ""), int(q.get("first", 0)), PAGE)
        return bing_results_page((url, page, "a couple") for url, page in found)

    def google(self, q: dict[str, str]) -> bytes:
        found = self._results(q.get("q", ""), int(q.get("start", 0)), 100)
        data = json.dumps([[1, [0, 0, [url, 600, 800]]] for url, _ in found])
        return f"<html><script>AF_initDataCallback({{data:{data}}});</script></html>".encode()

    def baidu(self, q: dict[str, str]) -> bytes:
        rows = [
            {"objURL": baidu_encode(url), "fromURL": baidu_encode(page) if page else ""}
            for url, page in self._results(q.get("word", ""), int(q.get("pn", 0)), 30)
        ]
        return json.dumps({"data": [*rows, {}]}).encode()

    def flickr(self, q: dict[str, str]) -> bytes:
        if q.get("method") == "flickr.photos.getSizes":
            url = self.images_by_id.get(q.get("photo_id", ""))
            if url is None:
                return json.dumps({"stat": "fail"}).encode()
            sizes = [{"label": "Medium", "source": url}, {"label": "Square", "source": url}]
            return json.dumps({"stat": "ok", "sizes": {"size": sizes}}).encode()
        page = int(q.get("page", 1))
        found = self._results(q.get("text", ""), (page - 1) * 100, 100)
        photos = []
        for url, _page in found:
            photo_id = str(abs(hash(url)) % 10**10)
            self.images_by_id[photo_id] = url
            photos.append({"id": photo_id, "owner": "12345@N00", "title": "couple"})
        return json.dumps({"stat": "ok", "photos": {"page": page, "photo": photos}}).encode()


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: EngineServer, *args: object) -> None:
        self.owner = owner
        super().__init__(*args)  # type: ignore[arg-type]

    def verify_request(self, request: object, client_address: object) -> bool:
        with self.owner._lock:
            self.owner.connections += 1
        return True


def baidu_encode(url: str) -> str:
    """Baidu's substitution cipher, the inverse of icrawler's BaiduParser._decode_url."""
    plain_to_code = {
        "a": "w",
        "b": "k",
        "c": "v",
        "d": "1",
        "e": "j",
        "f": "u",
        "g": "2",
        "h": "i",
        "i": "t",
        "j": "3",
        "k": "h",
        "l": "s",
        "m": "4",
        "n": "g",
        "o": "5",
        "p": "r",
        "q": "q",
        "r": "6",
        "s": "f",
        "t": "p",
        "u": "7",
        "v": "e",
        "w": "o",
        "1": "8",
        "2": "d",
        "3": "n",
        "4": "9",
        "5": "c",
        "6": "m",
        "7": "0",
        "8": "b",
        "9": "l",
        "0": "a",
    }
    out = []
    i = 0
    while i < len(url):
        for plain, code in ((":", "_z2C$q"), (".", "_z&e3B"), ("/", "AzdH3F")):
            if url[i] == plain:
                out.append(code)
                break
        else:
            out.append(plain_to_code.get(url[i], url[i]))
        i += 1
    return "".join(out)


def _handler(server: EngineServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):  # the shipped loopback engine's, made hostile
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = self.parsed()[1]
            host = self.headers.get("Host", "")
            # Result pages reach this server through routes; count image hosts on their own.
            slot = host if parts.path.startswith("/img/") else f"pages via {host}"
            request = Request(parts.path, query, dict(self.headers), time.monotonic(), host)
            with server._lock:
                server.requests.append(request)
                server._active[slot] = server._active.get(slot, 0) + 1
                server.max_active[slot] = max(server.max_active.get(slot, 0), server._active[slot])
            try:
                self._route(parts.path, query)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with server._lock:
                    server._active[slot] -= 1
                    request.ended = time.monotonic()

        def _route(self, path: str, query: dict[str, str]) -> None:
            if path.startswith("/img/"):
                self._image(path[len("/img/") :])
                return
            pages: dict[str, Callable[[dict[str, str]], bytes]] = {
                "/bing/images/async": server.bing,
                "/google/search": server.google,
                "/baidu/search/acjson": server.baidu,
                "/flickr/services/rest/": server.flickr,
            }
            if path in pages:
                term = query.get("q") or query.get("word") or query.get("text") or ""
                first = query.get("first", query.get("start", query.get("pn", "0")))
                if first in ("0", "1") or query.get("page") == "1":
                    time.sleep(server.page_delay.get(term, 0.0))
                kind = "application/json" if "baidu" in path or "flickr" in path else "text/html"
                body, headers = pages[path](query), {}
                if server.page_encoding == "gzip":
                    body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
                self._send(200, body, kind, headers)
                return
            if path.startswith("/site/") and path[len("/site/") :] in server.site_pages:
                self._send(200, server.site_pages[path[len("/site/") :]].encode(), "text/html")
                return
            self._send(404, b"not found", "text/plain")

        def _image(self, name: str) -> None:
            b = server.images.get(name)
            if b is None:
                self._send(404, b"no such image", "text/plain")
                return
            b.started.set()
            try:
                self._answer_image(b)
            finally:
                b.ended.set()

        def _answer_image(self, b: Behaviour) -> None:
            time.sleep(server.image_delay + b.delay)
            if b.hang:
                server.closing.wait(60)
                self.close_connection = True
                return
            if b.first:
                with server._lock:
                    status = b.first.pop(0) if b.first else None
                if status is not None:
                    headers = {"Retry-After": b.retry_after} if b.retry_after else {}
                    self._send(status, b"busy", "text/plain", headers)
                    return
            if b.drip or b.stall:
                self.send_response(b.status)
                self.send_header("Content-Type", b.content_type)
                self.send_header("Content-Length", str(len(b.body)))
                self.end_headers()
                self.wfile.flush()
                if b.stall:
                    server.closing.wait(60)
                    self.close_connection = True
                    return
                for i in range(len(b.body)):
                    self.wfile.write(b.body[i : i + 1])
                    self.wfile.flush()
                    if server.closing.wait(b.drip):
                        return
                return
            if b.endless is not None:
                self._endless(b)
                return
            self._send(b.status, b.body, b.content_type, b.headers, declare=b.declare_length)

        def _endless(self, b: Behaviour) -> None:
            """200 and a body that goes on until the client leaves (a write fails) or the
            server stops; 1 GiB at most, whatever happens."""
            self.send_response(200)
            self.send_header("Content-Type", b.content_type)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = random.Random(7).randbytes(b.chunk)
            for _ in range((1 << 30) // b.chunk):
                self.wfile.write(chunk)
                self.wfile.flush()
                if server.closing.wait(b.endless) if b.endless else server.closing.is_set():
                    return

        def _send(
            self,
            status: int,
            body: bytes,
            kind: str,
            headers: dict[str, str] | None = None,
            *,
            declare: bool = True,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if declare:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

    return Handler


# -- images -----------------------------------------------------------------------------------


def good_jpeg(seed: int, size: tuple[int, int] = (480, 360)) -> bytes:
    return f.jpeg_bytes(f.texture(seed, size), quality=88)


def webp_bytes(seed: int) -> bytes:
    out = io.BytesIO()
    f.texture(seed).save(out, "WEBP", quality=80)
    return out.getvalue()


def near_copy(seed: int) -> bytes:
    img = f.texture(seed, (480, 360)).resize((300, 225), Image.Resampling.BICUBIC)
    return f.jpeg_bytes(img, quality=70)


#: Copies in `hostile_catalogue`, each beside its original. Results are recorded as their
#: downloads finish: which of the two is recorded first, and so ``added``, depends on that.
COPY_PAIRS = (
    ("good-1.jpg", "copy-of-1.jpg"),
    ("good-2.png", "near-of-2.jpg"),
    ("hop.jpg", "good-4.jpg"),
)


def hostile_catalogue(server: EngineServer) -> dict[str, tuple[str, str | None]]:
    """Every kind of image answer, by name -> (expected outcome, expected reason)."""
    truncated = good_jpeg(901, (800, 600))
    cases: dict[str, tuple[Behaviour, str, str | None]] = {
        "good-1.jpg": (Behaviour(good_jpeg(1)), "added", None),
        "good-2.png": (Behaviour(good_jpeg(2), content_type="image/png"), "added", None),
        "copy-of-1.jpg": (Behaviour(good_jpeg(1)), "exact_duplicate", None),
        "near-of-2.jpg": (Behaviour(near_copy(2)), "near_duplicate", None),
        "truncated.jpg": (Behaviour(truncated[: len(truncated) // 2]), "failed", "truncated"),
        "page.jpg": (Behaviour(b"<html><body>Sorry</body></html>"), "failed", "not-an-image"),
        "page-as-html.jpg": (
            Behaviour(b"<html>blocked</html>", content_type="text/html"),
            "failed",
            "not-an-image",
        ),
        "bomb.png": (
            Behaviour(f.png_bomb(12_000, 12_000), content_type="image/png"),
            "failed",
            "too-many-pixels",
        ),
        "oversize.jpg": (Behaviour(random.Random(5).randbytes(3_000_000)), "failed", "too-large"),
        "oversize-chunked.jpg": (
            Behaviour(random.Random(6).randbytes(3_000_000), declare_length=False),
            "failed",
            "too-large",
        ),
        "drip.jpg": (Behaviour(good_jpeg(3)[:400], drip=0.05), "failed", "too-slow"),
        "to-file.jpg": (
            Behaviour(status=302, headers={"Location": "file:///etc/passwd"}),
            "failed",
            "bad-redirect",
        ),
        "loop.jpg": (
            Behaviour(status=302, headers={"Location": "/img/loop.jpg"}),
            "failed",
            "too-many-redirects",
        ),
        "hop.jpg": (Behaviour(status=301, headers={"Location": "/img/good-4.jpg"}), "added", None),
        "good-4.jpg": (Behaviour(good_jpeg(4)), "exact_duplicate", None),
        "missing.jpg": (
            Behaviour(b"gone", status=404, content_type="text/plain"),
            "failed",
            "http-404",
        ),
        "busy.jpg": (Behaviour(good_jpeg(5), first=[429], retry_after="1"), "added", None),
        "broken.jpg": (
            Behaviour(b"oops", status=500, content_type="text/plain"),
            "failed",
            "http-5xx",
        ),
        "webp-named.jpg": (Behaviour(webp_bytes(6)), "added", None),
        "noai.jpg": (
            Behaviour(good_jpeg(7), headers={"X-Robots-Tag": "noai"}),
            "failed",
            "robots-noai",
        ),
    }
    expected = {}
    for name, (behaviour, outcome, reason) in cases.items():
        server.add_image(name, behaviour)
        expected[name] = (outcome, reason)
    return expected


def page_of(server: EngineServer, name: str) -> str:
    return f"https://pages.example/{quote(name)}"
