"""The review server against other pages in the reviewer's browser, and against anyone who
can reach its port: each attack made for real, on loopback, against the real server."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from curator.config import load_settings
from curator.review import serving
from curator.review.payload import MAX_BODY, MAX_IDS
from curator.review.server import limited
from db.catalog import open_catalog
from db.labels import label_images
from tests.helpers import imagefiles as f
from tests.helpers.review_server import get, review_client, review_process, review_server
from tests.helpers.sql import rows

JSON = "application/json"


@pytest.fixture
def catalog_home(cli, home, tmp_path) -> Path:
    for i in range(6):
        f.jpeg(tmp_path / "in" / f"{i}.jpg", f.texture(i, (320, 240)))
    assert cli("import", tmp_path / "in", "--label", "happy").exit_code == 0
    return home


@pytest.fixture
def catalog(catalog_home):
    cat = open_catalog(load_settings(home=catalog_home).db_url)
    yield cat
    cat.dispose()


@pytest.fixture
def served(catalog, catalog_home) -> Iterator[str]:
    with review_server(catalog, catalog_home) as base:
        yield base


def human_events(home: Path) -> list[tuple]:
    return rows(
        "SELECT image_id, label, author FROM label_events WHERE origin = 'human' ORDER BY id",
        load_settings(home=home).db_url,
    )


def raw(
    base: str, method: str, path: str, *, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers (Host included, when given)."""
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        names = {k.lower().replace("_", "-"): v for k, v in headers.items()}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in names.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        try:
            content = answer.read()
        except ConnectionResetError:
            # The server answered a malformed request and closed without reading the rest of
            # it: the kernel resets the connection, sometimes before the answer's body is read.
            content = b""
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, content
    finally:
        conn.close()


def sha_of(home: Path, image_id: int) -> str:
    return rows(f"SELECT sha256 FROM images WHERE id = {image_id}", f"sqlite:///{home}/catalog.db")[
        0
    ][0]


# -- 1. hosts, origins, content types, headers ---------------------------------------------


def test_a_host_the_server_is_not_bound_as_gets_nothing(served, catalog_home):
    sha = sha_of(catalog_home, 1)
    paths = ["/", "/api/state", "/api/images/1", f"/originals/{sha}", f"/thumbs/{sha}.jpg"]
    port = served.rsplit(":", 1)[1]
    for path in paths:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", ""):
            status, _h, body = raw(served, "GET", path, host=host)
            assert status == 421 and b"importer" not in body, (path, host)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST."):
            assert raw(served, "GET", path, host=host)[0] == 200, (path, host)


def test_a_page_of_another_site_cannot_change_a_label(served, catalog_home):
    body = json.dumps({"ids": [1], "label": "reject"}).encode()
    port = served.rsplit(":", 1)[1]
    own = f"http://127.0.0.1:{port}"
    refused = [
        # The form of another site: text/plain, its own Origin.
        {"content_type": "text/plain", "origin": "http://evil.example"},
        {"content_type": "application/x-www-form-urlencoded", "origin": own},
        {"content_type": "multipart/form-data; boundary=x", "origin": own},
        {"content_type": JSON, "origin": "http://evil.example"},
        {"content_type": JSON, "origin": "null"},
        {"content_type": JSON, "origin": f"http://127.0.0.1:{int(port) + 1}"},
        {"content_type": JSON, "origin": f"https://127.0.0.1:{port}"},
        {"content_type": JSON},  # neither Origin nor Sec-Fetch-Site
        {"content_type": JSON, "sec_fetch_site": "cross-site"},
        {"content_type": JSON, "sec_fetch_site": "same-site"},
    ]
    for headers in refused:
        status = raw(served, "POST", "/api/label", body=body, **headers)[0]
        assert status in (403, 415), headers
    assert human_events(catalog_home) == []
    for headers in (
        {"content_type": JSON, "origin": own},
        {
            "content_type": "Application/JSON; charset=utf-8",
            "origin": f"http://localhost:{port}",
            "host": f"localhost:{port}",
        },
        {"content_type": JSON, "sec_fetch_site": "same-origin"},
    ):
        assert raw(served, "POST", "/api/label", body=body, **headers)[0] == 200, headers
    assert [e[1] for e in human_events(catalog_home)] == ["reject"] * 3


def test_another_sites_page_cannot_embed_what_the_server_serves(served, catalog_home):
    sha = sha_of(catalog_home, 1)
    for path in ("/api/state", f"/originals/{sha}", f"/thumbs/{sha}.jpg", "/api/images/1"):
        for site in ("cross-site", "same-site"):
            status = raw(served, "GET", path, sec_fetch_site=site, sec_fetch_mode="no-cors")[0]
            assert status == 403, (path, site)
        assert raw(served, "GET", path, sec_fetch_site="same-origin")[0] == 200
    # A link from elsewhere may still open the page.
    assert raw(served, "GET", "/", sec_fetch_site="cross-site", sec_fetch_mode="navigate")[0] == 200


def test_every_answer_carries_the_security_headers(served, catalog_home):
    sha = sha_of(catalog_home, 1)
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/state"),
        ("GET", f"/originals/{sha}"),
        ("GET", "/static/review.js"),
        ("GET", "/api/queue/nope"),
        ("GET", "/api/state"),
    ):
        for host in ("127.0.0.1", "evil.example"):
            headers = raw(served, method, path, host=host)[1]
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["cross-origin-resource-policy"] == "same-origin"
    cache = raw(served, "GET", f"/originals/{sha}")[1]["cache-control"]
    assert cache.startswith("private") and "public" not in cache


# -- 1. the same, in a real browser --------------------------------------------------------


class _Attacker:
    """Another web site on loopback: serves one page of HTML."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser():
    from tests.helpers.browser import ARGS, CHROMIUM, ensure_chromium

    ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # evil.example resolves to this machine, as a rebinding name would.
        rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, rules])
        yield b
        b.close()


def test_in_a_browser_no_other_page_can_label_frame_or_read(served, catalog_home, browser):
    target = f"{served}/api/label"
    attacker = _Attacker(
        f"""<!doctype html><body>
        <form id=f method=post action="{target}" enctype="text/plain">
          <input name='{{"ids":[1],"label":"reject","x":"' value='"}}'></form>
        <script>
          fetch("{target}", {{method: "POST", mode: "no-cors",
                 body: '{{"ids":[2],"label":"reject"}}',
                 headers: {{"Content-Type": "text/plain"}}}}).finally(() => {{
            document.title = "sent"; document.getElementById("f").submit(); }});
        </script></body>"""
    )
    try:
        tab = browser.new_page()
        tab.goto(attacker.url)
        tab.wait_for_url(target, timeout=20_000)  # the form was submitted and answered
        assert "must come from the review page" in tab.content() or "json" in tab.content()
    finally:
        attacker.close()
    framing = _Attacker(f'<!doctype html><iframe src="{served}/"></iframe>')
    try:
        tab.goto(framing.url, wait_until="load")  # "load" waits for the frame too
        # The page refuses to be framed: the frame holds Chromium's error page, not ours.
        framed = [fr for fr in tab.frames if fr != tab.main_frame]
        assert len(framed) == 1 and not framed[0].url.startswith(served), framed[0].url
        # A name that resolves to 127.0.0.1 (DNS rebinding) reads nothing.
        port = served.rsplit(":", 1)[1]
        answer = tab.goto(f"http://evil.example:{port}/api/images/1")
        assert answer is not None and answer.status == 421
        assert "importer" not in tab.content()
    finally:
        framing.close()
    assert human_events(catalog_home) == []


def test_the_page_works_under_its_own_content_security_policy(served, catalog_home, browser):
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(f"{served}/?queue=new")
    tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
    tab.locator("body[data-image-id='1']").wait_for()
    tab.keyboard.press("1")
    tab.locator("body[data-image-id='2']").wait_for()
    assert tab.locator("#legend kbd").count() > 0
    assert not [e for e in errors if "Content Security Policy" in e]
    deadline = time.monotonic() + 10
    while not human_events(catalog_home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert human_events(catalog_home) == [(1, "happy", "tester")]


# -- 2. tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "a", "x" * 19])
def test_a_short_or_empty_token_is_refused_before_serving(cli, home, token):
    cli("stats")
    for host in ("0.0.0.0", "127.0.0.1"):
        result = cli("review", "--host", host, "--port", "0", "--no-browser", "--token", token)
        assert result.exit_code == 1 and "at least 20 characters" in result.stderr
        assert "Traceback" not in result.output
    assert rows("SELECT count(*) FROM runs WHERE kind = 'review'") == [(0,)]


def test_a_token_from_the_environment_stays_out_of_the_process_list(cli, home):
    cli("stats")
    token = "from-the-environment-0123456789"
    with review_process(
        home, "--host", "0.0.0.0", "--port", "0", env={"CURATOR_REVIEW_TOKEN": token}
    ) as (proc, url, _lines):
        assert f"token={token}" in url
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline
        base = url.split("/?")[0]
        assert get(f"{base}/api/state")[0] == 403
        assert get(f"{base}/api/state", **{"X-Curator-Token": token})[0] == 200


def test_the_token_leaves_the_address_and_the_cookie_is_this_servers_own(catalog, catalog_home):
    token = "t" * 24
    a = review_client(catalog, catalog_home, token=token, port=8765)
    b = review_client(catalog, catalog_home, token=token, port=8766)
    answer = a.get(f"/?token={token}&queue=all", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/?queue=all"
    name, _, rest = answer.headers["set-cookie"].partition("=")
    value = rest.split(";", 1)[0]
    assert name == "curator_review_8765" and token not in value and len(value) >= 32
    assert a.get("/api/state").status_code == 200
    # Browsers send a host's cookies to every port: another server of the same host, even
    # with the same token, takes nothing from this one's cookie.
    b.cookies.set(name, value)
    assert b.get("/api/state").status_code == 403
    b.cookies.set("curator_review_8766", value)
    assert b.get("/api/state").status_code == 403


def test_in_token_mode_a_change_still_needs_the_pages_origin(catalog, catalog_home):
    token = "t" * 24
    c = review_client(catalog, catalog_home, token=token, port=8765)
    evil = {"X-Curator-Token": token, "Origin": "http://evil.example"}
    body = {"ids": [1], "label": "reject"}
    assert c.post("/api/label", json=body, headers=evil).status_code == 403
    assert c.post("/api/label", json=body, headers={"X-Curator-Token": token}).status_code == 200


def test_in_a_browser_the_address_loses_the_token(catalog, catalog_home, browser):
    token = "browser-token-0123456789"
    with review_server(catalog, catalog_home, token=token) as base:
        tab = browser.new_page()
        tab.goto(f"{base}/?queue=new&token={token}")
        tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
        assert token not in tab.url and "queue=new" in tab.url
        tab.keyboard.press("2")
        tab.locator("body[data-image-id='2']").wait_for()
    assert human_events(catalog_home) == [(1, "unhappy", "tester")]


# -- 3. bodies and lists --------------------------------------------------------------------


def post(base: str, path: str, body: bytes, **headers: str) -> int:
    port = base.rsplit(":", 1)[1]
    return raw(
        base,
        "POST",
        path,
        body=body,
        content_type=JSON,
        origin=f"http://127.0.0.1:{port}",
        **headers,
    )[0]


def test_a_body_over_the_limit_is_refused_by_its_length_and_while_streaming(served, catalog_home):
    big = b'{"ids": [' + b"1," * (MAX_BODY // 2) + b'1], "label": "happy"}'
    assert post(served, "/api/label", big) == 413
    # Without a Content-Length: chunked, cut off at the limit as it streams in.
    port = int(served.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    try:
        conn.request(
            "POST",
            "/api/label",
            body=chunks,
            encode_chunked=True,
            headers={"Content-Type": JSON, "Origin": f"http://127.0.0.1:{port}"},
        )
        assert conn.getresponse().status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the rest was sent
    finally:
        conn.close()
    assert post(served, "/api/label", b"{}", content_length="12x") in (400, 413)
    assert human_events(catalog_home) == []


BAD_BODIES = {
    "digits-as-a-string": '{"ids": "123", "label": "happy"}',  # once labeled 1, 2 and 3
    "true": '{"ids": true, "label": "happy"}',
    "list-of-true": '{"ids": [true], "label": "happy"}',
    "float": '{"ids": [1.0], "label": "happy"}',
    "zero": '{"ids": [0], "label": "happy"}',
    "negative": '{"ids": [-1], "label": "happy"}',
    "past-64-bits": '{"ids": [9223372036854775808], "label": "happy"}',
    "overflowing-float": '{"ids": [1e400], "label": "happy"}',
    "infinity": '{"ids": [Infinity], "label": "happy"}',
    "nan": '{"ids": [NaN], "label": "happy"}',
    "string-id": '{"ids": ["1"], "label": "happy"}',
    "nested-id": '{"ids": [[1]], "label": "happy"}',
    "label-list": '{"ids": [1], "label": ["happy"]}',
    "5000-digits": '{"ids": [1' + "0" * 5000 + '], "label": "happy"}',
    "deep-list": "[" * 100_000 + "]" * 100_000,
    "deep-object": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "not-utf8": "\xff\xfe",
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_ids_must_be_a_list_of_row_ids(served, catalog_home, body):
    assert post(served, "/api/label", body.encode("latin-1")) == 400
    assert human_events(catalog_home) == []


def test_lists_are_capped_and_deduplicated(served, catalog_home):
    over = json.dumps({"ids": list(range(1, MAX_IDS + 2)), "label": "happy"}).encode()
    assert post(served, "/api/label", over) == 413
    assert (
        post(served, "/api/undo", json.dumps({"events": list(range(1, MAX_IDS + 2))}).encode())
        == 413
    )
    same = json.dumps({"ids": [1] * 50 + [2], "label": "happy"}).encode()
    assert post(served, "/api/label", same) == 200
    assert human_events(catalog_home) == [(1, "happy", "tester"), (2, "happy", "tester")]
    # The most a request may name is accepted, and every one of them is looked up.
    full = json.dumps({"ids": list(range(1, MAX_IDS + 1)), "label": "happy"}).encode()
    assert post(served, "/api/label", full) == 404  # image 7 and on are not in the catalog


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/99999999999999999999",
        "/api/images/9223372036854775808",
        "/api/explain/99999999999999999999.png",
        "/api/queue/new?after=99999999999999999999",
        "/api/queue/new?after=-5",
        "/api/queue/new?after=nan:1",
        "/api/queue/new?after=inf:1",
        "/api/queue/new?after=0.5:99999999999999999999",
        "/api/queue/new?limit=1e9",
    ],
)
def test_numbers_in_the_address_out_of_range_are_a_clean_answer(served, path):
    status = raw(served, "GET", path)[0]
    assert status in (400, 404, 409), (path, status)


# -- 4. undo --------------------------------------------------------------------------------


def test_undo_withdraws_only_this_servers_own_decisions(catalog, catalog_home):
    ann = review_client(catalog, catalog_home, author="ann")
    bob = review_client(catalog, catalog_home, author="bob")
    hers = ann.post("/api/label", json={"ids": [1], "label": "unhappy"}).json()["events"]
    undone = bob.post("/api/undo", json={"events": hers}).json()
    assert undone["undone"] == 0 and undone["skipped"] == hers
    with catalog.writing() as session:  # a decision made from the command line
        cli_event = label_images(session, image_ids=[2], label="reject", author="carl")[0].id
    assert ann.post("/api/undo", json={"events": [cli_event]}).json()["undone"] == 0
    assert human_events(catalog_home) == [(1, "unhappy", "ann"), (2, "reject", "carl")]
    assert ann.post("/api/undo", json={"events": hers}).json()["undone"] == 1


def test_one_undo_request_never_undoes_its_own_undo(catalog, catalog_home):
    c = review_client(catalog, catalog_home)
    c.post("/api/label", json={"ids": [3], "label": "happy"})
    event = c.post("/api/label", json={"ids": [3], "label": "unhappy"}).json()["events"][0]
    # event + 1 is the id the undo of `event` is about to take.
    answer = c.post("/api/undo", json={"events": [event, event + 1, event]}).json()
    assert answer["undone"] == 1 and answer["labels"]["3"]["label"] == "happy"
    assert [e[1] for e in human_events(catalog_home)] == ["happy", "unhappy", "happy"]


# -- 5. slow connections --------------------------------------------------------------------


def _half_sent(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_half_sent_requests_are_dropped_and_never_crowd_out_the_reviewer(cli, home, tmp_path):
    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    cli("import", tmp_path / "a.jpg")
    with review_process(home, "--port", "0") as (proc, url, _lines):
        base = url.split("/?")[0]
        port = int(base.rsplit(":", 1)[1])
        socks = _half_sent(port, 300)
        try:
            # Over the connection limit: the oldest idle ones make room for the reviewer.
            assert get(f"{base}/api/state")[0] == 200
            open_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            assert open_fds < serving.MAX_CONNECTIONS + 64
            # And each one is closed once its headers are overdue.
            last = socks[-1]
            assert _closed_by_server(last, serving.HEADER_SECONDS + 10)
        finally:
            for s in socks:
                s.close()
        assert get(f"{base}/api/state")[0] == 200


def test_a_connection_dripping_its_headers_is_closed_at_the_deadline(catalog, catalog_home):
    limits = serving.Limits(header_seconds=1.0, max_connections=8)
    with review_server(catalog, catalog_home, limits=limits) as base:
        port = int(base.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /api/state HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # a byte every 0.1 s: never an idle gap, never a whole request
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_server(s, 0.1):
                closed = True
                break
        s.close()
        assert closed
        # A kept-alive connection between two requests gets the same time, and no more.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/health")
        assert conn.getresponse().read() == b'{"ok":true}'
        assert _closed_by_server(conn.sock, 5.0)
        conn.close()


def test_failing_accepts_are_logged_once_a_minute_at_most(caplog):
    handler = serving._QuietAccept()
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING, logger="curator.review"):
            for _ in range(500):
                handler.handle(
                    loop,
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                    },
                )
    finally:
        loop.close()
    lines = [r for r in caplog.records if "Too many open files" in r.getMessage()]
    assert len(lines) == 1


# -- 6. Grad-CAM floods ----------------------------------------------------------------------


def test_a_flood_of_slow_requests_is_queued_then_refused_not_run_at_once():
    release = asyncio.Event()
    running = 0
    most = 0

    async def slow(request: Request) -> Response:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return JSONResponse({"ok": True})

    gate = limited(slow, running=1, waiting=4)

    async def flood() -> list[int]:
        calls = [asyncio.ensure_future(gate(None)) for _ in range(57)]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        refused = [c for c in calls if c.done()]
        release.set()
        answers = await asyncio.gather(*calls)
        assert len(refused) == 52
        return [a.status_code for a in answers]

    statuses = asyncio.run(flood())
    assert statuses.count(200) == 5 and statuses.count(429) == 52 and most == 1
