"""The ranked queues kept in the rankings table (db/rankings.py) stay equal to a ranking
made from scratch through random writes of every kind that changes them: label events of
each origin, predictions in and out of sample from models of other classes, groups made and
split, images rejected, default models trained, chosen and removed. On SQLite and
PostgreSQL, with real catalogs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from db.catalog import open_catalog
from db.images import add_image, change_image, image_by_id
from db.labels import record_label
from db.predictions import prediction_row, replace_predictions
from db.properties import (
    ISSUE_QUEUES,
    ISSUES,
    add_properties,
    issue_ranking,
    set_thresholds,
    thresholds,
)
from db.queues import QUEUES, queue_counts, ranking, review_queue
from db.rankcheck import kept, recount
from db.rankings import rebuild
from db.registry import DONE, choose_default, create_model, delete_model, update_model
from db.runs import start_run
from db.tallies import recount as recount_tallies
from db.tallies import tallies
from db.vectors import (
    VECTOR_BASIS,
    embedded_ids,
    embedding_for,
    embeddings,
    off_query_ranking,
    outlier_ranking,
    record_rows,
    set_scores,
)
from tests.faults.consistency import assert_kept_counts_true

pytestmark = pytest.mark.backends

CLASSES = ["happy", "unhappy"]


def _image(session, i: int, run_id: int) -> int:
    sha = f"{i:064x}"
    return add_image(
        session, sha256=sha, phash=i, phash_mirror=i, hash_version="phash64-v1", width=8,
        height=8, format="JPEG", bytes=100, path=f"images/{sha}.jpg", split="train",
        run_id=run_id,
    ).id  # fmt: skip


def _model(session, classes: list[str], status: str = DONE) -> int:
    return create_model(
        session, status=status, config={}, training={}, classes=classes, path="models/x",
        torch_version="x", curator_version="x",
    ).id  # fmt: skip


def _score(session, rng: random.Random, model_id: int, classes: list[str], ids: list[int]):
    rows = []
    for image_id in ids:
        raw = [rng.choice([0.1, 0.25, 0.5, 0.75, 0.9, rng.random()]) for _ in classes]
        probs = [p / sum(raw) for p in raw]
        rows.append(
            prediction_row(model_id=model_id, image_id=image_id, probs=probs, classes=classes,
                           in_sample=rng.random() < 0.3)
        )  # fmt: skip
    replace_predictions(session, model_id=model_id, rows=rows)


def _step(session, rng: random.Random, ids: list[int], models: dict[int, list[str]], run_id):
    """One random write of a kind that moves the rankings."""
    kind = rng.choice(["label", "label", "score", "score", "group", "ungroup", "reject",
                       "model", "choose", "delete", "embed", "embed"])  # fmt: skip
    image_id = rng.choice(ids)
    if kind == "label":
        origin = rng.choice(["human", "import", "query", "query", "model"])
        label = rng.choice([*CLASSES, None]) if origin == "human" else rng.choice(CLASSES)
        record_label(session, image_id=image_id, label=label, origin=origin, author="t")
    elif kind == "score" and models:
        model_id = rng.choice(list(models))
        _score(session, rng, model_id, models[model_id], rng.sample(ids, 6))
    elif kind in ("group", "ungroup", "reject"):
        image = image_by_id(session, image_id=image_id)
        rep = image_by_id(session, image_id=rng.choice(ids))
        if kind == "group" and rep.duplicate_of is None and rep.id != image.id:
            if not session.query(type(image)).filter_by(duplicate_of=image.id).count():
                change_image(session, image=image, run_id=run_id, status="duplicate",
                             duplicate_of=rep.id)  # fmt: skip
        elif kind == "ungroup" and image.duplicate_of is not None:
            change_image(session, image=image, run_id=run_id, status="active", duplicate_of=None)
        elif kind == "reject" and image.duplicate_of is None:
            status = "rejected" if image.status == "active" else "active"
            change_image(session, image=image, run_id=run_id, status=status)
    elif kind == "model":
        classes = rng.choice([CLASSES, CLASSES, ["happy", "unhappy", "other"], ["cat", "dog"]])
        model_id = _model(session, classes, status=rng.choice([DONE, DONE, "training"]))
        models[model_id] = classes
        if rng.random() < 0.5:
            update_model(session, model_id=model_id, status=DONE)
    elif kind == "choose" and models:
        choose_default(session, rng.choice([None, *models]))
    elif kind == "delete" and len(models) > 2:
        model_id = rng.choice(list(models))
        delete_model(session, model_id=model_id)
        del models[model_id]
    elif kind == "embed":
        _embed(session, rng, ids)


def _embed(session, rng: random.Random, ids: list[int]) -> None:
    """A set of vectors made, or one extended (which makes it the newest), then perhaps
    scored: new outlier scores and clusters for every row it holds."""
    sets = embeddings(session)
    if not sets or rng.random() < 0.3:
        found = embedding_for(session, embedder="imagenet", version=f"v{len(sets)}", dim=4,
                              dtype="float16", folder=f"vectors/{len(sets)}")  # fmt: skip
    else:
        found = rng.choice(sets)
    held = embedded_ids(session, embedding_id=found.id)
    new = [i for i in rng.sample(ids, 10) if i not in held]
    if new:
        record_rows(session, embedding_id=found.id, image_ids=new)
    if rng.random() < 0.7:
        rows = sorted(held | set(new))
        set_scores(session, embedding_id=found.id,
                   outliers=[(i, rng.choice([0.1, rng.random()])) for i in rows],
                   clusters=[(i, rng.randint(1, 4), rng.choice([0.0, rng.random()]))
                             for i in rows],
                   cluster_count=4, over=len(rows))  # fmt: skip


def test_random_writes_keep_every_ranking_equal_to_a_recount(db_url: str, tmp_path: Path):
    (tmp_path / "home").mkdir(exist_ok=True)
    catalog = open_catalog(db_url)
    rng = random.Random(22)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 41)]
            models = {_model(session, CLASSES): CLASSES}
            _score(session, rng, next(iter(models)), CLASSES, ids)
            for image_id in ids[::2]:
                record_label(session, image_id=image_id, label=rng.choice(CLASSES),
                             origin="query", author="crawl")  # fmt: skip
        seen = set()
        for _ in range(60):
            with catalog.writing() as session:
                for _ in range(rng.randint(1, 4)):
                    _step(session, rng, ids, models, run_id)
            with catalog.reading() as session:
                held, fresh = kept(session), recount(session)
                assert held == fresh
                assert tallies(session) == recount_tallies(session)
                seen |= {name for name, ranked in held.items() if ranked}
        exercised = {"uncertain", "disagree", "weak-disagree", "duplicates", "outlier", "clusters"}
        assert seen == exercised, "all exercised"
        assert_kept_counts_true(db_url)
        with catalog.reading() as session:
            counts = queue_counts(session)
            for name, ranked in recount(session).items():
                if name == "clusters":
                    assert counts[name] == len({int(score) for _i, score in ranked})
                    continue
                assert counts[name] in (len(ranked), None)
                if counts[name] and name != "duplicates":
                    assert [i for i, _ in ranking(session, name)] == [i for i, _ in ranked]
                    first = review_queue(session, name=name, limit=3)
                    assert [item.id for item in first.items] == [i for i, _ in ranked[:3]]
        # A rebuild from scratch comes to the same rows.
        with catalog.writing() as session:
            before = kept(session)
            rebuild(session)
        with catalog.reading() as session:
            assert kept(session) == before
    finally:
        catalog.dispose()


def test_a_ranked_page_walks_on_past_ties_and_images_leaving_the_queue(db_url: str, tmp_path):
    (tmp_path / "home").mkdir(exist_ok=True)
    catalog = open_catalog(db_url)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 8)]
            model_id = _model(session, CLASSES)
            rows = [prediction_row(model_id=model_id, image_id=i, probs=[0.5, 0.5],
                                   classes=CLASSES, in_sample=False) for i in ids]  # fmt: skip
            replace_predictions(session, model_id=model_id, rows=rows)
        with catalog.reading() as session:
            first = review_queue(session, name="uncertain", limit=3)
        with catalog.writing() as session:  # a person labels the next one meanwhile
            record_label(session, image_id=ids[3], label="happy", origin="human", author="a")
        with catalog.reading() as session:
            rest = review_queue(session, name="uncertain", limit=10, after=first.next)
        assert [i.id for i in first.items] == ids[:3]
        assert [i.id for i in rest.items] == ids[4:] and rest.next is None
    finally:
        catalog.dispose()


def test_disagree_averages_the_default_model_in_and_follows_it_when_it_changes(db_url: str):
    """A weak label's disagree score: the independent model's probability of it, averaged
    with the default model's (in sample or not); made again when another model becomes the
    default; the independent one alone where the default has no opinion."""
    catalog = open_catalog(db_url)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 5)]
            for i in ids:
                record_label(session, image_id=i, label="happy", origin="query", author="t")
            fold = _model(session, CLASSES, status="cross-fit")
            first, second = _model(session, CLASSES), _model(session, CLASSES)
            for model_id, happy, in_sample in (
                (fold, [0.2, 0.4, 0.6, 0.8], False),
                (first, [0.9, 0.1, 0.9, 0.1], True),  # trained on them
                (second, [0.1, 0.9, 0.5], True),  # no opinion of the fourth
            ):
                rows = [prediction_row(model_id=model_id, image_id=i, probs=[p, 1 - p],
                                       classes=CLASSES, in_sample=in_sample)
                        for i, p in zip(ids, happy, strict=False)]  # fmt: skip
                replace_predictions(session, model_id=model_id, rows=rows)
            choose_default(session, first)
        with catalog.reading() as session:
            by_first = dict(ranking(session, name="disagree"))
        with catalog.writing() as session:
            choose_default(session, second)
        with catalog.reading() as session:
            by_second = dict(ranking(session, name="disagree"))
            assert kept(session)["disagree"] == recount(session)["disagree"]
        assert by_first == pytest.approx(dict(zip(ids, [0.55, 0.25, 0.75, 0.45], strict=True)))
        assert by_second == pytest.approx(dict(zip(ids, [0.15, 0.65, 0.55, 0.8], strict=True)))
    finally:
        catalog.dispose()


def _properties(image_id: int, rng: random.Random) -> dict:
    """Property rows some issue types flag (about one image in three is blurry or dark)."""
    return {
        "image_id": image_id, "version": "t", "sharpness": rng.choice([0.01, 0.05, 0.5, 0.8]),
        "brightness_p5": 0.1, "brightness_p50": rng.choice([0.05, 0.5, 0.5]),
        "brightness_p95": 0.9, "contrast": 0.3, "entropy": 6.0, "colourfulness": 30.0,
        "aspect": 1.3, "short_side": 300, "graphic": 0.0,
    }  # fmt: skip


def _walk(session, name: str) -> tuple[list[int], int]:
    """Every item of a queue, page by page (3 a page); and how many pages."""
    seen, after, pages = [], 0, 0
    while True:
        page = review_queue(session, name=name, limit=3, after=after)
        seen += [item.id for item in page.items]
        pages += 1
        if page.next is None:
            return seen, pages
        after = page.next


def test_every_queue_pages_through_what_its_count_says(db_url: str, tmp_path: Path):
    """The kept queues beside those ranked from their own tables (issues, vectors): each
    queue of QUEUES pages through every group once, as many as its count, on one catalog."""
    catalog = open_catalog(db_url)
    rng = random.Random(7)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 25)]
            model_id = _model(session, CLASSES)
            _score(session, rng, model_id, CLASSES, ids)
            for image_id in ids[::2]:
                record_label(session, image_id=image_id, label=rng.choice(CLASSES),
                             origin=rng.choice(["query", "import"]), author="crawl")  # fmt: skip
            for image_id in ids[1:6]:
                record_label(session, image_id=image_id, label="happy", origin="human", author="a")
            add_properties(session, [_properties(i, rng) for i in ids])
            found = embedding_for(session, embedder="clip", version="t", dim=4,
                                  dtype="float16", folder="vectors/t")  # fmt: skip
            record_rows(session, embedding_id=found.id, image_ids=ids)
            set_scores(session, embedding_id=found.id,
                       outliers=[(i, rng.choice([0.1, 0.2, rng.random()])) for i in ids],
                       clusters=[(i, 1 + i % 4, rng.random()) for i in ids],
                       query_distances=[(i, rng.choice([0.7, rng.random()])) for i in ids[::3]],
                       cluster_count=4, over=len(ids))  # fmt: skip
            image = image_by_id(session, image_id=ids[7])
            change_image(session, image=image, run_id=run_id, status="rejected")
        with catalog.reading() as session:
            counts = queue_counts(session)
            assert set(counts) == set(QUEUES)
            for name in QUEUES:
                seen, pages = _walk(session, name)
                assert len(seen) == len(set(seen)), name
                assert ids[7] not in seen, name  # rejected: in no queue
                if name == "clusters":
                    assert pages == counts[name] == 4
                else:
                    assert len(seen) == counts[name], name
            assert counts["issues"] and counts["outlier"] and counts["uncertain"]
            assert counts["off-query"] and _walk(session, "off-query")[0] == [
                i for i, _ in off_query_ranking(session)
            ]
            assert not set(ids[1:6]) & set(_walk(session, "issues")[0]), "reviewed: left out"
            assert _walk(session, "outlier")[0] == [i for i, _ in outlier_ranking(session)]
            for name in ("issues", *(f"issue:{issue}" for issue in ISSUES)):
                assert _walk(session, name)[0] == [i for i, _ in issue_ranking(session, name=name)]
                assert ranking(session, name) == issue_ranking(session, name=name)
            blurry = [i for i, _ in issue_ranking(session, name="issue:blurry")]
        assert_kept_counts_true(db_url)
        # Other thresholds remake the kept issue queues; a person's label takes a group out.
        with catalog.writing() as session:
            set_thresholds(session, values={"blurry": 0.6, "dark": 0.01})
            record_label(session, image_id=blurry[0], label="happy", origin="human", author="a")
        with catalog.reading() as session:
            counts = queue_counts(session)
            for name in ISSUE_QUEUES:
                assert (
                    counts[name]
                    == len(_walk(session, name)[0])
                    == len(issue_ranking(session, name=name))
                ), name
            assert counts["issue:blurry"] > len(blurry) and counts["issue:dark"] == 0
            assert blurry[0] not in _walk(session, "issues")[0]
        assert_kept_counts_true(db_url)
    finally:
        catalog.dispose()


def test_the_migration_ranks_the_issues_of_a_catalog_as_curator_does(db_url: str):
    """Alembic 0010 fills the kept issue queues from the image properties already there (by
    the catalog's own thresholds, else its copy of the defaults), to the rows db/rankings.py
    keeps; the first write after it ranks again the issues whose default has moved since."""
    from alembic import command
    from sqlalchemy import create_engine

    from db.catalog import alembic_config
    from db.rankings import ISSUE_BASIS
    from db.settings import get_setting

    catalog = open_catalog(db_url)
    rng = random.Random(3)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 13)]
            add_properties(session, [_properties(i, rng) for i in ids])
            set_thresholds(session, values={"blurry": 0.6})
            record_label(session, image_id=ids[0], label="happy", origin="human", author="a")
        with catalog.reading() as session:
            before = kept(session)
    finally:
        catalog.dispose()
    assert before["issue:blurry"] and before["issues"]
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0009")
    finally:
        engine.dispose()
    catalog = open_catalog(db_url)  # upgraded again: 0010 fills the rankings
    try:
        with catalog.reading() as session:
            # 0010 ranks by the catalog's own thresholds, else by the defaults as they were
            # when it was written (its own copy of them).
            basis = get_setting(session, key=ISSUE_BASIS)
            assert basis["blurry"] == 0.6
            migrated, now = kept(session), thresholds(session)
            same = [name for name, value in basis.items() if value == now[name]]
            assert "blurry" in same
            assert all(migrated[f"issue:{name}"] == before[f"issue:{name}"] for name in same)
        # Where a default has moved since, the first write ranks those issues again.
        with catalog.writing():
            pass
        with catalog.reading() as session:
            assert kept(session) == before == recount(session)
            assert get_setting(session, key=ISSUE_BASIS) == thresholds(session)
    finally:
        catalog.dispose()


def test_the_migration_ranks_the_vector_queues_of_a_catalog_as_curator_does(db_url: str):
    """Alembic 0011 fills the kept outlier and clusters queues from the newest set of vectors
    already there, to the rows db/rankings.py keeps, and records the set they came from."""
    from alembic import command
    from sqlalchemy import create_engine

    from db.catalog import alembic_config
    from db.settings import get_setting

    catalog = open_catalog(db_url)
    rng = random.Random(5)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 21)]
            for _ in range(3):
                _embed(session, rng, ids)
            record_label(session, image_id=ids[0], label="happy", origin="human", author="a")
        with catalog.reading() as session:
            before = kept(session)
            basis = get_setting(session, key=VECTOR_BASIS)
    finally:
        catalog.dispose()
    assert before["outlier"] and before["clusters"] and basis
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0010")
    finally:
        engine.dispose()
    catalog = open_catalog(db_url)  # upgraded again: 0011 fills the two rankings
    try:
        with catalog.reading() as session:
            assert kept(session) == before == recount(session)
            assert get_setting(session, key=VECTOR_BASIS) == basis
            assert tallies(session) == recount_tallies(session)
    finally:
        catalog.dispose()


def test_deleting_the_default_model_takes_its_images_out_of_the_disagree_rankings(db_url: str):
    """A deleted default model renews the rankings it was the basis of; the images whose only
    independent predictions were its own leave the disagree queues with them."""
    catalog = open_catalog(db_url)
    rng = random.Random(3)
    try:
        with catalog.writing() as session:
            run_id = start_run(session, kind="import", params={}).id
            ids = [_image(session, i, run_id) for i in range(1, 21)]
            for image_id in ids:
                record_label(session, image_id=image_id, label=rng.choice(CLASSES),
                             origin="query", author="crawl")  # fmt: skip
            first, second = _model(session, CLASSES), _model(session, CLASSES)
            _score(session, rng, first, CLASSES, ids[:10])
            _score(session, rng, second, CLASSES, ids[10:])
            choose_default(session, second)
        with catalog.reading() as session:
            theirs = {i for i, _ in kept(session)["disagree"] if i in ids[10:]}
        assert theirs  # some of the second model's independent predictions
        with catalog.writing() as session:
            delete_model(session, model_id=second)
        with catalog.reading() as session:
            held = kept(session)
            assert held == recount(session)
            assert not {i for i, _ in held["disagree"]} & theirs
            assert not {i for i, _ in held["weak-disagree"]} & theirs
    finally:
        catalog.dispose()
