"""Review speed on a catalog of 100,000 images: a page of 200 thumbnails, and one decision.

    python bench/review_speed.py [--images 100000] [--repeat 30]

Builds (once, under .bench/) a catalog of `--images` image rows with weak labels on most,
human labels on a fifth, near-duplicate groups, and a thumbnail for every image in
thumbs.db. Then, against the real ``curator review`` (its own process, on 127.0.0.1), with six
keep-alive connections as a browser opens:

* page: ``GET /api/queue/<name>?limit=200`` and the page's 200 thumbnails fetched six at a
  time (as a browser does over HTTP/1.1), at the start of the queue and 90 % of the way in;
* decision: ``POST /api/label`` for one image, the round trip.

Beside each, a bare baseline in the same run: the same rows and thumbnail blobs read straight
from SQLite, and a bare INSERT + COMMIT of one label event.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import socket
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    INSERT_EVENTS,
    INSERT_IMAGES,
    add_import_run,
    image_row,
    keep_derived,
    label_rows,
    mark_built,
    new_catalog,
    serve_review,
    sha_of,
)
from PIL import Image  # noqa: E402

from db.models import utcnow  # noqa: E402


def build(home: Path, n: int) -> None:
    db = new_catalog(home, n, also=("thumbs.db",), kind="labels")
    if db is None:
        return
    rng = random.Random(0)
    now = utcnow().isoformat()
    shas = [sha_of(i) for i in range(1, n + 1)]
    add_import_run(db, now)
    db.executemany(INSERT_IMAGES, [image_row(i, rng, now) for i in range(1, n + 1)])
    db.executemany(INSERT_EVENTS, [e for i in range(1, n + 1) for e in label_rows(i, rng, now)])
    db.commit()
    db.close()
    keep_derived(home)
    blobs = []
    for seed in range(300):
        cells = Image.new("RGB", (6, 4))
        local = random.Random(seed)
        cells.putdata([tuple(local.randrange(256) for _ in range(3)) for _ in range(24)])
        out = io.BytesIO()
        cells.resize((256, 192), Image.Resampling.BICUBIC).save(out, "JPEG", quality=75)
        blobs.append(out.getvalue())
    thumbs = sqlite3.connect(home / "thumbs.db")
    thumbs.execute(
        "CREATE TABLE IF NOT EXISTS thumbs (sha256 TEXT PRIMARY KEY, jpeg BLOB NOT NULL)"
    )
    thumbs.executemany(
        "INSERT INTO thumbs VALUES (?, ?)",
        ((sha, blobs[i % len(blobs)]) for i, sha in enumerate(shas)),
    )
    thumbs.commit()
    thumbs.close()
    mark_built(home, n, kind="labels")


def page_time(clients: list, base: str, queue: str, after: int) -> float:
    t = time.perf_counter()
    page = clients[0].get(f"{base}/api/queue/{queue}?limit=200&after={after}").json()
    shas = [item["sha256"] for item in page["items"]]
    assert shas, (queue, after)  # a full page, or the last one of a small catalog

    def fetch(index_sha: tuple[int, str]) -> int:
        index, sha = index_sha
        return len(clients[index % 6].get(f"{base}/thumbs/{sha}.jpg").content)

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(fetch, enumerate(shas)))
    return time.perf_counter() - t


def bare_page_time(home: Path, after: int) -> float:
    t = time.perf_counter()
    db = sqlite3.connect(home / "catalog.db")
    rows = db.execute(
        "SELECT id, sha256 FROM images WHERE status = 'active' AND id > ? ORDER BY id LIMIT 200",
        (after,),
    ).fetchall()
    thumbs = sqlite3.connect(home / "thumbs.db")
    for _id, sha in rows:
        thumbs.execute("SELECT jpeg FROM thumbs WHERE sha256 = ?", (sha,)).fetchone()
    db.close()
    thumbs.close()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = ROOT / ".bench" / "review-catalog"
    build(home, args.images)
    import httpx2 as httpx  # the test extra's HTTP client (Starlette's test client uses it)

    base, server = serve_review(home)
    try:
        # Like a browser: six keep-alive connections, Nagle off.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        clients = [
            httpx.Client(transport=httpx.HTTPTransport(socket_options=nodelay)) for _ in range(6)
        ]
        deep = int(args.images * 0.9)
        results: dict[str, float] = {}
        for queue, after in (
            ("new", 0),
            ("weak", 0),
            ("all", 0),
            ("all", deep),
            ("new", deep),
            ("duplicates", 0),
        ):
            page_time(clients, base, queue, after)  # warm
            times = [
                page_time(clients, base, queue, after) for _ in range(max(3, args.repeat // 5))
            ]
            results[f"page {queue} after {after}"] = statistics.median(times) * 1000
        bare = [bare_page_time(home, 0) for _ in range(args.repeat)]
        results["bare page (SQLite rows + 200 blobs)"] = statistics.median(bare) * 1000
        rng = random.Random(1)
        trips = []
        for _ in range(args.repeat * 3):
            image_id = rng.randrange(1, args.images, 25) + 1
            t = time.perf_counter()
            r = clients[0].post(
                f"{base}/api/label",
                json={"ids": [image_id], "label": "happy"},
                headers={"Origin": base},  # as the page's own requests carry
            )
            trips.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        results["decision round trip"] = statistics.median(trips) * 1000
        db = sqlite3.connect(home / "catalog.db", isolation_level=None)
        inserts = []
        for _ in range(args.repeat * 3):
            t = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO label_events (image_id, label, origin, author, created_at) "
                "VALUES (1, 'happy', 'human', 'bare', '2026-01-01')"
            )
            db.execute("COMMIT")
            inserts.append(time.perf_counter() - t)
        db.close()
        results["bare INSERT + COMMIT"] = statistics.median(inserts) * 1000
    finally:  # the server stops with the benchmark, however it ends
        server.terminate()
        server.wait(10)
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}))
        return
    print(f"catalog of {args.images:,} images; medians in milliseconds")
    for name, value in results.items():
        print(f"  {name:<42}{value:>8.1f} ms")
    first = results["page new after 0"]
    print(
        f"  page of 200 thumbnails (new queue) vs bare SQLite: "
        f"{first / results['bare page (SQLite rows + 200 blobs)']:.1f}x the bare cost"
    )
    print(
        f"  decision vs bare insert: "
        f"{results['decision round trip'] / results['bare INSERT + COMMIT']:.1f}x the bare cost"
    )


if __name__ == "__main__":
    main()
