"""A catalog of a million images: how long the everyday operations take.

    python bench/load_million.py [--images 1000000] [--repeat 15]

Builds (once, under .bench/) a catalog of `--images` image rows with synthetic hashes and no
files: every 25th image a near duplicate of the one before, a source row each, a query label
on 80 % of them and a human label on 20 %, a trained model's prediction for every image, and
measured properties for every image (about half of them flagged by an issue type).
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
  `issues` and `issue:blurry`; bare: the 200 rows by id straight from SQLite;
* the review page's state (every queue's count), and for comparison the issues page and the
  issue queues' counts computed from every image's properties, as they were before kept;
* `curator stats` (`catalog_stats`); bare: images counted by status.

Goal: each under 100 ms on SQLite on this machine, one more image under 20 ms.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    INSERT_EVENTS,
    INSERT_IMAGES,
    add_import_run,
    image_row,
    label_rows,
    mark_built,
    new_catalog,
)

from curator.config import Layout, load_settings  # noqa: E402
from curator.demo.synthetic import draw_couple  # noqa: E402
from curator.ingest.dedup import near_matches  # noqa: E402
from curator.ingest.door import Ingestor, prepare_file  # noqa: E402
from curator.ingest.imaging import Limits  # noqa: E402
from curator.ingest.storage import Store  # noqa: E402
from curator.stats import catalog_stats  # noqa: E402
from db.catalog import open_catalog  # noqa: E402
from db.grouplabels import rebuild as rebuild_group_labels  # noqa: E402
from db.models import utcnow  # noqa: E402
from db.properties import issue_queue_counts, issue_ranking  # noqa: E402
from db.queues import queue_counts, review_queue  # noqa: E402
from db.rankings import ranked_page  # noqa: E402
from db.rankings import rebuild as rebuild_rankings  # noqa: E402

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
)


INSERT_PROPERTIES = (
    "INSERT INTO image_properties (image_id, version, sharpness, brightness_p5, brightness_p50, "
    "brightness_p95, contrast, entropy, colourfulness, aspect, short_side, graphic, windows) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def property_row(i: int, rng: random.Random) -> tuple[object, ...]:
    """Image ``i``'s properties: blurry, dark, flat or grey for about one in six each."""
    return (
        i, "bench", rng.random() * 0.6, rng.random() * 0.5, rng.random(), 0.9, 0.3,
        3 + rng.random() * 5, rng.random() * 60, 3.2 if i % 40 == 0 else 1.33, 480, 0.0,
        bytes(8 * 16),
    )  # fmt: skip


def build(home: Path, n: int) -> None:
    db = new_catalog(home, n, kind="properties")
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
    chunk = 50_000
    for start in range(1, n + 1, chunk):
        images, sources, events, predictions, properties = [], [], [], [], []
        for i in range(start, min(start + chunk, n + 1)):
            images.append(image_row(i, rng, now))
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
        db.commit()
        print(f"  {min(start + chunk - 1, n):,}", flush=True)
    db.execute("ANALYZE")
    db.close()
    # Rows written straight into SQLite: the tallies were kept by the triggers, the group
    # labels and rankings curator's write functions keep are made here, once.
    catalog = open_catalog(load_settings(home=home).db_url)
    with catalog.writing() as session:
        rebuild_group_labels(session)
    with catalog.writing() as session:
        rebuild_rankings(session)
    catalog.dispose()
    mark_built(home, n, kind="properties")


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = BENCH / f"load-{args.images}"
    build(home, args.images)
    settings = load_settings(home=home)
    catalog = open_catalog(settings.db_url)
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

    bare_db = sqlite3.connect(home / "catalog.db", isolation_level=None)
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
    for name in ("issues", "issue:blurry"):
        rows[f"review page: {name}, start"] = (
            median_ms(page(name, 0), args.repeat),
            median_ms(bare_page(0), args.repeat),
        )
    # What the kept issue rankings replace: the queue ranked from every image's properties.
    few = max(1, args.repeat // 5)

    def live_issues() -> object:
        with catalog.reading() as session:
            return issue_ranking(session, name="issues")[:200]

    def live_issue_counts() -> object:
        with catalog.reading() as session:
            return issue_queue_counts(session)

    rows["issues page ranked from the properties (not kept)"] = (median_ms(live_issues, few), None)
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
        print(json.dumps({"images": args.images, "timings": result}))
        return
    print(f"catalog of {args.images:,} image rows (SQLite), median of {args.repeat}:")
    for name, (ms, bare) in rows.items():
        limit = GOALS.get(name, 100)
        goal = "once" if limit is None else "ok" if ms < limit else f"over the {limit} ms goal"
        goal = "peer" if name in PEERS else goal
        beside = f"   bare {bare:8.2f} ms ({ms / bare:6.1f}x)" if bare else ""
        print(f"  {name:<50} {ms:9.2f} ms  {goal:<21}{beside}")


if __name__ == "__main__":
    main()
