"""The review server through Starlette's test client, on a real catalog."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from curator.config import load_settings
from curator.defaults import ISSUE_NAMES
from curator.ingest.thumbs import ThumbStore
from db.catalog import open_catalog
from tests.helpers import imagefiles as f
from tests.helpers.review_server import review_client
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


@pytest.fixture
def catalog_home(cli, home, tmp_path) -> Path:
    for i in range(6):
        f.jpeg(tmp_path / "happy" / f"h{i}.jpg", f.texture(i, (320, 240)))
    for i in range(4):
        f.jpeg(tmp_path / "plain" / f"p{i}.jpg", f.texture(100 + i, (320, 240)))
    f.jpeg(tmp_path / "plain" / "copy.jpg", f.texture(100, (200, 150)))  # near copy of p0
    assert cli("import", tmp_path / "happy", "--label", "happy").exit_code == 0
    assert cli("import", tmp_path / "plain").exit_code == 0
    return home


JSON = {"Content-Type": "application/json"}


def client(home: Path, token: str | None = None, author: str = "ann", **options) -> TestClient:
    catalog = open_catalog(load_settings(home=home).db_url)
    return review_client(catalog, home, author=author, token=token, **options)


def events(home: Path) -> list[tuple]:
    return rows(
        "SELECT image_id, label, origin, author FROM label_events WHERE origin = 'human' "
        "ORDER BY id",
        load_settings(home=home).db_url,
    )


def test_state_lists_classes_keys_and_queues(catalog_home):
    state = client(catalog_home).get("/api/state").json()
    assert state["classes"] == ["happy", "unhappy"]
    assert state["keys"] == {
        "1": "happy",
        "2": "unhappy",
        "h": "happy",
        "u": "unhappy",
        "x": "reject",
    }
    queues = dict(state["queues"])
    issues = {k: queues.pop(k) for k in list(queues) if k == "issues" or k.startswith("issue:")}
    assert set(issues) == {"issues", *(f"issue:{name}" for name in ISSUE_NAMES)}
    assert all(isinstance(n, int) and 0 <= n <= issues["issues"] for n in issues.values())
    assert queues == {
        "new": 10,
        "weak": 6,
        "all": 10,
        "duplicates": 1,
        "conflicts": 0,
        "uncertain": None,
        "disagree": None,
        "weak-disagree": None,
        "outlier": None,
        "clusters": None,
        "off-query": None,
    }
    assert state["why"]["outlier"] == "needs the pictures' vectors: run curator embed"
    assert "curator embed --embedder clip" in state["why"]["off-query"]


def test_queues_page_and_group(catalog_home):
    c = client(catalog_home)
    new = c.get("/api/queue/new?limit=4").json()
    assert [i["id"] for i in new["items"]] == [1, 2, 3, 4] and new["next"] == 4
    rest = c.get(f"/api/queue/new?limit=50&after={new['next']}").json()
    assert len(rest["items"]) == 6 and rest["next"] is None
    weak = c.get("/api/queue/weak").json()["items"]
    assert {i["origin"] for i in weak} == {"import"} and len(weak) == 6
    dups = c.get("/api/queue/duplicates").json()["items"]
    assert len(dups) == 1 and len(dups[0]["duplicates"]) == 1
    assert c.get("/api/queue/uncertain").status_code == 409
    assert c.get("/api/queue/nope").status_code == 404


def test_a_decision_is_a_new_event_and_leaves_the_new_queue(catalog_home):
    c = client(catalog_home)
    result = c.post("/api/label", json={"ids": [1, 2], "label": "unhappy"}).json()
    assert result["labels"]["1"] == {
        "label": "unhappy",
        "origin": "human",
        "conflict": False,
        "own": "unhappy",
        "own_origin": "human",
    }
    assert events(catalog_home) == [(1, "unhappy", "human", "ann"), (2, "unhappy", "human", "ann")]
    new_ids = [i["id"] for i in c.get("/api/queue/new").json()["items"]]
    assert 1 not in new_ids and 2 not in new_ids and len(new_ids) == 8
    # A group is labeled through its representative: its near copy needs no decision.
    group = c.get("/api/queue/duplicates").json()["items"][0]
    c.post("/api/label", json={"ids": [group["id"]], "label": "reject"})
    assert group["id"] not in [i["id"] for i in c.get("/api/queue/new").json()["items"]]


def test_undo_restores_and_is_an_event_too(catalog_home):
    c = client(catalog_home)
    first = c.post("/api/label", json={"ids": [3], "label": "happy"}).json()["events"]
    second = c.post("/api/label", json={"ids": [3], "label": "unhappy"}).json()["events"]
    undone = c.post("/api/undo", json={"events": second}).json()
    assert undone["undone"] == 1 and undone["labels"]["3"]["label"] == "happy"
    # Undoing the first decision now would undo a decision that is no longer the latest.
    assert c.post("/api/undo", json={"events": first}).json()["skipped"] == first
    assert [e[1] for e in events(catalog_home)] == ["happy", "unhappy", "happy"]


def test_bad_requests_change_nothing(catalog_home):
    c = client(catalog_home)
    assert c.post("/api/label", json={"ids": [1, 999], "label": "happy"}).status_code == 404
    assert c.post("/api/label", json={"ids": [1], "label": "ecstatic"}).status_code == 400
    assert c.post("/api/label", content=b"not json", headers=JSON).status_code == 400
    assert c.post("/api/label", json=["ids"]).status_code == 400
    assert c.post("/api/label", json={"label": "happy"}).status_code == 400
    assert c.get("/api/images/999").status_code == 404
    assert events(catalog_home) == []


def test_thumbnails_and_originals_are_served_and_nothing_else(catalog_home):
    c = client(catalog_home)
    item = c.get("/api/queue/all").json()["items"][0]
    thumb = c.get(f"/thumbs/{item['sha256']}.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "immutable" in thumb.headers["cache-control"]
    assert c.get(f"/originals/{item['sha256']}").content[:2] == b"\xff\xd8"
    for path in (
        "/originals/..%2F..%2Fcatalog.db",
        "/originals/../catalog.db",
        "/thumbs/" + "0" * 64 + ".jpg",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/originals/" + "g" * 64,
    ):
        assert c.get(path).status_code == 404, path


def test_a_missing_thumbnail_is_made_again(catalog_home):
    c = client(catalog_home)
    sha = c.get("/api/queue/all").json()["items"][0]["sha256"]
    with sqlite3.connect(catalog_home / "thumbs.db") as db:
        db.execute("DELETE FROM thumbs WHERE sha256 = ?", (sha,))
    assert c.get(f"/thumbs/{sha}.jpg").status_code == 200
    assert sha in ThumbStore(catalog_home)


def test_off_loopback_every_request_needs_the_token(catalog_home):
    token = "s3cret-s3cret-s3cret-1"
    c = client(catalog_home, token=token, port=8765)
    for path in ("/", "/api/state", "/api/queue/new", "/static/review.js"):
        assert c.get(path).status_code == 403, path
    assert c.post("/api/label", json={"ids": [1], "label": "happy"}).status_code == 403
    assert c.get("/api/state?token=wrong").status_code == 403
    assert c.get("/api/state", headers={"X-Curator-Token": token}).status_code == 200
    page = c.get("/?token=" + token + "&queue=weak", follow_redirects=False)
    # The cookie is set, and the address loses the token at once.
    assert page.status_code == 303 and page.headers["location"] == "/?queue=weak"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("curator_review_8765=") and token not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.get("/api/state").status_code == 200  # the cookie set by the page
    assert events(catalog_home) == []


def test_two_reviewers_and_an_import_at_once(catalog_home, cli, tmp_path):
    a, b = client(catalog_home, author="ann"), client(catalog_home, author="bob")
    for i in range(20):
        f.jpeg(tmp_path / "more" / f"m{i}.jpg", f.texture(500 + i, (320, 240)))
    errors: list[str] = []

    def review(c: TestClient, label: str) -> None:
        for _ in range(15):
            for image_id in range(1, 11):
                r = c.post("/api/label", json={"ids": [image_id], "label": label})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [
        threading.Thread(target=review, args=(a, "happy")),
        threading.Thread(target=review, args=(b, "unhappy")),
    ]
    for t in threads:
        t.start()
    imported = cli("import", tmp_path / "more", "--json")
    for t in threads:
        t.join()
    assert errors == [] and imported.exit_code == 0
    assert json.loads(imported.stdout)["added"] == 20
    # Every decision is on record; one about image 7 is about its near copy too.
    assert len(events(catalog_home)) == 2 * 15 * (10 + 1)


def test_a_split_group_stays_split(catalog_home, cli):
    c = client(catalog_home)
    group = c.get("/api/queue/duplicates").json()["items"][0]
    members = c.post("/api/separate", json={"id": group["duplicates"][0]}).json()["separated"]
    assert sorted(members) == sorted([group["id"], *group["duplicates"]])
    assert c.get("/api/queue/duplicates").json()["items"] == []
    assert rows("SELECT count(*) FROM separations") == [(1,)]
    again = json.loads(cli("dedup", "--json").stdout)
    assert again["to_duplicate"] == 0 and again["groups"] == 0
    assert c.post("/api/separate", json={"id": 999}).status_code == 404


def test_one_copy_split_off_stands_alone_and_the_rest_stay_together(catalog_home, cli, tmp_path):
    picture = f.texture(100, (320, 240))
    f.jpeg(tmp_path / "more" / "copy2.jpg", picture.resize((160, 120)))
    assert cli("import", tmp_path / "more").exit_code == 0  # p0's group: p0 and two copies
    c = client(catalog_home)
    group = c.get("/api/queue/duplicates").json()["items"][0]
    rep, first, second = group["id"], *group["duplicates"]
    assert {m["id"] for m in group["members"]} == {first, second}
    assert c.post("/api/split-off", json={"id": first}).json()["split"] == [first]
    after = c.get("/api/queue/duplicates").json()["items"]
    assert [(i["id"], i["duplicates"]) for i in after] == [(rep, [second])]
    assert json.loads(cli("dedup", "--json").stdout)["to_duplicate"] == 0  # remembered
    # The kept image itself can leave: the largest of the rest keeps the group.
    moved = c.post("/api/split-off", json={"id": rep}).json()["split"]
    assert moved[0] == rep and second in moved
    assert rows(f"SELECT status, duplicate_of FROM images WHERE id = {second}") == [
        ("active", None)
    ]
    assert json.loads(cli("dedup", "--json").stdout)["to_duplicate"] == 0
    assert c.post("/api/split-off", json={"id": 999}).status_code == 404
