"""curator import through the real CLI, into a real SQLite catalog and real files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from curator.config import load_settings
from curator.ingest.thumbs import ThumbStore
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows as catalog_rows

pytestmark = pytest.mark.backends


def rows(home: Path, sql: str) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url)


def json_column(value: str | dict) -> dict:
    """A JSON column as read back: text on SQLite, already decoded on PostgreSQL."""
    return value if isinstance(value, dict) else json.loads(value)


def import_json(cli, *args, home: Path | None = None, db_url: str | None = None) -> dict:
    prefix = (("--home", home) if home else ()) + (("--db-url", db_url) if db_url else ())
    result = cli(*prefix, "import", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_import_a_folder_records_images_sources_labels_and_files(cli, home, tmp_path):
    folder = tmp_path / "in"
    for i in range(6):
        f.jpeg(folder / "sub" / f"{i}.jpg", f.picture(i, (320 + 16 * i, 240)))
    (folder / "notes.txt").write_text("not an image name: ignored")
    counts = import_json(cli, folder, "--label", "happy")
    assert counts["added"] == 6 and counts["failed"] == 0 and counts["ignored_names"] == 1
    images = rows(home, "SELECT id, sha256, path, status, split FROM images")
    assert len(images) == 6
    for _id, sha, path, status, split in images:
        stored = home / path
        assert stored.is_file() and path == f"images/{sha[:2]}/{sha}.jpg"
        assert Image.open(io.BytesIO(ThumbStore(home).get(sha))).format == "JPEG"
        assert status == "active" and split in ("train", "val", "test")
    labels = rows(home, "SELECT label, origin, author FROM label_events")
    assert len(labels) == 6 and {label[:2] for label in labels} == {("happy", "import")}
    sources = rows(home, "SELECT kind, outcome, image_id FROM sources")
    assert len(sources) == 6 and all(s[0] == "file" and s[1] == "added" and s[2] for s in sources)
    run = rows(home, "SELECT kind, status, counts FROM runs")
    assert run[0][:2] == ("import", "done") and json_column(run[0][2])["added"] == 6


def test_importing_the_same_thing_twice_adds_nothing(cli, home, tmp_path):
    folder = tmp_path / "in"
    for i in range(4):
        f.jpeg(folder / f"{i}.jpg", f.picture(i))
    (folder / "bad.jpg").write_bytes(b"<html>nope</html>")
    first = import_json(cli, folder, "--label", "happy")
    before = [
        rows(home, f"SELECT count(*) FROM {t}")[0][0] for t in ("images", "sources", "label_events")
    ]
    second = import_json(cli, folder, "--label", "happy")
    after = [
        rows(home, f"SELECT count(*) FROM {t}")[0][0] for t in ("images", "sources", "label_events")
    ]
    assert first["added"] == 4 and first["failed"] == 1
    # The bad file is still not in the catalog: failed again, not "already in catalog".
    assert second["added"] == 0 and second["failed"] == 1 and second["unchanged"] == 4
    assert second["failed_by_reason"] == first["failed_by_reason"] == {"not-an-image": 1}
    assert before == after


def test_images_too_small_say_how_to_allow_them_and_stay_failed_on_a_rerun(cli, home, tmp_path):
    folder = tmp_path / "tiny"
    for i in range(200):
        f.jpeg(folder / f"{i:03d}.jpg", f.texture(i, (24 + i % 5, 20)))
    for _attempt in range(2):  # the second run: the same, not "already in catalog"
        result = cli("import", folder)
        assert result.exit_code == 0, result.stderr
        lines = [" ".join(ln.split()) for ln in result.stdout.splitlines()]
        assert "failed 200 (too-small 200)" in lines and "already in catalog 0" in lines
        assert (
            "too-small: a side under 32 pixels; to import them, run again with a lower --min-side"
        ) in lines
    assert rows(home, "SELECT count(*) FROM images") == [(0,)]
    assert rows(home, "SELECT count(*) FROM sources") == [(200,)]  # one row each, not two
    counts = import_json(cli, folder, "--min-side", "16")
    assert counts["added"] + counts["near_duplicate"] == 200 and counts["failed"] == 0


def test_names_skipped_in_folders_are_shown_first_five_then_a_count(cli, home, tmp_path):
    folder = tmp_path / "mixed"
    f.jpeg(folder / "photo.jpg", f.picture(60))
    skipped = ["a.txt", "b.mp4", "c.pdf", "d\x1b[31m.doc", "e.xmp", "f.nfo", "g"]
    for name in skipped:
        (folder / name).write_text("not a picture")
    result = cli("import", folder)
    assert result.exit_code == 0, result.stderr
    names = ", ".join(str(folder / n).replace("\x1b", "\\x1b") for n in sorted(skipped)[:5])
    assert f"(not image names: {names} and 2 more)" in result.stdout
    assert "\x1b" not in result.stdout
    counts = import_json(cli, folder)
    assert counts["ignored_names"] == 7
    assert counts["ignored_examples"] == [str(folder / n) for n in sorted(skipped)[:5]]


def test_same_content_under_another_name_is_an_exact_duplicate(cli, home, tmp_path):
    data = f.jpeg_bytes(f.picture(7))
    (tmp_path / "a.jpg").write_bytes(data)
    (tmp_path / "b.jpg").write_bytes(data)
    counts = import_json(cli, tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert counts["added"] == 1 and counts["exact_duplicate"] == 1
    assert rows(home, "SELECT count(*) FROM images")[0][0] == 1
    sources = rows(home, "SELECT outcome, image_id FROM sources ORDER BY id")
    assert [s[0] for s in sources] == ["added", "exact_duplicate"] and sources[0][1] == sources[1][
        1
    ]


def test_a_reimport_with_another_label_keeps_the_label_unless_told_to_relabel(cli, home, tmp_path):
    f.jpeg(tmp_path / "x.jpg", f.picture(8))
    import_json(cli, tmp_path / "x.jpg", "--label", "happy")
    kept = import_json(cli, tmp_path / "x.jpg", "--label", "unhappy")
    assert kept["label_conflicts"] == 1 and kept["label_conflicts_by_outcome"] == {"kept": 1}
    assert rows(home, "SELECT label, origin FROM label_events ORDER BY id") == [("happy", "import")]
    replaced = import_json(cli, tmp_path / "x.jpg", "--label", "unhappy", "--relabel")
    assert replaced["label_conflicts_by_outcome"] == {"replaced": 1}
    # Both ways on record: the relabel is a new event, never an overwrite.
    assert rows(home, "SELECT label, origin FROM label_events ORDER BY id") == [
        ("happy", "import"),
        ("unhappy", "import"),
    ]
    assert rows(home, "SELECT label, held, outcome FROM label_conflicts ORDER BY id") == [
        ("unhappy", "happy", "kept"),
        ("unhappy", "happy", "replaced"),
    ]


def test_a_near_copy_arriving_later_joins_the_group_of_its_original(cli, home, tmp_path):
    img = f.picture(9, (640, 480))
    f.jpeg(tmp_path / "small.jpg", img.resize((320, 240)))
    import_json(cli, tmp_path / "small.jpg")
    f.jpeg(tmp_path / "big.jpg", img, quality=80)
    f.jpeg(tmp_path / "flip.jpg", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((480, 360)))
    counts = import_json(cli, tmp_path / "big.jpg", tmp_path / "flip.jpg")
    assert counts["near_duplicate"] == 2
    images = rows(home, "SELECT id, width, status, duplicate_of, split FROM images ORDER BY id")
    small, big, flip = images
    # The largest is the representative; the rest point at it; all share the oldest's split.
    assert big[2] == "active" and big[3] is None
    assert small[2:4] == ("duplicate", big[0]) and flip[2:4] == ("duplicate", big[0])
    assert small[4] == big[4] == flip[4]


def test_bad_inputs_become_failed_sources_and_the_batch_goes_on(cli, home, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    good = f.jpeg(d / "good.jpg", f.picture(30))
    (d / "empty.jpg").write_bytes(b"")
    data = f.jpeg_bytes(f.picture(31, (800, 600)))
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (d / "page.jpg").write_bytes(b"<!doctype html><html><body>404</body></html>")
    (d / "bomb.png").write_bytes(f.png_bomb(12_000, 12_000))
    (d / "huge.png").write_bytes(f.png_huge_header())
    os.symlink(d / "does-not-exist.jpg", d / "dangling.jpg")
    os.symlink("/proc/self/mem", d / "unreadable.jpg")  # a regular file whose read fails (EIO)
    f.cmyk_jpeg(d / "cmyk.jpg")
    f.png16(d / "deep.png")
    f.palette_png_with_transparency(d / "palette.png")
    f.animated_gif(d / "anim.gif")
    f.exif_rotated_jpeg(d / "rotated.jpg")
    f.webp(d / "photo.webp")
    f.jpeg(d.joinpath(os.fsdecode(b"caf\xe9-\xff.jpg")), f.picture(32))
    counts = import_json(cli, d)
    assert counts["failed_by_reason"] == {
        "broken-symlink": 1,
        "empty": 1,
        "not-an-image": 1,
        "too-many-pixels": 2,
        "truncated": 1,
        "unreadable": 1,
    }
    assert counts["added"] == 8  # good, cmyk, deep, palette, anim, rotated, webp, non-UTF-8
    failed = dict(rows(home, "SELECT reason, detail FROM sources WHERE outcome = 'failed'"))
    assert all(failed.values())  # every failure has words
    added = {
        Path(loc).name for (loc,) in rows(home, "SELECT locator FROM sources WHERE outcome='added'")
    }
    assert "caf\\xe9-\\xff.jpg" in added and good.name in added
    rotated = rows(
        home,
        "SELECT i.width, i.height FROM images i JOIN sources s ON s.image_id = i.id "
        "WHERE s.locator LIKE '%rotated.jpg'",
    )
    assert rotated == [(200, 320)]


def test_a_file_without_read_permission(tmp_path):
    """Run as an ordinary user (root reads everything): nobody, when the tests run as root."""
    base = Path(tempfile.mkdtemp(prefix="curator-perm-"))
    try:
        base.chmod(0o777)
        path = f.jpeg(base / "secret.jpg", f.picture(33))
        path.chmod(0)
        env = {**os.environ, "CURATOR_HOME": str(base / "home")}
        command = [sys.executable, "-m", "curator", "import", str(path), "--json"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["failed_by_reason"] == {"unreadable": 1}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_path_that_does_not_exist_is_one_clear_error_and_changes_nothing(cli, home, tmp_path):
    f.jpeg(tmp_path / "ok.jpg", f.picture(34))
    result = cli("import", tmp_path / "ok.jpg", tmp_path / "missing")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: no such file or folder: {tmp_path / 'missing'}"
    assert "Traceback" not in result.output
    assert rows(home, "SELECT count(*) FROM images") == [(0,)]


def test_an_unknown_label_is_refused_before_anything_is_read(cli, home, tmp_path):
    f.jpeg(tmp_path / "ok.jpg", f.picture(35))
    result = cli("import", tmp_path / "ok.jpg", "--label", "ecstatic")
    assert result.exit_code == 1 and "not one of this catalog's classes" in result.stderr
    assert rows(home, "SELECT count(*) FROM images") == [(0,)]


def test_parallel_import_matches_serial_import(cli, home, tmp_path, new_db_url):
    folder = tmp_path / "in"
    for i in range(24):
        f.jpeg(folder / f"{i:02d}.jpg", f.picture(100 + i))
    serial = import_json(cli, folder, "--workers", "1")
    second = tmp_path / "h2"
    parallel = import_json(cli, folder, "--workers", "2", home=second, db_url=new_db_url(second))
    assert serial == parallel


def test_import_workers_keep_freed_memory_where_the_c_library_allows():
    """The worker processes ask glibc to keep freed memory (mallopt): it says yes on glibc,
    and nothing is asked of another C library."""
    import platform
    import sys

    from curator.ingest.importer import keep_freed_memory

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
