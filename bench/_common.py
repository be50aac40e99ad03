"""What the benchmarks share: catalogs of synthetic rows built straight into SQLite (the
schema made by curator's migrations, the kept counts by its triggers), and the real review
server started as users start it."""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curator.config import load_settings  # noqa: E402
from db.catalog import open_catalog  # noqa: E402
from db.images import split_for  # noqa: E402

#: One image row: every column the images table asks for on insert, in this order.
INSERT_IMAGES = (
    "INSERT INTO images (id, sha256, phash, phash_mirror, hash_version, width, height, "
    "format, bytes, path, status, duplicate_of, split, run_id, created_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_EVENTS = (
    "INSERT INTO label_events (image_id, label, origin, author, created_at) VALUES (?,?,?,?,?)"
)


def add_import_run(db: sqlite3.Connection, now: str) -> None:
    """Run 1, the import that the synthetic rows say made them."""
    db.execute(
        "INSERT INTO runs (id, kind, status, params, counts, started_at) "
        "VALUES (1, 'import', 'done', '{}', '{}', ?)",
        (now,),
    )


def sha_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _marker(home: Path, n: int, kind: str) -> Path:
    return home / (f".built-{n}-{kind}" if kind else f".built-{n}")


def new_catalog(
    home: Path, n: int, *, also: tuple[str, ...] = (), kind: str = ""
) -> sqlite3.Connection | None:
    """A fresh catalog file made by the migrations, and a raw connection to fill it; None
    when the catalog of ``n`` rows (of this ``kind``: what its builder fills) was built
    before (its marker is there). ``also`` names other files of the home to start afresh."""
    if _marker(home, n, kind).exists():
        return None
    home.mkdir(parents=True, exist_ok=True)
    for name in ("catalog.db", *also):
        (home / name).unlink(missing_ok=True)
    print(f"building a catalog of {n:,} image rows in {home} (once)...", flush=True)
    open_catalog(load_settings(home=home).db_url).dispose()  # the schema, by the migrations
    db = sqlite3.connect(home / "catalog.db")
    db.execute("PRAGMA journal_mode=WAL")
    return db


def keep_derived(home: Path) -> None:
    """After rows written straight into SQLite (the tallies kept by its triggers): make the
    group labels and the rankings that curator's write functions keep, once."""
    from db.grouplabels import rebuild as rebuild_group_labels
    from db.rankings import rebuild as rebuild_rankings

    catalog = open_catalog(load_settings(home=home).db_url)
    with catalog.writing() as session:
        rebuild_group_labels(session)
    with catalog.writing() as session:
        rebuild_rankings(session)
    catalog.dispose()


def mark_built(home: Path, n: int, *, kind: str = "") -> None:
    _marker(home, n, kind).write_text("ok")


def image_row(i: int, rng: random.Random, now: str) -> tuple[Any, ...]:
    """Image ``i``: a 640 x 480 JPEG's row, random hashes, a near-duplicate group every 25."""
    sha = sha_of(i)
    dup = i - 1 if i % 25 == 0 else None
    return (
        i, sha, rng.getrandbits(63), rng.getrandbits(63), "phash64-v1", 640, 480, "JPEG",
        50_000, f"images/{sha[:2]}/{sha}.jpg", "duplicate" if dup else "active", dup,
        split_for(sha), 1, now,
    )  # fmt: skip


def label_rows(i: int, rng: random.Random, now: str) -> list[tuple[Any, ...]]:
    """Image ``i``'s label events: a query's label for 80 %, a person's for 20 %."""
    rows = []
    if rng.random() < 0.8:
        rows.append((i, rng.choice(["happy", "unhappy"]), "query", "crawl", now))
    if rng.random() < 0.2:
        rows.append((i, rng.choice(["happy", "unhappy"]), "human", "anna", now))
    return rows


def serve_review(home: Path, *args: str) -> tuple[str, subprocess.Popen[str]]:
    """The real ``curator review`` command, in its own process as it runs for users: its
    base address and the process."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "curator", "--home", str(home), "review", "--no-browser",
            "--port", "0", "--author", "bench", *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"open (http://[0-9.]+:[0-9]+)/", line)
        if match:
            return match.group(1), proc
    raise SystemExit("curator review did not start")
