"""A search engine on 127.0.0.1, for the demo: it answers in Bing's result-page format and
serves the pictures it lists, so `curator demo` crawls through the same code as a real crawl
(only the address of www.bing.com differs).

    GET /bing/images/async?q=QUERY&first=N   20 result tiles, as Bing's async image search
                                             answers (the format icrawler's parser reads)
    GET /img/NAME                            a picture, with its content type (broken ones
                                             as they are: truncated, empty, an HTML page)
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

PAGE = 20


def bing_results_page(tiles: Iterable[tuple[str, str | None, str]]) -> bytes:
    """A page of Bing's async image results, as icrawler's Bing parser reads it: one tile a
    result, its (image URL, page URL, title) in the ``m`` attribute's JSON."""
    html_tiles = []
    for murl, purl, title in tiles:
        meta = json.dumps({"murl": murl, "purl": purl, "t": title}, separators=(",", ":"))
        html_tiles.append(
            f'<div class="imgpt"><a class="iusc" m="{html.escape(meta, quote=True)}" '
            f'href="/images/search?view=detail"><img src="/th?id=x"></a></div>'
        )
    return f"<html><body><div id='mmComponent'>{''.join(html_tiles)}</div></body></html>".encode()


class LocalSearch:
    """Results per query (lists of files under ``root``), served on a free loopback port."""

    def __init__(self, root: Path, results: dict[str, list[str]]) -> None:
        self.root = root
        self.results = results
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def routes(self) -> dict[str, str]:
        """What the crawl's HTTP session substitutes for the real engine's host."""
        return {"www.bing.com": f"{self.base}/bing"}

    def __enter__(self) -> LocalSearch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def page(self, query: str, first: int) -> bytes:
        return bing_results_page(
            (f"{self.base}/img/{quote(name)}", f"{self.base}/pages/{quote(name)}.html", query)
            for name in self.results.get(query, [])[first : first + PAGE]
        )

    def picture(self, name: str) -> tuple[bytes, str] | None:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            return None
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.read_bytes(), kind


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive HTTP/1.1 handler that logs nothing, and answers a body whole."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def parsed(self) -> tuple[str, dict[str, str]]:
        """The request's path and its query's first values."""
        parts = urlsplit(self.path)
        return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _handler(engine: LocalSearch) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path, query = self.parsed()
            try:
                if path == "/bing/images/async":
                    text = query.get("first", "0")
                    first = int(text) if text.isdigit() else 0
                    self._send(200, engine.page(query.get("q", ""), first), "text/html")
                elif path.startswith("/img/"):
                    found = engine.picture(unquote(path[len("/img/") :]))
                    if found is None:
                        self._send(404, b"not found", "text/plain")
                    else:
                        self._send(200, *found)
                else:
                    self._send(404, b"not found", "text/plain")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except (ValueError, OSError):  # a name no file can have (a NUL byte, say)
                self._send(404, b"not found", "text/plain")

    return Handler
