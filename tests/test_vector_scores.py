"""Outlier scores and clusters kept up to date as a set of vectors grows: the rows a new row
comes near are scored again, new rows join the kept centres, and the clusters are made anew
where the kept centres do not match the catalog or the set has outgrown them. Real faiss,
real files; the vectors are unit vectors around random centres, as a crawl's crowd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from curator.cli import app
from curator.config import load_settings
from curator.learn import vectorscores
from curator.learn.vectorindex import VectorIndex
from curator.learn.vectorscores import Kept, assign, kmeans, refreshed
from tests.faults.consistency import assert_kept_counts_true
from tests.helpers.sql import rows as catalog_rows
from tests.helpers.training import FAST, blob_picture

NEIGHBOURS = 10


def crowd(n: int, seed: int, dim: int = 32, centres: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((centres, dim))
    rows = centre[rng.integers(0, centres, n)] + rng.standard_normal((n, dim)) * 0.6
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float16)


def full(data: np.ndarray) -> np.ndarray:
    """Every row's outlier score the plain way: all products, each row's ten largest others."""
    rows = data.astype(np.float32)
    sims = rows @ rows.T
    np.fill_diagonal(sims, -np.inf)
    k = min(NEIGHBOURS, len(rows) - 1)
    if k <= 0:
        return np.zeros(len(rows))
    top = -np.sort(-sims, axis=1)[:, :k]
    return 1.0 - top.mean(axis=1, dtype=np.float64)


def test_new_rows_and_the_rows_they_come_near_are_scored_again(tmp_path):
    data = crowd(1560, 0)  # the last 60 come later, among the others
    before = data[:1500]
    first = refreshed(VectorIndex.build(before), before, tmp_path, scored=0, neighbours=10)
    assert first.rescored_all and first.reclustered and len(first.outlier_rows) == len(before)
    first.kept.write(tmp_path)
    stored = np.zeros(len(data))
    stored[first.outlier_rows] = first.outliers

    later = refreshed(VectorIndex.build(data), data, tmp_path, scored=1500, neighbours=10)
    assert not later.rescored_all and not later.reclustered
    rescored = set(later.outlier_rows.tolist())
    assert set(range(1500, 1560)) <= rescored and len(rescored) < len(data) / 2
    stored[later.outlier_rows] = later.outliers

    truth = full(data)
    new = np.arange(1500, 1560)
    assert np.allclose(stored[new], truth[new])
    old = full(before)
    moved = np.flatnonzero(~np.isclose(truth[:1500], old))
    assert len(moved) > 0  # the added rows did give old rows new neighbours
    assert set(moved.tolist()) <= rescored
    # Each row reached learns of its new neighbours: its score is the full refresh's.
    wrong = np.flatnonzero(~np.isclose(stored, truth))
    assert len(wrong) <= 0.01 * len(moved), (len(wrong), len(moved))
    assert np.abs(stored - truth).max() < 0.1 * float(truth.std())


def test_new_rows_join_the_kept_centres_and_old_rows_keep_their_clusters(tmp_path):
    data = crowd(1300, 2)
    before = data[:1200]
    first = refreshed(VectorIndex.build(before), before, tmp_path, scored=0, neighbours=10)
    first.kept.write(tmp_path)
    later = refreshed(VectorIndex.build(data), data, tmp_path, scored=1200, neighbours=10)
    assert later.cluster_rows.tolist() == list(range(1200, 1300))
    assert later.cluster_count == first.cluster_count == len(first.kept.centres)
    nearest, _distance = assign(first.kept.centres, data[1200:])
    assert later.clusters.tolist() == nearest.tolist()
    assert later.kept.trained == 1200 and later.kept.assigned == 1300


def test_clusters_are_made_anew_when_the_set_outgrows_them_or_the_file_is_not_the_catalogs(
    tmp_path,
):
    grown = crowd(900, 4)
    small = grown[:400]
    first = refreshed(VectorIndex.build(small), small, tmp_path, scored=0, neighbours=10)
    first.kept.write(tmp_path)
    again = refreshed(
        VectorIndex.build(grown),  # 2.25 times the rows
        grown,
        tmp_path,
        scored=400,
        neighbours=10,
    )
    assert again.reclustered and again.cluster_rows.tolist() == list(range(900))
    assert again.cluster_count == round(900 / vectorscores.CLUSTER_SIZE)

    # The catalog says 400 rows were scored; the kept file says 350 (a run stopped between
    # the catalog's commit and the file): its centres are not the catalog's, made anew.
    stale = first.kept
    Kept(stale.centres, 350, stale.sims[:350], stale.checked[:350], stale.weights).write(tmp_path)
    some = grown[:420]
    mended = refreshed(VectorIndex.build(some), some, tmp_path, scored=400, neighbours=10)
    assert mended.reclustered and len(mended.cluster_rows) == len(some)
    whole = (tmp_path / vectorscores.KEPT_FILE).read_bytes()
    for torn in (b"not a zip", whole[: len(whole) // 2]):
        (tmp_path / vectorscores.KEPT_FILE).write_bytes(torn)
        assert Kept.read(tmp_path) is None


def test_kmeans_trains_on_a_sample_and_assigns_in_chunks(monkeypatch):
    data = crowd(3000, 7)
    whole = kmeans(data, 20)
    monkeypatch.setattr(vectorscores, "TRAIN_PER_CLUSTER", 40)  # 800 of the 3,000 rows
    sampled = kmeans(data, 20)
    assert sampled.shape == whole.shape == (20, 32)
    assert np.allclose(np.linalg.norm(sampled, axis=1), 1, atol=1e-4)
    one, one_distance = assign(sampled, data)
    monkeypatch.setattr(vectorscores, "ASSIGN_ROWS", 256)
    chunked, chunked_distance = assign(sampled, data)
    assert one.tolist() == chunked.tolist() and np.allclose(one_distance, chunked_distance)
    # A sample of 40 rows a cluster fits the set about as well as the whole set does.
    _w, whole_distance = assign(whole, data)
    assert one_distance.mean() < whole_distance.mean() * 1.1
    # Fewer rows than clusters: each its own; one cluster: the mean direction.
    assert len(kmeans(data[:5], 8)) == 5
    [centre] = kmeans(data, 1)
    mean = data.astype(np.float64).sum(axis=0)
    assert np.allclose(centre, mean / np.linalg.norm(mean), atol=1e-5)


def test_a_second_embed_scores_only_what_was_added(tmp_path: Path, monkeypatch):
    from db import rankings

    home = tmp_path / "home"
    for label, warm in (("happy", True), ("unhappy", False)):
        (tmp_path / label).mkdir()
        for i in range(30):
            blob_picture(i + (0 if warm else 1000), warm).save(tmp_path / label / f"{i}.jpg")

    def run(*args: object):
        result = CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])
        assert result.exit_code == 0, result.output
        return result

    def clusters() -> dict[int, int]:
        url = load_settings(home=home).db_url
        return dict(catalog_rows("SELECT image_id, cluster FROM embedded", url))

    for label in ("happy", "unhappy"):
        run("import", tmp_path / label, "--label", label)
    run("train", "--include-weak", *FAST[:-1], "8")
    first = json.loads(run("embed", "--workers", "0", "--json").stdout)
    assert first["rescored"] == 60 and first["reclustered"]
    before = clusters()
    again = json.loads(run("embed", "--workers", "0", "--json").stdout)
    assert again["rescored"] == 0 and again["clusters"] == first["clusters"]

    late = tmp_path / "late"
    late.mkdir()
    blob_picture(900, True).save(late / "late.jpg")
    run("import", late, "--label", "happy")
    renewed: list[bool] = []
    renew = rankings._renew_vectors

    def watched(ctx):
        renewed.append(renew(ctx))
        return renewed[-1]

    monkeypatch.setattr(rankings, "_renew_vectors", watched)
    third = json.loads(run("embed", "--workers", "0", "--json").stdout)
    assert third["embedded"] == 1 and not third["reclustered"]
    assert 1 <= third["rescored"] < 61
    after = clusters()
    assert {i: after[i] for i in before} == before and len(after) == 61
    # The kept outlier and clusters rankings, moved for those images alone, equal a recount.
    url = load_settings(home=home).db_url
    [(basis,)] = catalog_rows("SELECT value FROM settings WHERE key = 'kept_vector_basis'", url)
    assert json.loads(basis)[1] == 61
    assert renewed and not any(renewed)  # moved for the images given, not made again
    assert_kept_counts_true(url)
    text = run("embed", "--workers", "0").stdout
    assert "0 outlier scores updated" in text


@pytest.mark.parametrize("scored", [-1, 0, 301])
def test_a_scored_count_the_set_does_not_have_scores_every_row(tmp_path, scored):
    data = crowd(400, 8)
    # A kept file of as many rows as the catalog says were scored, but not of this set's
    # rows (more rows than the set has, or none): not trusted.
    count = max(scored, 0)
    sims, checked = np.zeros((count, 10), np.float32), np.ones(count, bool)
    kept = Kept(kmeans(data, 3), 400, sims, checked, np.empty(0, np.float32))
    kept.write(tmp_path)
    subset = data[:300]
    found = refreshed(VectorIndex.build(subset), subset, tmp_path, scored=scored, neighbours=10)
    assert found.rescored_all and found.reclustered and len(found.outlier_rows) == 300
    assert np.allclose(found.outliers, full(subset), atol=1e-3)


def test_a_set_smaller_than_the_neighbours_is_scored_by_what_it_has(tmp_path):
    one = crowd(1, 9)
    alone = refreshed(VectorIndex.build(one), one, tmp_path, scored=0, neighbours=10)
    assert alone.outliers.tolist() == [0.0] and alone.cluster_count == 1
    alone.kept.write(tmp_path)
    three = np.concatenate([one, crowd(2, 10)])
    found = refreshed(VectorIndex.build(three), three, tmp_path, scored=1, neighbours=10)
    assert not found.rescored_all and found.outlier_rows.tolist() == [0, 1, 2]
    sims = three.astype(np.float32) @ three.astype(np.float32).T
    expected = [1 - (sims[r].sum() - sims[r, r]) / 2 for r in range(3)]
    assert np.allclose(found.outliers, expected, atol=1e-3)


def test_where_the_index_is_approximate_the_queues_head_is_checked_exactly(tmp_path, monkeypatch):
    from curator.learn import vectorindex

    monkeypatch.setattr(vectorindex, "EXACT_BELOW", 100)  # an inverted file over 3,000 rows
    monkeypatch.setattr(vectorindex, "PROBES", 2)  # of 54 lists: many neighbours missed
    monkeypatch.setattr(vectorscores, "CHECKED_HEAD", 100)
    data = crowd(3000, 11, dim=48, centres=40)
    index = VectorIndex.build(data)
    assert index.approximate is not None
    found = refreshed(index, data, tmp_path, scored=0, neighbours=NEIGHBOURS)
    truth = full(data)
    checked = found.kept.checked
    assert 100 <= checked.sum() < len(data)
    assert np.allclose(found.outliers[checked], truth[checked], atol=1e-3)
    # Approximate search only raises a score: a checked row above every unchecked one is
    # where exact search puts it, and the rows above that bound are the exact head.
    assert (found.outliers >= truth - 1e-3).all()
    bound = found.outliers[~checked].max()
    head = np.flatnonzero(checked & (found.outliers > bound))
    assert len(head) >= 20
    exact_head = np.argsort(-truth, kind="stable")[: len(head)]
    assert set(head.tolist()) == set(exact_head.tolist())
    # Rows added later: the kept check carries over, and the head is checked again.
    more = np.concatenate([data, crowd(30, 12, dim=48, centres=40)])
    found.kept.write(tmp_path)
    later = refreshed(VectorIndex.build(more), more, tmp_path, scored=3000, neighbours=NEIGHBOURS)
    stored = full_scores(found, 3030)
    stored[later.outlier_rows] = later.outliers
    truth = full(more)
    now = later.kept.checked
    assert now.sum() >= 100
    assert np.allclose(stored[now], truth[now], atol=1e-3)
    bound = stored[~now].max()
    head = np.flatnonzero(now & (stored > bound))
    assert len(head) >= 20
    assert set(head.tolist()) == set(np.argsort(-truth, kind="stable")[: len(head)].tolist())


def full_scores(found, total: int) -> np.ndarray:
    out = np.zeros(total)
    out[found.outlier_rows] = found.outliers
    return out


def test_an_outlier_learns_of_a_new_row_that_has_many_nearer_ones(tmp_path, monkeypatch):
    """A new row in a crowd has the crowd as its nearest; an outlier near the crowd, whose
    neighbours are all far, takes the new row as one all the same."""
    monkeypatch.setattr(vectorscores, "REACH", 10)
    rng = np.random.default_rng(13)
    centre = rng.standard_normal(24)
    crowd_rows = centre + rng.standard_normal((300, 24)) * 0.05
    lonely = centre + rng.standard_normal(24) * 0.9
    newcomer = centre + (lonely - centre) * 0.3 + rng.standard_normal(24) * 0.02
    data = np.vstack([crowd_rows, lonely, newcomer])
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float16)
    before = data[:301]
    first = refreshed(VectorIndex.build(before), before, tmp_path, scored=0, neighbours=10)
    first.kept.write(tmp_path)
    later = refreshed(VectorIndex.build(data), data, tmp_path, scored=301, neighbours=10)
    stored = full_scores(first, 302)
    stored[later.outlier_rows] = later.outliers
    truth = full(data)
    sims = data.astype(np.float32) @ data[301].astype(np.float32)
    assert 300 not in np.argsort(-sims)[1:11]  # the lonely row is not among its nearest
    assert 300 in later.outlier_rows.tolist()
    assert np.allclose(stored, truth, atol=1e-3)


def test_the_clustering_weighs_the_last_stage_of_vectors_read_at_four_stages(tmp_path):
    from curator.learn.vectorscores import stage_weights, view

    weights = stage_weights(960)
    assert weights is not None and stage_weights(512) is None
    assert weights[: 64 + 128 + 256].tolist() == [1.0] * 448
    assert set(weights[448:].tolist()) == {vectorscores.LAST_STAGE_WEIGHT}
    # Two groups told apart by the last stage alone, mixed up by the three before it: the
    # weighed view clusters by the last stage.
    rng = np.random.default_rng(14)
    early = rng.standard_normal((2, 448))
    late = rng.standard_normal((2, 512))
    picks_early, picks_late = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    rows = np.hstack(
        [
            early[picks_early] + rng.standard_normal((400, 448)) * 0.3,
            late[picks_late] * 0.6 + rng.standard_normal((400, 512)) * 0.3,
        ]
    )
    data = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)
    seen = view(data, weights)
    assert np.allclose(np.linalg.norm(seen, axis=1), 1, atol=1e-5)
    centres = kmeans(data, 2, weights=weights)
    assigned, _d = assign(centres, data, weights=weights)
    agree = (assigned == picks_late).mean()
    assert max(agree, 1 - agree) > 0.95
    # The weights are kept with the centres; other weights make the clusters anew.
    first = refreshed(
        VectorIndex.build(data), data, tmp_path, scored=0, neighbours=10, weights=weights
    )
    assert np.array_equal(first.kept.weights, weights)
    first.kept.write(tmp_path)
    more = np.concatenate([data, data[:5]])
    same = refreshed(
        VectorIndex.build(more), more, tmp_path, scored=400, neighbours=10, weights=weights
    )
    assert not same.reclustered
    other = refreshed(VectorIndex.build(more), more, tmp_path, scored=400, neighbours=10)
    assert other.reclustered and other.kept.weights.size == 0
