"""A catalog of a million images: how long the everyday operations take.

    python bench/load_million.py [--images 1000000] [--repeat 15] [--db-url POSTGRESQL_URL]

Builds (once, under .bench/) a catalog of `--images` image rows with synthetic hashes and no
files: every 25th image a near duplicate of the one before, a source row each, a query label
on 80 % of them and a human label on 20 %, a trained model's prediction for every image, and
measured properties for every image (about half of them flagged by an issue type), and a
set of vectors' rows for every active image (an outlier score, one of 4,096 clusters).
Then times, each the median of `--repeat` runs, beside a bare baseline measured in the same
run:

* import of one more image: a real JPEG through curator's one door (decode, validate, hash,
  store, thumbnail, near-duplicate check against the million, rows committed), with the
  importer already open; bare: one INSERT of an image row and its COMMIT;
* opening an importer (the near-duplicate index of the million read from its file beside
  the catalog, checked against it), once per command; and once without the file (the index
  made from the catalog's hashes and written: what the first import after an upgrade pays);
* a near-duplicate lookup (`NearIndex.query` of a hash and its mirror); bare: a vectorised
  NumPy scan of the million hashes;
* a review-queue page of 200: `new` at the start and deep in the queue, `uncertain` (ranked
  by the model's margin) at the start and half a million in, and `disagree` (ranked by each
  weak label's probability under models that did not train on it), and the issue queues
  `issues` and `issue:blurry`, `outlier` (by the vectors' outlier scores) and one cluster of
  `clusters`; bare: the 200 rows by id straight from the database;
* the review page's state (every queue's count), and for comparison the issues page and the
  issue queues' counts computed from every image's properties, and the outlier page ranked
  from the vectors' table, as they were before kept;
* `curator stats` (`catalog_stats`); bare: images counted by status.

With `--db-url`, the catalog is copied (once, by `curator db copy`'s own function) into that
empty PostgreSQL database and measured there, the bare baselines by psycopg.

Goal: each under 100 ms on SQLite and PostgreSQL on this machine, one more image under 20 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    INSERT_EVENTS,
    INSERT_IMAGES,
    add_import_run,
    image_row,
    keep_derived,
    label_rows,
    mark_built,
    new_catalog,
)
from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from curator.config import Layout, load_settings  # noqa: E402
from curator.demo.synthetic import draw_couple  # noqa: E402
from curator.ingest.dedup import near_matches  # noqa: E402
from curator.ingest.door import Ingestor, prepare_file  # noqa: E402
from curator.ingest.imaging import Limits  # noqa: E402
from curator.ingest.storage import Store  # noqa: E402
from curator.stats import catalog_stats  # noqa: E402
from db.catalog import Catalog, open_catalog  # noqa: E402
from db.copy import copy_catalog  # noqa: E402
from db.models import Base, Image, utcnow  # noqa: E402
from db.properties import issue_queue_counts, issue_ranking  # noqa: E402
from db.queues import queue_counts, review_queue  # noqa: E402
from db.rankings import ranked_page  # noqa: E402
from db.vectors import outlier_ranking  # noqa: E402

BENCH = ROOT / ".bench"
#: Each row's goal in milliseconds (100 unless named; None: paid once, no goal).
GOALS: dict[str, int | None] = {
    "import one more image (importer open)": 20,
    "open an importer, no file yet (index made, file written)": None,
}
#: Rows measured as peers of the rows above (what they replace), with no goal of their own.
PEERS = (
    "issues page ranked from the properties (not kept)",
    "issue queues' counts from the properties (not kept)",
    "outlier page ranked from the vectors (not kept)",
)


INSERT_PROPERTIES = (
    "INSERT INTO image_properties (image_id, version, sharpness, brightness_p5, brightness_p50, "
    "brightness_p95, contrast, entropy, colourfulness, aspect, short_side, graphic) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_EMBEDDED = (
    "INSERT INTO embedded (embedding_id, image_id, row, outlier, cluster, centre_distance) "
    "VALUES (1, ?, ?, ?, ?, ?)"
)
CLUSTERS = 4096


def property_row(i: int, rng: random.Random) -> tuple[object, ...]:
    """Image ``i``'s properties: blurry, dark, flat or grey for about one in six each."""
    return (
        i, "bench", rng.random() * 0.6, rng.random() * 0.5, rng.random(), 0.9, 0.3,
        3 + rng.random() * 5, rng.random() * 60, 3.2 if i % 40 == 0 else 1.33, 480, 0.0,
    )  # fmt: skip


def build(home: Path, n: int) -> None:
    db = new_catalog(home, n, kind="vectors")
    if db is None:
        return
    rng = random.Random(0)
    now = utcnow().isoformat()
    add_import_run(db, now)
    db.execute(
        "INSERT INTO models (id, status, config, training, classes, path, epochs, metrics, "
        "torch_version, curator_version, created_at, finished_at) VALUES (1, 'done', '{}', "
        "'{}', '[\"happy\", \"unhappy\"]', 'models/1', 1, '{}', 'x', 'x', ?, ?)",
        (now, now),
    )
    db.execute(
        "INSERT INTO embeddings (id, embedder, version, dim, dtype, folder, count, scored, "
        "clusters, created_at, updated_at) VALUES (1, 'model', 'bench', 64, 'float16', "
        "'vectors/bench', 0, 0, ?, ?, ?)",
        (CLUSTERS, now, now),
    )
    chunk = 50_000
    embedded = 0
    for start in range(1, n + 1, chunk):
        images, sources, events, predictions, properties, vectors = [], [], [], [], [], []
        for i in range(start, min(start + chunk, n + 1)):
            images.append(image_row(i, rng, now))
            if images[-1][10] == "active":
                vectors.append((i, embedded, rng.random(), rng.randint(1, CLUSTERS), rng.random()))
                embedded += 1
            url = f"https://example.org/{i}.jpg"
            key = hashlib.sha256(url.encode()).hexdigest()
            sources.append((1, "url", url, key, "bing", "couple", "added", i, now))
            events += label_rows(i, rng, now)
            properties.append(property_row(i, rng))
            p = rng.random()
            predictions.append(
                (
                    1,
                    i,
                    json.dumps([p, 1 - p]),
                    "happy" if p >= 0.5 else "unhappy",
                    max(p, 1 - p),
                    abs(2 * p - 1),
                    False,
                    now,
                )
            )
        db.executemany(INSERT_IMAGES, images)
        db.executemany(
            "INSERT INTO sources (run_id, kind, locator, locator_key, engine, query, outcome, "
            "image_id, info, created_at) VALUES (?,?,?,?,?,?,?,?,'{}',?)",
            sources,
        )
        db.executemany(INSERT_EVENTS, events)
        db.executemany(
            "INSERT INTO predictions (model_id, image_id, probs, predicted, confidence, margin, "
            "in_sample, created_at) VALUES (?,?,?,?,?,?,?,?)",
            predictions,
        )
        db.executemany(INSERT_PROPERTIES, properties)
        db.executemany(INSERT_EMBEDDED, vectors)
        db.commit()
        print(f"  {min(start + chunk - 1, n):,}", flush=True)
    db.execute("UPDATE embeddings SET count = ?, scored = ? WHERE id = 1", (embedded, embedded))
    db.commit()
    db.execute("ANALYZE")
    db.close()
    keep_derived(home)
    mark_built(home, n, kind="vectors")


def cursor_into(catalog: object, name: str, *, pages: int) -> str:
    """The cursor `pages` pages of 200 into a ranked queue."""
    with catalog.reading() as session:  # type: ignore[attr-defined]
        ranked = ranked_page(session, name=name, limit=pages * 200, cursor=None)
    image_id, score = ranked[-1]
    return f"{score!r}:{image_id}"


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm: the first call pays for the page cache
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


class Bare:
    """Plain SQL on the catalog's own database, beside curator's calls (sqlite3 or psycopg)."""

    def __init__(self, url: str) -> None:
        self.postgresql = url.startswith("postgresql")
        if self.postgresql:
            import psycopg

            plain = make_url(url).set(drivername="postgresql")
            self.conn: Any = psycopg.connect(
                plain.render_as_string(hide_password=False), autocommit=True
            )
        else:
            self.conn = sqlite3.connect(str(make_url(url).database), isolation_level=None)

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        if self.postgresql:
            sql = sql.replace("?", "%s").replace("BEGIN IMMEDIATE", "BEGIN")
        return self.conn.execute(sql, params)


def on_postgresql(home: Path, url: str) -> Catalog:
    """The SQLite catalog's copy in the empty PostgreSQL database at ``url`` (made once):
    `curator db copy`'s own function, then the vectors' rows, which a copy leaves behind, and
    their kept rankings, made by the first write as an embed run's scores make them."""
    catalog = open_catalog(url)
    with catalog.reading() as session:
        held = session.scalar(select(func.count()).select_from(Image))
    if held:
        return catalog
    source = open_catalog(load_settings(home=home).db_url)
    began = time.perf_counter()
    print(f"copying the catalog into {make_url(url).render_as_string()} (once)...", flush=True)
    copy_catalog(source, catalog, on_progress=_copy_progress)
    with source.engine.connect() as src, catalog.engine.begin() as dst:
        for name in ("embeddings", "embedded"):
            table = Base.metadata.tables[name]
            batch: list[dict[str, Any]] = []
            for row in src.execute(select(table)).mappings():
                batch.append(dict(row))
                if len(batch) == 10_000:
                    dst.execute(insert(table), batch)
                    batch = []
            if batch:
                dst.execute(insert(table), batch)
    print(f"  copied in {time.perf_counter() - began:.0f} s; ranking the vectors...", flush=True)
    began = time.perf_counter()
    with catalog.writing():
        pass  # the kept outlier and clusters rankings, made from the set just written
    print(f"  ranked in {time.perf_counter() - began:.0f} s", flush=True)
    with catalog.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    source.dispose()
    return catalog


def _copy_progress(table: str, done: int, total: int) -> None:
    if done == total or done % 200_000 == 0:
        print(f"  {table}: {done:,} of {total:,}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--db-url",
        help="an empty PostgreSQL database (postgresql+psycopg://...) to copy the catalog "
        "into and measure there; the default measures the SQLite catalog",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = BENCH / f"load-{args.images}"
    build(home, args.images)
    backend = "SQLite"
    if args.db_url:
        catalog = on_postgresql(home, args.db_url)
        home, backend = BENCH / f"load-{args.images}-postgresql", "PostgreSQL"
        home.mkdir(exist_ok=True)
        bare_db = Bare(args.db_url)
    else:
        catalog = open_catalog(load_settings(home=home).db_url)
        bare_db = Bare(load_settings(home=home).db_url)
    rows: dict[str, tuple[float, float | None]] = {}

    # Opening an importer: once without the index's file (made from the catalog, and
    # written), then as every later command opens it (read from the file).
    store = Store(home)
    Layout(home).near_index(10).unlink(missing_ok=True)
    began = time.perf_counter()
    Ingestor(catalog, store=store, run_id=1, threshold=10, label="happy")
    first_opening = (time.perf_counter() - began) * 1000
    openings = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        ingestor = Ingestor(catalog, store=store, run_id=1, threshold=10, label="happy")
        openings.append((time.perf_counter() - began) * 1000)
    opening = statistics.median(openings)
    # Import of one more image, through the one door, with the importer open.
    pictures = tempfile.TemporaryDirectory()
    first = random.SystemRandom().getrandbits(40)  # pictures new to the catalog on every run
    files = []
    for seed in range(first, first + args.repeat + 1):  # drawn before the clock starts
        files.append(Path(pictures.name) / f"new-{seed}.jpg")
        draw_couple(random.Random(seed), seed % 2 == 0, (640, 480)).save(files[-1])
    queue = iter(files)

    def one_import() -> None:
        ingestor.add(prepare_file(str(next(queue)), store, Limits()))
        ingestor.flush()

    bare_counter = iter(range(10**6))

    def bare_insert() -> None:
        i = next(bare_counter)
        bare_db.execute("BEGIN IMMEDIATE")
        bare_db.execute(
            "INSERT INTO runs (kind, status, params, counts, started_at) "
            "VALUES ('bench', 'done', '{}', ?, '2026-01-01')",
            (json.dumps({"i": i}),),
        )
        bare_db.execute("COMMIT")

    rows["import one more image (importer open)"] = (
        median_ms(one_import, args.repeat),
        median_ms(bare_insert, args.repeat),
    )
    rows["open an importer (near-duplicate index from its file)"] = (opening, None)
    rows["open an importer, no file yet (index made, file written)"] = (first_opening, None)
    assert ingestor.tally.as_dict().get("added", 0) >= args.repeat, ingestor.tally.as_dict()

    # A near-duplicate lookup against the million.
    index = ingestor.index
    probe = random.Random(1)
    hashes = np.array(
        [h for (h,) in bare_db.execute("SELECT phash FROM images")], dtype=np.int64
    ).view(np.uint64)

    def lookup() -> None:
        near_matches(index, phash=probe.getrandbits(63), phash_mirror=probe.getrandbits(63))

    def bare_scan() -> None:
        for value in (probe.getrandbits(63), probe.getrandbits(63)):
            x = hashes ^ np.uint64(value)
            np.flatnonzero(np.bitwise_count(x) <= 10)

    rows["near-duplicate lookup (hash and mirror)"] = (
        median_ms(lookup, args.repeat),
        median_ms(bare_scan, args.repeat),
    )

    # Review-queue pages.
    def page(name: str, after: int | str) -> Callable[[], object]:
        def run() -> object:
            with catalog.reading() as session:
                return review_queue(session, name=name, limit=200, after=after)

        return run

    def bare_page(after: int) -> Callable[[], object]:
        return lambda: bare_db.execute(
            "SELECT id, sha256, width, height, split FROM images WHERE status = 'active' "
            "AND id > ? ORDER BY id LIMIT 200",
            (after,),
        ).fetchall()

    deep = int(args.images * 0.9)
    rows["review page: new, start"] = (
        median_ms(page("new", 0), args.repeat),
        median_ms(bare_page(0), args.repeat),
    )
    rows["review page: new, 90 % in"] = (
        median_ms(page("new", deep), args.repeat),
        median_ms(bare_page(deep), args.repeat),
    )
    rows["review page: uncertain, start"] = (
        median_ms(page("uncertain", 0), args.repeat),
        median_ms(bare_page(0), args.repeat),
    )
    middle = cursor_into(catalog, "uncertain", pages=2500)
    rows["review page: uncertain, 500,000 in"] = (
        median_ms(page("uncertain", middle), args.repeat),
        median_ms(bare_page(deep), args.repeat),
    )
    rows["review page: disagree, start"] = (
        median_ms(page("disagree", 0), args.repeat),
        median_ms(bare_page(0), args.repeat),
    )
    rows["review page: disagree, 200,000 in"] = (
        median_ms(page("disagree", cursor_into(catalog, "disagree", pages=1000)), args.repeat),
        median_ms(bare_page(deep), args.repeat),
    )
    rows["review page: weak-disagree, start"] = (
        median_ms(page("weak-disagree", 0), args.repeat),
        median_ms(bare_page(0), args.repeat),
    )
    for name in ("issues", "issue:blurry", "outlier"):
        rows[f"review page: {name}, start"] = (
            median_ms(page(name, 0), args.repeat),
            median_ms(bare_page(0), args.repeat),
        )
    rows["review page: outlier, 500,000 in"] = (
        median_ms(page("outlier", cursor_into(catalog, "outlier", pages=2500)), args.repeat),
        median_ms(bare_page(deep), args.repeat),
    )
    rows["review page: clusters, the 2,000th cluster"] = (
        median_ms(page("clusters", 1999), args.repeat),
        median_ms(bare_page(deep), args.repeat),
    )
    # What the kept issue rankings replace: the queue ranked from every image's properties.
    few = max(1, args.repeat // 5)

    def live_issues() -> object:
        with catalog.reading() as session:
            return issue_ranking(session, name="issues")[:200]

    def live_issue_counts() -> object:
        with catalog.reading() as session:
            return issue_queue_counts(session)

    def live_outliers() -> object:
        with catalog.reading() as session:
            return outlier_ranking(session)[:200]

    rows["issues page ranked from the properties (not kept)"] = (median_ms(live_issues, few), None)
    rows["outlier page ranked from the vectors (not kept)"] = (median_ms(live_outliers, few), None)
    rows["issue queues' counts from the properties (not kept)"] = (
        median_ms(live_issue_counts, few),
        None,
    )

    def counts() -> object:
        with catalog.reading() as session:
            return queue_counts(session)

    rows["review page state (every queue's count)"] = (median_ms(counts, args.repeat), None)

    # curator stats.
    def stats() -> object:
        with catalog.reading() as session:
            return catalog_stats(session)

    rows["curator stats"] = (
        median_ms(stats, max(3, args.repeat // 5)),
        median_ms(
            lambda: bare_db.execute(
                "SELECT status, count(*) FROM images GROUP BY status"
            ).fetchall(),
            args.repeat,
        ),
    )
    ingestor.flush()
    catalog.dispose()
    pictures.cleanup()
    result = {
        name: {"ms": round(ms, 2), "bare_ms": None if bare is None else round(bare, 2)}
        for name, (ms, bare) in rows.items()
    }
    if args.json:
        print(json.dumps({"images": args.images, "backend": backend, "timings": result}))
        return
    print(f"catalog of {args.images:,} image rows ({backend}), median of {args.repeat}:")
    for name, (ms, bare) in rows.items():
        limit = GOALS.get(name, 100)
        goal = "once" if limit is None else "ok" if ms < limit else f"over the {limit} ms goal"
        goal = "peer" if name in PEERS else goal
        beside = f"   bare {bare:8.2f} ms ({ms / bare:6.1f}x)" if bare else ""
        print(f"  {name:<58} {ms:9.2f} ms  {goal:<21}{beside}")


if __name__ == "__main__":
    main()
