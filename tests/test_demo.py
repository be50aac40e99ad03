"""curator demo end to end, reduced: a small generated web behind the local search engine,
crawled, de-duplicated, trained twice around a simulated review, scored and explained."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

from PIL import Image

from curator.defaults import ISSUE_NAMES


def test_a_reduced_demo_runs_the_whole_job(cli, tmp_path):
    home = tmp_path / "demo home"  # a space: the browse command is quoted for a shell
    result = cli("demo", "--home", home, "--per-class", "30", "--epochs", "2", "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    browse = ["curator", "--home", str(home), "review", "--queue", "disagree"]
    assert shlex.split(found["browse"]) == browse
    truth = json.loads((home / "web" / "truth.json").read_text())
    planted = found["planted"]
    # The crawl went through the local engine: every planted broken file was rejected, with
    # its reason, and every exact copy was recognised.
    crawl = found["crawl"]
    assert set(crawl) == {"happy couple", "unhappy couple"}
    assert sum(c["failed"] for c in crawl.values()) == planted["broken"] == 3
    assert sum(c["exact_duplicate"] for c in crawl.values()) == planted["exact"]
    with sqlite3.connect(home / "catalog.db") as db:
        sources = db.execute("SELECT locator, engine, query FROM sources").fetchall()
        assert len(sources) == len(truth)
        assert {engine for _l, engine, _q in sources} == {"bing"}
        assert all(locator.startswith("http://127.0.0.1:") for locator, _e, _q in sources)
        # The reviewer's decisions are human label events, one per group looked at (its
        # near copies get the same decision).
        reviewed = db.execute(
            "SELECT count(DISTINCT e.image_id) FROM label_events e JOIN images i "
            "ON i.id = e.image_id WHERE e.author = 'demo reviewer' AND i.duplicate_of IS NULL"
        ).fetchone()[0]
        assert reviewed == found["review"]["looked_at"] > 0
        models = db.execute("SELECT status FROM models ORDER BY id").fetchall()
        assert [s for (s,) in models] == ["done", "cross-fit", "cross-fit", "done"]
        predictions = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
        assert predictions > 0
    # The noise the demo reports is the noise that was planted, as the truth counts it.
    noise, review = found["noise"], found["review"]
    assert noise["wrong_weak_labels"] > 0
    assert review["wrong_labels_fixed"] + review["wrong_labels_left"] == noise["wrong_weak_labels"]
    assert 0 <= noise["wrong_in_top_10pct"] <= noise["top_10pct"]
    curve = noise["found_along_queue"]
    assert len(curve) == noise["ranked_by_disagree"] and curve == sorted(curve)
    assert curve[noise["top_10pct"] - 1] == noise["wrong_in_top_10pct"]
    assert curve[-1] == noise["wrong_in_ranking"] <= noise["wrong_weak_labels"]
    # The outlier queue, by round 1's trunk, against the off-topic pictures planted.
    outliers = found["outliers"]
    assert outliers["off_topic"] == planted["off_topic"] > 0
    assert outliers["looked_at"] == 2 * outliers["off_topic"]
    assert 0 <= outliers["found"] <= outliers["off_topic"]
    assert 0 < review["from_outlier"] <= review["looked_at"] - review["from_disagree"]
    with sqlite3.connect(home / "catalog.db") as db:
        [(embedder, version)] = db.execute("SELECT embedder, version FROM embeddings").fetchall()
        assert embedder == "model" and version.startswith("model 1 of ")
    # Recounted from the catalog and the truth: the reviewer labeled each image it looked at
    # as the truth has it, and the wrong labels it fixed are the query labels it overruled on
    # the groups' representatives (a group's weak label is its representative's; a member
    # crawled under another query gets the group's decision too, without being a group fixed).
    by_file = {row["file"]: row for row in truth}
    with sqlite3.connect(home / "catalog.db") as db:
        origin = {}
        for image_id, locator in db.execute(
            "SELECT image_id, locator FROM sources WHERE image_id IS NOT NULL ORDER BY id"
        ):
            origin.setdefault(image_id, by_file[locator.split("/img/", 1)[1]])
        reviewed = db.execute(
            "SELECT image_id, label FROM label_events WHERE author = 'demo reviewer'"
        ).fetchall()
        # The current weak label is an image's latest query label.
        query = dict(
            db.execute(
                "SELECT image_id, label FROM label_events WHERE origin = 'query' AND label "
                "IS NOT NULL ORDER BY id"
            )
        )
        representatives = {
            i for (i,) in db.execute("SELECT id FROM images WHERE duplicate_of IS NULL")
        }
    assert all(label == (origin[i]["truth"] or "reject") for i, label in reviewed)
    overruled = sum(1 for i, label in reviewed if i in representatives and query.get(i) != label)
    assert overruled == review["wrong_labels_fixed"]
    # Two rounds, measured on the same test images against the truth.
    rounds = found["rounds"]
    assert rounds["round 1"]["n"] == rounds["round 2"]["n"] > 0
    assert found["new_photos"]["scored"] == 2 * 50
    # The report: one HTML file with its pictures beside it.
    report = Path(found["report"])
    page = report.read_text()
    for heading in (
        "Crawled",
        "Label noise",
        "Accuracy on the test split",
        "Grad-CAM",
        "The same on real data",
        "Health (curator check)",
    ):
        assert heading in page
    # The catalog's health: a count per issue type, as curator check gives it.
    health = found["health"]
    assert set(health["counts"]) == set(ISSUE_NAMES) and health["leaks"] >= 0
    names = ("confusion-round1.png", "confusion-round2.png", "noise-found.png")
    for name in (*names, *found["explained"]):
        assert name in page
        with Image.open(report.parent / name) as img:
            assert img.format == "PNG"
    assert "curator crawl" in page and "curator review" in page


def test_bad_requests_are_one_line_and_touch_nothing(cli, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    result = cli("demo", "--home", afile)
    assert result.exit_code == 1 and "is a file, not a folder" in result.stderr
    assert afile.read_text() == "mine"
    for args, words in (
        (["--weights", tmp_path / "nothing.pt"], "no such file"),
        (["--device", "tpu"], "unknown device"),
    ):
        home = tmp_path / "demo"
        result = cli("demo", "--home", home, *args)
        assert result.exit_code == 1 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not home.exists()


def test_demo_will_not_wipe_a_folder_that_is_not_a_demo_home(cli, tmp_path):
    busy = tmp_path / "mine"
    busy.mkdir()
    (busy / "thesis.txt").write_text("precious")
    result = cli("demo", "--home", busy)
    assert result.exit_code == 1 and "not a demo home" in result.stderr
    assert (busy / "thesis.txt").read_text() == "precious"


def test_the_local_engine_answers_bad_requests_without_breaking(tmp_path):
    import urllib.error
    import urllib.request

    from curator.demo.localsearch import LocalSearch

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.jpg").write_bytes(b"\xff\xd8 not much of a picture")
    (tmp_path / "secret.txt").write_text("outside the web")
    with LocalSearch(tmp_path / "web", {"q": ["a.jpg"]}) as engine:

        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(engine.base + path, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status("/img/a.jpg") == 200
        assert status("/bing/images/async?q=q&first=x") == 200  # a bad offset is the first page
        for path in ("/img/a%00.jpg", "/img/..%2Fsecret.txt", "/img/../secret.txt", "/nothing"):
            assert status(path) == 404, path
        assert status("/img/a.jpg") == 200  # and it still serves
