"""curator embed, similar and search, and the outlier and clusters queues: with a real model
trained on tiny generated pictures, real photographs as the off-topic ones, and a small
randomly initialised open_clip model saved to a folder (nothing downloaded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from curator.cli import app
from curator.config import load_settings
from tests.faults.consistency import assert_kept_counts_true
from tests.helpers.catalog_copy import private_copy
from tests.helpers.clip import tiny_clip
from tests.helpers.sql import rows as catalog_rows
from tests.helpers.training import FAST, blob_picture

PER_CLASS = 24
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def run(home: Path, *args: object):
    return CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])


def rows(home: Path, sql: str) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url)


def photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((96, 72))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Warm and cold blobs labeled from their folders, four photographs among the warm ones,
    and a model trained on those labels."""
    base = tmp_path_factory.mktemp("embed")
    home = base / "home"
    for label, warm, seed in (("happy", True, 0), ("unhappy", False, 1000)):
        (base / label).mkdir()
        for i in range(PER_CLASS):
            blob_picture(seed + i, warm).save(base / label / f"{i}.jpg")
    for name in PHOTOS:
        photo(name).save(base / "happy" / f"{name}.jpg")
    for label in ("happy", "unhappy"):
        assert run(home, "import", base / label, "--label", label).exit_code == 0
    result = run(home, "train", "--include-weak", *FAST[:-1], "8")  # learned by then
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def copy(trained, tmp_path, backend, new_db_url, monkeypatch) -> Path:
    """A private copy of the trained catalog; on PostgreSQL, its catalog copied there."""
    return private_copy(trained, tmp_path / "home", backend, new_db_url, monkeypatch)


def photo_ids(home: Path) -> set[int]:
    found = rows(home, "SELECT image_id, locator FROM sources WHERE image_id IS NOT NULL")
    return {i for i, locator in found if Path(locator).stem in PHOTOS}


@pytest.mark.backends
def test_embed_stores_vectors_beside_the_catalog_and_the_queues_rank_by_them(copy, tmp_path):
    result = run(copy, "embed", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    total = 2 * PER_CLASS + len(PHOTOS)
    # A ResNet-18's four stages, 64 + 128 + 256 + 512 values, each a unit vector halved.
    stages = (64, 128, 256, 512)
    assert counts["embedded"] == total and counts["dim"] == sum(stages)
    assert counts["embedder"] == "model"
    [(embedder, version, folder, count)] = rows(
        copy, "SELECT embedder, version, folder, count FROM embeddings"
    )
    assert embedder == "model" and version.startswith("model 1 of ") and count == total
    assert version.endswith(" (stages 1-4)")
    vectors = np.load(copy / folder / "vectors.npy", mmap_mode="r")
    ids = np.load(copy / folder / "ids.npy")
    assert vectors.shape == (total, sum(stages)) and vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1, atol=1e-2)
    ends = np.cumsum(stages)
    for start, end in zip(ends - stages, ends, strict=True):
        part = vectors[:, start:end].astype(np.float32)
        assert np.allclose(np.linalg.norm(part, axis=1), 0.5, atol=1e-2)
    assert sorted(ids.tolist()) == sorted(i for (i,) in rows(copy, "SELECT id FROM images"))
    again = json.loads(run(copy, "embed", "--workers", "0", "--json").stdout)
    assert again["embedded"] == 0 and again["already_embedded"] == total

    outliers = json.loads(run(copy, "queue", "outlier", "--limit", "8", "--json").stdout)
    assert len(outliers["items"]) == 8
    clusters = json.loads(run(copy, "queue", "clusters", "--limit", "100", "--json").stdout)
    assert 0 < len(clusters["items"]) < total

    first = sorted(ids.tolist())[0]  # a warm blob: its neighbours are warm blobs
    result = run(copy, "similar", first, "--limit", "5", "--json")
    assert result.exit_code == 0, result.output
    near = json.loads(result.stdout)["similar"]
    assert len(near) == 5 and first not in [n["id"] for n in near]
    assert near[0]["similarity"] >= near[-1]["similarity"]

    blob_picture(5000, True).save(tmp_path / "late.jpg")
    assert run(copy, "import", tmp_path / "late.jpg", "--label", "happy").exit_code == 0
    by_file = json.loads(run(copy, "similar", tmp_path / "late.jpg", "--json").stdout)
    assert by_file["image"] is None and len(by_file["similar"]) == 20
    [(count,)] = rows(copy, "SELECT count FROM embeddings")
    assert count == total + 1  # the image added since was embedded on demand


def test_an_interrupted_embed_continues_and_rows_past_the_count_are_cut_off(copy):
    from curator.learn.embedding import embed_catalog, load_embedder
    from db.catalog import open_catalog

    catalog = open_catalog(load_settings(home=copy).db_url)
    embedder = load_embedder(catalog, copy, "model", device="cpu")

    def interrupt(progress) -> None:
        if progress.done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_catalog(catalog, copy, embedder, batch_size=8, workers=0, on_progress=interrupt)
    [(folder, count)] = rows(copy, "SELECT folder, count FROM embeddings")
    assert count == 16
    with open(copy / folder / "vectors.npy", "ab") as fh:  # written, never recorded
        fh.write(b"\x00" * embedder.dim * 2 * 3)
    counts = embed_catalog(catalog, copy, embedder, batch_size=8, workers=0)
    assert counts["already_embedded"] == 16 and counts["embedded"] == 2 * PER_CLASS + 4 - 16
    ids = np.load(copy / folder / "ids.npy")
    assert len(np.load(copy / folder / "vectors.npy")) == len(ids) == len(set(ids.tolist()))
    [(runs,)] = rows(copy, "SELECT COUNT(*) FROM runs WHERE kind = 'embed'")
    assert runs == 2
    catalog.dispose()


def test_the_model_embedder_reads_each_stage_of_the_trunk() -> None:
    """Each of a ResNet's four stages, averaged over the picture, as a unit vector, side by
    side; the same numbers as torchvision's own layers give, read by hooks."""
    import torch

    from classifier.config import ModelConfig
    from classifier.embed import model_embedder
    from classifier.model import DeepConnection

    torch.manual_seed(0)
    model = DeepConnection(ModelConfig(backbone="resnet18", image_size=64)).eval()
    embedder = model_embedder(model, "model 1 of now", torch.device("cpu"))
    assert embedder.dim == 960 and embedder.version == "model 1 of now (stages 1-4)"
    seen = []
    for index in (4, 5, 6, 7):  # layer1 to layer4 of the trunk
        model.trunk[index].register_forward_hook(lambda _m, _i, out: seen.append(out))
    batch = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    got = embedder.vectors(batch)
    pooled = [torch.nn.functional.normalize(out.mean(dim=(2, 3)), dim=1) for out in seen]
    want = torch.nn.functional.normalize(torch.cat(pooled, dim=1), dim=1).numpy()
    assert got.shape == (3, 960) and np.allclose(got, want, atol=1e-5)


def test_vectors_of_another_model_are_a_set_of_their_own(copy):
    assert run(copy, "embed", "--workers", "0").exit_code == 0
    [(folder,)] = rows(copy, "SELECT folder FROM embeddings")
    before = (copy / folder / "vectors.npy").read_bytes()
    result = run(copy, "train", "--include-weak", *FAST[:-1], "8", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert run(copy, "embed", "--workers", "0").exit_code == 0  # the new default: model 2
    sets = rows(copy, "SELECT version, folder, count FROM embeddings ORDER BY id")
    assert [v.split(" of ")[0] for v, _f, _c in sets] == ["model 1", "model 2"]
    assert sets[0][1] != sets[1][1] and sets[0][2] == sets[1][2]
    assert (copy / folder / "vectors.npy").read_bytes() == before
    again = json.loads(run(copy, "embed", "--model", "1", "--json", "--workers", "0").stdout)
    assert again["embedded"] == 0 and again["embedding"] == 1


def test_vectors_of_the_last_stage_alone_are_kept_and_replaced_by_a_new_set(copy, tmp_path):
    """A catalog embedded before the model embedder read every stage: its set still answers
    for the images it holds; an image added since, which that embedder can no longer embed,
    gets one line saying to embed again, and curator embed makes a set of its own."""
    import sqlite3

    assert run(copy, "embed", "--workers", "0").exit_code == 0
    with sqlite3.connect(copy / "catalog.db") as db:
        db.execute("UPDATE embeddings SET version = replace(version, ' (stages 1-4)', '')")
        [(old,)] = db.execute("SELECT version FROM embeddings").fetchall()
    assert old.startswith("model 1 of ") and "stages" not in old
    first = min(i for (i,) in rows(copy, "SELECT id FROM images"))
    assert run(copy, "similar", first, "--limit", "3", "--json").exit_code == 0
    blob_picture(5000, True).save(tmp_path / "new.jpg")
    assert run(copy, "import", tmp_path / "new.jpg").exit_code == 0
    result = run(copy, "similar", first, "--limit", "3")
    assert result.exit_code == 1 and "no longer at hand" in result.stderr
    assert "run curator embed" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert run(copy, "embed", "--workers", "0").exit_code == 0
    sets = rows(copy, "SELECT version, count FROM embeddings ORDER BY id")
    assert [v for v, _c in sets] == [old, f"{old} (stages 1-4)"]
    assert sets[1][1] == sets[0][1] + 1
    result = run(copy, "similar", first, "--limit", "3", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["similar"]) == 3


def test_a_copied_catalog_leaves_its_vectors_behind_and_embeds_its_own(copy, tmp_path):
    assert run(copy, "embed", "--workers", "0").exit_code == 0
    target = tmp_path / "copied.db"
    result = run(copy, "db", "copy", copy / "catalog.db", f"sqlite:///{target}")
    assert result.exit_code == 0, result.output
    # The outlier and clusters rankings stay behind with the vectors they come from.
    assert catalog_rows(
        "SELECT count(*) FROM rankings WHERE queue = 'outlier'", f"sqlite:///{target}"
    ) == [(0,)]
    assert_kept_counts_true(f"sqlite:///{target}")
    other = CliRunner().invoke(
        app, ["--home", str(copy), "--db-url", f"sqlite:///{target}", "queue", "outlier"]
    )
    assert other.exit_code == 1 and "run curator embed" in other.stderr
    embedded = CliRunner().invoke(
        app, ["--home", str(copy), "--db-url", f"sqlite:///{target}", "embed", "--workers", "0"]
    )
    assert embedded.exit_code == 0, embedded.output
    folders = {f for (f,) in rows(copy, "SELECT folder FROM embeddings")}
    theirs = {f for (f,) in catalog_rows("SELECT folder FROM embeddings", f"sqlite:///{target}")}
    assert len(folders) == len(theirs) == 1 and folders != theirs


@pytest.mark.backends
def test_clip_embeds_pictures_and_words(copy, tmp_path):
    model = tiny_clip(tmp_path / "clip")
    result = run(copy, "embed", "--embedder", "clip", "--clip-model", model, "--workers", "0")
    assert result.exit_code == 0, result.output
    result = run(copy, "search", "a single person", "--limit", "5", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["found"]
    assert len(found) == 5 and found[0]["similarity"] >= found[-1]["similarity"]
    shown = run(copy, "search", "a cat", "--limit", "3")
    assert shown.exit_code == 0 and len(shown.stdout.strip().splitlines()) == 3

    assert run(copy, "label", "1", "--as", "unhappy").exit_code == 0
    (tmp_path / "unlabeled").mkdir()
    blob_picture(4242, True).save(tmp_path / "unlabeled" / "new.jpg")
    assert run(copy, "import", tmp_path / "unlabeled").exit_code == 0  # no label: embedded now
    result = run(copy, "search", "--prelabel", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    labeled = made["prelabeled"]
    assert sum(labeled.values()) == 2 * PER_CLASS + len(PHOTOS)  # a person's stays
    # Imported with --label: the zero-shot labels lie beneath those, and say so; the
    # picture imported without one has its zero-shot label for its label.
    assert made["beneath"] == {"import": sum(labeled.values()) - 1} and made["in_effect"] == 1
    [(new_id,)] = rows(copy, "SELECT image_id FROM sources WHERE locator LIKE '%new.jpg'")
    shown = json.loads(run(copy, "show", new_id, "--json").stdout)
    assert shown["label_origin"] == "model" and shown["label"] in labeled
    events = rows(copy, "SELECT image_id, author FROM label_events WHERE origin = 'model'")
    assert len(events) == sum(labeled.values()) and 1 not in {i for i, _a in events}
    again = run(copy, "search", "--prelabel")
    assert again.exit_code == 0 and "zero-shot labels (origin model)" in again.stdout
    assert "the label of 1 of them; the others keep the stronger weak label" in again.stdout
    assert len(rows(copy, "SELECT id FROM label_events WHERE origin = 'model'")) == len(events)


def test_bad_input_is_one_line(copy, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    result = run(empty, "embed")
    assert result.exit_code == 1 and "train first" in result.stderr
    assert "--embedder imagenet" in result.stderr and len(result.stderr.splitlines()) == 1
    result = run(empty, "search", "a single person")
    assert result.exit_code == 1 and "CLIP vectors, and the catalog has none" in result.stderr
    assert "curator[clip]" not in result.stderr  # installed: only the embed is missing
    result = run(copy, "queue", "outlier")
    assert result.exit_code == 1 and "run curator embed" in result.stderr
    result = run(copy, "similar", "1")
    assert result.exit_code == 1 and "run curator embed" in result.stderr
    assert run(copy, "embed", "--workers", "0").exit_code == 0
    result = run(copy, "similar", "999999")
    assert result.exit_code == 1 and "999999" in result.stderr and "Traceback" not in result.output
    result = run(copy, "similar", tmp_path / "nowhere" / "x.jpg")
    assert result.exit_code == 1 and "no file" in result.stderr and "nowhere" in result.stderr
    result = run(copy, "similar", "abc")
    assert result.exit_code == 1 and "6 characters or more" in result.stderr
    result = run(copy, "search", "a single person")
    assert result.exit_code == 1 and "--embedder clip" in result.stderr
    result = run(copy, "queue", "off-query")
    assert result.exit_code == 1 and "needs CLIP vectors" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = run(copy, "embed", "--embedder", "nonsense")
    assert result.exit_code == 1 and "one of model, imagenet, clip" in result.stderr

    # No network (the hub told so, rather than waiting on it): one line, and what to do.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = run(copy, "embed", "--embedder", "clip")
    assert result.exit_code == 1 and "give --clip-model FOLDER" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if curator[clip] were not installed
    result = run(copy, "embed", "--embedder", "clip")
    assert result.exit_code == 1 and "pip install 'curator[clip]'" in result.stderr

    import torch.hub

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    result = run(copy, "embed", "--embedder", "imagenet")
    assert result.exit_code == 1 and "cannot get the ImageNet weights" in result.stderr
    assert len(result.stderr.splitlines()) == 1

    # Models, but none that learned: the user is told which to name to embed with one.
    from sqlalchemy import create_engine, text

    engine = create_engine(load_settings(home=copy).db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE models SET verdict = 'chance'"))
    engine.dispose()
    [(newest,)] = rows(copy, "SELECT max(id) FROM models")
    result = run(copy, "embed", "--workers", "0")
    assert result.exit_code == 1 and f"give --model {newest} to embed" in result.stderr
    assert "no better than chance" in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_empty_catalog_embeds_nothing_and_its_queues_are_empty(tmp_path):
    home = tmp_path / "empty"
    model = tiny_clip(tmp_path / "clip")
    result = run(home, "embed", "--embedder", "clip", "--clip-model", model)
    assert result.exit_code == 0, result.output
    assert "embedded 0 images" in result.stdout
    assert "queue is empty" in run(home, "queue", "outlier").stdout
    assert run(home, "search", "a cat").stdout.strip() == "nothing found"


def test_each_stage_of_an_embed_run_has_its_progress_bar(copy):
    result = run(copy, "embed", "--workers", "0")
    assert result.exit_code == 0, result.output
    total = 2 * PER_CLASS + len(PHOTOS)
    titles = ("embedding with model", "indexing", "finding each picture's neighbours", "clustering")
    for title in titles:
        [line] = [line for line in result.stderr.splitlines() if title in line]
        assert f"{total}/{total}" in line, line


def test_one_process_at_a_time_writes_a_set_and_similar_answers_meanwhile(copy, spawn, tmp_path):
    """A second writer of a set would cut off the first's unrecorded rows and record rows at
    the same places: while one process holds the set, `curator embed` says so in one line
    and `curator similar` answers from the rows recorded, embedding nothing."""
    import subprocess

    assert run(copy, "embed", "--workers", "0").exit_code == 0
    [(folder, count)] = rows(copy, "SELECT folder, count FROM embeddings")
    newcomer = tmp_path / "new"
    newcomer.mkdir()
    blob_picture(4242, True).save(newcomer / "late.jpg")
    assert run(copy, "import", newcomer, "--label", "happy").exit_code == 0
    holder = spawn(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from curator.learn.vectors import writer\n"
            f"with writer(Path({str(copy / folder)!r})):\n"
            "    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    busy = run(copy, "embed", "--workers", "0")
    assert busy.exit_code == 1 and f"(process {holder.pid})" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1 and "Traceback" not in busy.output
    answered = run(copy, "similar", "1", "--limit", "3", "--json")
    assert answered.exit_code == 0, answered.output
    assert len(json.loads(answered.stdout)["similar"]) == 3
    assert rows(copy, "SELECT count FROM embeddings") == [(count,)]  # nothing written meanwhile
    assert holder.stdin is not None
    holder.stdin.close()  # the holder lets go (and a process that dies lets go the same way)
    holder.wait(timeout=30)
    done = run(copy, "embed", "--workers", "0", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["embedded"] == 1

    from curator.learn.vectors import SetBusy, writer

    busy_here = pytest.raises(SetBusy, match=r"\(this process\)")
    with writer(copy / folder), busy_here, writer(copy / folder):  # two threads of one program
        pass


def test_the_queues_go_by_the_set_embed_ran_on_last(copy, tmp_path):
    """Running curator embed on a set makes it the one the vector queues go by, whether or
    not it had anything new to embed; an on-demand embed for a search does not."""
    from curator.learn.embedding import embed_catalog, load_embedder
    from db.catalog import open_catalog

    clip = tiny_clip(tmp_path / "clip")
    assert run(copy, "embed", "--workers", "0").exit_code == 0

    def newest() -> str:
        return rows(copy, "SELECT embedder FROM embeddings ORDER BY updated_at DESC, id DESC")[0][0]

    def stop(progress) -> None:
        if progress.done >= 8:
            raise KeyboardInterrupt

    catalog = open_catalog(load_settings(home=copy).db_url)
    embedder = load_embedder(catalog, copy, "clip", clip_model=str(clip))
    with pytest.raises(KeyboardInterrupt):  # a first run of a new set, stopped
        embed_catalog(catalog, copy, embedder, batch_size=8, workers=0, on_progress=stop)
    catalog.dispose()
    assert newest() == "model"  # the queues keep the set they had
    assert run(copy, "embed", "--embedder", "clip", "--clip-model", clip).exit_code == 0

    assert newest() == "clip" and run(copy, "queue", "off-query").exit_code == 0
    again = run(copy, "embed", "--workers", "0", "--json")  # the model's set: nothing new
    assert again.exit_code == 0 and json.loads(again.stdout)["embedded"] == 0
    assert newest() == "model"
    result = run(copy, "queue", "off-query")
    assert result.exit_code == 1 and "--embedder clip" in result.stderr
    late = tmp_path / "late"
    late.mkdir()
    blob_picture(777, False).save(late / "late.jpg")
    assert run(copy, "import", late, "--label", "unhappy").exit_code == 0
    found = run(copy, "search", "a dog", "--limit", "2", "--json")  # embeds it in the CLIP set
    assert found.exit_code == 0, found.output
    counts = dict(rows(copy, "SELECT embedder, count FROM embeddings"))
    assert counts["clip"] == counts["model"] + 1 and newest() == "model"
    again = run(copy, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["embedded"] == 0
    assert newest() == "clip" and run(copy, "queue", "off-query").exit_code == 0
    outliers = json.loads(run(copy, "queue", "outlier", "--limit", "500", "--json").stdout)
    assert len(outliers["items"]) == counts["clip"]  # the CLIP set's, the late picture's too
    assert_kept_counts_true(load_settings(home=copy).db_url)
