"""The disk fills while images are written: one line that says so, every recorded image whole,
and the same command, once there is room, ends as if the disk had never filled.

A real small file system (a tmpfs, where this user may mount one) fills for real, the catalog
file with it; elsewhere the storage layer's writes fail with ENOSPC past a quota, the way the
operating system fails them."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curator.ingest.storage import Store
from tests.faults.consistency import assert_consistent, assert_no_run_left_running
from tests.helpers import imagefiles as f
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.sql import rows

N = 40
REAL_PUT = Store.put


def pictures(folder: Path) -> Path:
    for i in range(N):
        f.jpeg(folder / f"{i:02d}.jpg", f.texture(i, (640, 480)), quality=95)
    return folder


def quota(monkeypatch: pytest.MonkeyPatch, home: Path, limit: int) -> None:
    """Writes of originals fail with ENOSPC once `limit` bytes of them are stored, as on a
    full disk (worker processes are forked, and see the same files)."""
    real = Store.put

    def put(self: Store, relpath: str, data: bytes, *, durable: bool = True) -> bool:
        stored = sum(p.stat().st_size for p in (home / "images").rglob("*") if p.is_file()) \
            if (home / "images").exists() else 0  # fmt: skip
        if stored + len(data) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.home / relpath))
        return real(self, relpath, data, durable=durable)

    monkeypatch.setattr(Store, "put", put)


def test_an_import_that_fills_the_disk_stops_in_one_line_and_the_rerun_completes(
    cli, home, tmp_path, monkeypatch
):
    folder = pictures(tmp_path / "in")
    quota(monkeypatch, home, limit=sum(p.stat().st_size for p in folder.iterdir()) // 3)
    result = cli("import", folder, "--label", "happy")
    assert result.exit_code == 1
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert "is full; nothing was lost" in result.stderr.strip().splitlines()[-1]
    recorded = rows("SELECT count(*) FROM images")[0][0]
    assert 0 < recorded < N
    assert_consistent(home, interrupted=True)
    monkeypatch.undo()
    monkeypatch.setenv("CURATOR_HOME", str(home))
    result = cli("import", folder, "--label", "happy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] + recorded == N
    assert rows("SELECT count(*), count(DISTINCT image_id) FROM label_events") == [(N, N)]
    assert_consistent(home)
    assert_no_run_left_running(f"sqlite:///{home / 'catalog.db'}")


def test_a_crawl_that_fills_the_disk_stops_in_one_line_and_the_rerun_completes(
    cli, home, monkeypatch
):
    from curator.crawl import runner

    engine = EngineServer().start()
    try:
        engine.results["happy couple"] = [
            (engine.add_image(f"{i:02d}.jpg", Behaviour(good_jpeg(7000 + i))), None)
            for i in range(N)
        ]
        real = runner.new_session
        monkeypatch.setattr(
            runner, "new_session", lambda **kw: real(**{**kw, "routes": engine.routes})
        )
        one = len(good_jpeg(7000))
        quota(monkeypatch, home, limit=one * 12)
        crawl = ("crawl", "happy couple", "--label", "happy", "--max", str(N), "--threads", "2")
        result = cli(*crawl)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "is full; nothing was lost" in result.stderr and "Traceback" not in result.output
        recorded = rows("SELECT count(*) FROM images")[0][0]
        assert 0 < recorded < N
        assert_consistent(home, interrupted=True)
        monkeypatch.setattr(Store, "put", REAL_PUT)  # room again
        result = cli(*crawl, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)["queries"]["happy couple"]
        assert summary["added"] + summary["already"] == N, summary
    finally:
        engine.stop()
    assert rows("SELECT count(*) FROM images") == [(N,)]
    assert rows("SELECT count(DISTINCT image_id) FROM label_events") == [(N,)]
    assert_consistent(home)
    assert_no_run_left_running(f"sqlite:///{home / 'catalog.db'}")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount")
def test_a_real_full_file_system_loses_nothing_and_the_rerun_completes(tmp_path):
    home = tmp_path / "small"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(home)]).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        folder = pictures(tmp_path / "in")
        env = {**os.environ, "CURATOR_HOME": str(home)}
        env.pop("CURATOR_DB_URL", None)
        command = [sys.executable, "-m", "curator", "import", str(folder), "--label", "happy"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "full" in done.stderr
        assert "Traceback" not in done.stderr
        url = f"sqlite:///{home / 'catalog.db'}"
        recorded = rows("SELECT count(*) FROM images", url)[0][0]
        assert recorded < N
        assert_consistent(home, url, interrupted=True)
        # Room again: the same command finishes the job.
        assert subprocess.run(["mount", "-o", "remount,size=64m", str(home)]).returncode == 0
        done = subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["added"] + recorded == N
        assert rows("SELECT count(*) FROM label_events", url) == [(N,)]
        assert_consistent(home, url)
        assert_no_run_left_running(url)
    finally:
        if subprocess.run(["umount", str(home)]).returncode:
            subprocess.run(["umount", "-l", str(home)])  # still busy: detach it anyway
