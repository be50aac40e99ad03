"""Content-Encoding: gzip and deflate bodies are decoded within the byte cap on their decoded
size; other codings, corrupt streams and decompression bombs are refused with their reason."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
import tracemalloc
import zlib
from functools import cache
from pathlib import Path

import pytest

from curator.crawl import runner
from curator.crawl.encoding import (
    CorruptEncoding,
    DecodedTooLarge,
    UnsupportedEncoding,
    decoder_for,
)
from curator.crawl.http import FetchPolicy
from curator.crawl.runner import CrawlOptions
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import crawl_home

CAP = 2_000_000
POLICY = FetchPolicy(read_timeout=3, deadline=10, retries=0, max_bytes=CAP)
PLAIN = good_jpeg(4000)


@cache
def bomb(decoded: int = 200 * 1024 * 1024) -> bytes:
    """A gzip stream of zeros: a few hundred kilobytes that decode to ``decoded`` bytes."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join(z.compress(block) for _ in range(decoded // len(block))) + z.flush()


def deflate(data: bytes, *, raw: bool = False) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def decode(coding: str | None, body: bytes, limit: int = CAP, step: int = 4096) -> bytes:
    decoder = decoder_for(coding, limit)
    out = [piece for i in range(0, len(body), step) for piece in decoder.feed(body[i : i + step])]
    decoder.finish()
    return b"".join(out)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("x-gzip", gzip.compress(PLAIN)),
        ("GZip", gzip.compress(PLAIN)),
        ("gzip, identity", gzip.compress(PLAIN)),
        ("deflate", deflate(PLAIN)),
        ("deflate", deflate(PLAIN, raw=True)),  # what some servers send as deflate
        ("identity", PLAIN),
        (None, PLAIN),
        ("gzip", gzip.compress(PLAIN[:5000]) + gzip.compress(PLAIN[5000:])),  # two members
        ("gzip", gzip.compress(PLAIN) + bytes(64)),  # padding after the stream, dropped
    ],
)
def test_codings_decode_to_the_plain_bytes(coding, body):
    assert decode(coding, body) == PLAIN
    assert decode(coding, body, step=1) == PLAIN


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "gzip, gzip", "x-foo"])
def test_other_codings_are_refused_by_name(coding):
    with pytest.raises(UnsupportedEncoding, match="gzip and deflate"):
        decoder_for(coding, CAP)


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(PLAIN)[: len(PLAIN) // 2],  # cut short
        gzip.compress(PLAIN)[:-4] + b"\0\0\0\0",  # a wrong length in the trailer
        b"\x1f\x8b\x08\x00" + bytes(range(200)),  # a header, then garbage
        b"plainly not gzip at all",
    ],
)
def test_a_corrupt_stream_is_refused(body):
    with pytest.raises(CorruptEncoding):
        decode("gzip", body)


def test_a_bomb_is_refused_without_holding_more_than_the_cap():
    body = bomb()
    assert len(body) < 1_000_000
    decoder = decoder_for("gzip", CAP)
    tracemalloc.start()
    try:
        with pytest.raises(DecodedTooLarge, match="more than 2,000,000 bytes"):
            for i in range(0, len(body), 65536):
                decoder.feed(body[i : i + 65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < CAP + 1_000_000  # the cap's worth of zeros, and zlib's step


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def by_name(home: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(home / "catalog.db") as db:
        found = db.execute(
            "SELECT s.locator, s.outcome, s.reason, i.sha256 FROM sources s "
            "LEFT JOIN images i ON i.id = s.image_id"
        )
        return {Path(loc).name: (outcome, reason, sha) for loc, outcome, reason, sha in found}


def test_encoded_images_through_the_cli(tmp_path, server, monkeypatch, cli):
    cases = {
        "gzip.jpg": (gzip.compress(PLAIN), "gzip"),
        "x-gzip.jpg": (gzip.compress(good_jpeg(4001)), "x-gzip"),
        "deflate.jpg": (deflate(good_jpeg(4002)), "deflate"),
        "bomb.jpg": (bomb(), "gzip"),
        "brotli.jpg": (good_jpeg(4003), "br"),  # whatever it holds, it is not ours to read
        "stacked.jpg": (gzip.compress(gzip.compress(good_jpeg(4004))), "gzip, gzip"),
        "corrupt.jpg": (gzip.compress(good_jpeg(4005))[:-100], "gzip"),
    }
    for name, (body, coding) in cases.items():
        server.add_image(name, Behaviour(body, headers={"Content-Encoding": coding}))
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(server.image_url(name) for name in cases) + "\n")
    real = runner.new_session
    monkeypatch.setattr(runner, "new_session", lambda **kw: real(**{**kw, "routes": server.routes}))
    args = ("crawl", listing, "--engine", "urls", "--max-bytes", CAP, "--retries", 0, "--json")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    got = by_name(tmp_path / "home")
    assert got["gzip.jpg"] == ("added", None, hashlib.sha256(PLAIN).hexdigest())
    assert got["x-gzip.jpg"][:2] == got["deflate.jpg"][:2] == ("added", None)
    assert got["bomb.jpg"][:2] == ("failed", "too-large")
    assert got["brotli.jpg"][:2] == got["stacked.jpg"][:2] == ("failed", "unsupported-encoding")
    assert got["corrupt.jpg"][:2] == ("failed", "corrupt-encoding")
    summary = json.loads(result.stdout)["queries"][str(listing)]
    assert summary["added"] == 3
    # Only what can be decoded is asked for (requests would offer br and zstd where their
    # packages are installed).
    assert {r.headers["Accept-Encoding"] for r in server.requests} == {"gzip, deflate"}


def test_a_gzip_encoded_result_page_is_parsed(tmp_path, server):
    server.page_encoding = "gzip"
    server.results["couple"] = [
        (server.add_image(f"p{i}.jpg", Behaviour(good_jpeg(4100 + i))), None) for i in range(3)
    ]
    options = CrawlOptions(routes=server.routes, policy=POLICY, limits=Limits(max_bytes=CAP))
    summary = crawl_home(tmp_path / "home", ["couple"], options)["couple"]
    assert summary["added"] == 3 and summary["pages"] >= 1 and summary["pages_failed"] == 0
    page = next(r for r in server.requests if r.path == "/bing/images/async")
    assert page.headers["Accept-Encoding"] == "gzip, deflate"
