"""curator export --format hf, parquet, webdataset: each loaded by its own library.

One catalog for the module (the tests only read it): warm and cold pictures, some with file
names a hostile page could give, a few labeled by a person, a model trained and scored so
that the records carry its predictions.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
import webdataset
from PIL import Image
from typer.testing import CliRunner

import curator
from curator.cli import app
from curator.formats import export_format
from tests.helpers.training import FAST, blob_picture

HOSTILE = [
    "$(touch pwned).jpg",
    "a\nb.jpg",
    "<script>alert(1)<|script>.jpg",
    "evil\\..\\..\\x.jpg",
    " -rf .jpg",
]


class Home:
    def __init__(self, path: Path, patch: pytest.MonkeyPatch) -> None:
        self.path, self.patch = path, patch
        self.runner = CliRunner()

    def cli(self, *args: object):
        self.patch.setenv("CURATOR_HOME", str(self.path))
        return self.runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    base = tmp_path_factory.mktemp("formats")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CURATOR_DB_URL", raising=False)
        made = Home(base / "home", patch)
        for truth, warm, seed in (("happy", True, 0), ("unhappy", False, 700)):
            folder = base / "in" / truth
            folder.mkdir(parents=True)
            for i in range(15):
                name = HOSTILE[i] if i < len(HOSTILE) else f"{i}.jpg"
                blob_picture(seed + i, warm, size=(120, 90)).save(folder / name, "JPEG")
            blob_picture(seed + 99, warm, size=(120, 90)).save(folder / "big.png")
            assert made.cli("import", folder, "--label", truth, "--workers", "1").exit_code == 0
        assert made.cli("label", "1", "2", "--as", "happy", "--author", "ann").exit_code == 0
        assert (
            made.cli(
                "train", *FAST, "--include-weak", "--epochs", "8", "--image-size", "32"
            ).exit_code
            == 0
        )
        assert made.cli("score", "--workers", "0").exit_code == 0
        yield made


def labeled(home: Home) -> dict[str, dict]:
    with curator.open(home.path) as catalog:
        return {
            r.sha256: {"split": r.split, "label": r.label, "path": r.path}
            for r in catalog.image_rows()
            if r.label in ("happy", "unhappy")
        }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_hf_export_loads_with_datasets_with_its_splits_and_records(home, tmp_path):
    out = tmp_path / "hf"
    result = home.cli("export", out, "--format", "hf")
    assert result.exit_code == 0, result.output
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "c"))
    assert set(loaded) == {"train", "validation", "test"}
    truth = labeled(home)
    seen = {}
    for split, rows in loaded.items():
        for row in rows:
            seen[row["sha256"]] = row
            assert truth[row["sha256"]]["split"] == {"validation": "val"}.get(split, split)
            assert row["label"] == truth[row["sha256"]]["label"] and row["split"] == split
            assert row["prediction"]["label"] in ("happy", "unhappy")
            assert 0.5 <= row["prediction"]["confidence"] <= 1 and row["quality_issues"] == []
            assert row["image"].size == (row["width"], row["height"])
    assert set(seen) == set(truth)
    origins = {row["label_origin"] for row in seen.values()}
    assert origins == {"human", "import"}
    names = {Path(s["url"]).name for row in seen.values() for s in row["sources"]}
    assert set(HOSTILE) <= names  # file names kept as data, never as a file the export makes
    for path in out.rglob("*"):
        assert path.name in ("metadata.jsonl", "classes.json", ".curator-export.json") or (
            path.is_dir() or sha(path.read_bytes()) == path.stem  # the original bytes
        )


def test_parquet_shards_are_bounded_and_load_with_the_pictures_inside(home, tmp_path):
    out = tmp_path / "pq"
    result = home.cli("export", out, "--format", "parquet", "--shard-size", "0.05", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == counts["shards"] > 3
    biggest = max(r["path"].stat().st_size for r in labeled(home).values())
    assert all(p.stat().st_size < 50_000 + biggest + 20_000 for p in shards)  # + metadata
    loaded = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "c"))
    assert set(loaded) == {"train", "validation", "test"}
    truth = labeled(home)
    undecoded = [s.cast_column("image", datasets.Image(decode=False)) for s in loaded.values()]
    rows = [row for split in undecoded for row in split]
    assert sorted(r["sha256"] for r in rows) == sorted(truth)
    assert all(sha(r["image"]["bytes"]) == r["sha256"] for r in rows)
    decoded = loaded["train"][0]
    assert isinstance(decoded["image"], Image.Image) and decoded["prediction"]["model"] == 1
    again = home.cli("export", out, "--format", "parquet", "--shard-size", "0.05", "--json")
    assert json.loads(again.stdout)["kept_shards"] == counts["shards"]  # nothing to write


def webdataset_samples(out: Path, split: str) -> list[dict]:
    urls = [str(p) for p in sorted((out / split).glob("*.tar"))]
    return list(webdataset.WebDataset(urls, shardshuffle=False, empty_check=False))


def test_webdataset_shards_load_with_webdataset_as_original_bytes(home, tmp_path):
    out = tmp_path / "wds"
    result = home.cli("export", out, "--format", "webdataset", "--shard-size", "0.05")
    assert result.exit_code == 0, result.output
    classes = json.loads((out / "classes.json").read_text())["classes"]
    truth = labeled(home)
    seen = set()
    for split in ("train", "val", "test"):
        for sample in webdataset_samples(out, split):
            picture = sample.get("jpg") or sample["png"]
            assert sha(picture) == sample["__key__"] and truth[sample["__key__"]]["split"] == split
            label = truth[sample["__key__"]]["label"]
            assert classes[int(sample["cls"])] == label
            assert json.loads(sample["json"])["label"] == label
            seen.add(sample["__key__"])
    assert seen == set(truth)
    assert {p.suffix for p in out.rglob("*.*")} == {".tar", ".json"}
    assert len(list(out.rglob("*.tar"))) > 3


def test_webdataset_with_max_side_makes_smaller_jpegs(home, tmp_path):
    out = tmp_path / "wds"
    result = home.cli("export", out, "-f", "webdataset", "--max-side", "64")
    assert result.exit_code == 0, result.output
    decoded = webdataset.WebDataset(
        str(out / "train" / "train-000000.tar"), shardshuffle=False
    ).decode("pil")
    samples = list(decoded)
    assert samples and all("png" not in s and max(s["jpg"].size) == 64 for s in samples)


def test_an_interrupted_webdataset_export_leaves_whole_shards_and_a_rerun_finishes_it(
    home, tmp_path
):
    whole = tmp_path / "whole"
    assert home.cli("export", whole, "-f", "webdataset", "--shard-size", "0.05").exit_code == 0
    out = tmp_path / "out"

    def stop_after_two_shards(done: int, total: int) -> None:
        stop_after_two_shards.calls += 1  # type: ignore[attr-defined]
        if stop_after_two_shards.calls == 2:  # type: ignore[attr-defined]
            raise KeyboardInterrupt  # Ctrl-C while the third shard is written

    stop_after_two_shards.calls = 0  # type: ignore[attr-defined]
    with (
        curator.open(home.path) as catalog,
        catalog.db.reading() as session,
        pytest.raises(KeyboardInterrupt),
    ):
        export_format(
            session, "webdataset", home=home.path, out=out, shard_mb=0.05,
            on_progress=stop_after_two_shards,
        )  # fmt: skip
    written = sorted(out.rglob("*.tar"))
    assert len(written) == 2 and not list(out.rglob("*.part"))
    for shard in written:  # whole tar files, each picture with its three members
        with tarfile.open(shard) as tar:
            assert len(tar.getnames()) % 3 == 0 and tar.getnames()
    # A killed run leaves its temporary beside the name: the rerun clears it.
    (out / "train" / ".train-000002.tar.k1ll3d.part").write_bytes(b"half a shard")
    result = home.cli("export", out, "-f", "webdataset", "--shard-size", "0.05", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kept_shards"] == 2
    assert not list(out.rglob("*.part"))
    assert [p.relative_to(out) for p in sorted(out.rglob("*.tar"))] == [
        p.relative_to(whole) for p in sorted(whole.rglob("*.tar"))
    ]
    for shard in whole.rglob("*.tar"):
        assert (out / shard.relative_to(whole)).read_bytes() == shard.read_bytes()


@pytest.mark.parametrize("fmt", ["hf", "parquet", "webdataset", "label-studio"])
def test_an_out_with_other_files_is_refused_unless_forced_and_they_are_left_alone(
    home, tmp_path, fmt
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = home.cli("export", out, "-f", fmt)
    assert result.exit_code == 1 and "--force" in result.stderr, result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    result = home.cli("export", out, "-f", fmt, "--force")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"
    # Again without --force: an earlier export of this format, brought up to date.
    assert home.cli("export", out, "-f", fmt).exit_code == 0
    other = "hf" if fmt != "hf" else "webdataset"
    result = home.cli("export", out, "-f", other)
    assert result.exit_code == 1 and f"an export of another format ({fmt})" in result.stderr


@pytest.mark.parametrize(
    ("fmt", "folder"),
    [("hf", "train"), ("webdataset", "val"), ("parquet", "data"), ("label-studio", "images")],
)
def test_a_format_folder_that_is_a_link_is_refused_and_what_it_points_at_untouched(
    home, tmp_path, fmt, folder
):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    out = tmp_path / "out"
    assert home.cli("export", out, "-f", fmt).exit_code == 0
    manifest = json.loads((out / ".curator-export.json").read_text())
    for path in sorted((out / folder).iterdir()):
        path.unlink()
    (out / folder).rmdir()
    (out / folder).symlink_to(victim, target_is_directory=True)
    result = home.cli("export", out, "-f", fmt)
    assert result.exit_code == 1 and "symbolic link" in result.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["precious"]
    manifest["files"]["../victim/precious"] = ""
    (out / ".curator-export.json").write_text(json.dumps(manifest))
    (out / folder).unlink()
    result = home.cli("export", out, "-f", fmt)
    assert result.exit_code == 1 and "is damaged" in result.stderr
    assert (victim / "precious").read_text() == "keep"


def test_the_hf_export_files_are_pictures_datasets_can_open(home, tmp_path):
    out = tmp_path / "hf"
    assert home.cli("export", out, "-f", "hf", "--copy").exit_code == 0
    for line in (out / "train" / "metadata.jsonl").read_text().splitlines():
        record = json.loads(line)
        with Image.open(io.BytesIO((out / "train" / record["file_name"]).read_bytes())) as img:
            assert img.size == (record["width"], record["height"])


def test_label_studio_tasks_carry_the_default_model_s_predictions(home, tmp_path):
    out = tmp_path / "ls"
    result = home.cli("export", out, "-f", "label-studio", "--document-root", tmp_path)
    assert result.exit_code == 0, result.output
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == len(labeled(home))
    for task in tasks:
        served = task["data"]["image"].removeprefix("/data/local-files/?d=")
        assert served.startswith("ls/images/" + task["data"]["curator_sha256"])
        assert (tmp_path / served).is_file()
        model = [p for p in task["predictions"] if p["model_version"] == "curator model 1"]
        assert len(model) == 1 and 0.5 <= model[0]["score"] <= 1
        assert model[0]["result"][0]["value"]["choices"][0] in ("happy", "unhappy")
    outside = home.cli("export", tmp_path / "ls2", "-f", "label-studio", "--document-root", out)
    assert outside.exit_code == 1 and "is not inside the document root" in outside.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-f", "hf", "--max-side", "64"], "--max-side is an option of --format webdataset"),
        (["--force"], "--force is an option of --format hf and label-studio and parquet"),
        (["-f", "parquet", "--document-root", "."], "--document-root is an option of"),
        (["-f", "webp"], "Invalid value for '--format'"),
    ],
)
def test_an_option_the_format_does_not_read_is_refused(home, tmp_path, args, words):
    result = home.cli("export", tmp_path / "out", *args)
    assert result.exit_code != 0 and words in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_an_interrupted_hf_export_is_finished_by_running_it_again(home, tmp_path):
    out = tmp_path / "hf"

    def stop_at_five(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with (
        curator.open(home.path) as catalog,
        catalog.db.reading() as session,
        pytest.raises(KeyboardInterrupt),
    ):
        export_format(session, "hf", home=home.path, out=out, on_progress=stop_at_five)
    assert len(list(out.rglob("*.jpg"))) + len(list(out.rglob("*.png"))) == 5
    assert not list(out.rglob("metadata.jsonl"))  # written last, naming pictures in place
    assert home.cli("export", out, "-f", "hf").exit_code == 0
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "c"))
    assert sum(len(split) for split in loaded.values()) == len(labeled(home))
