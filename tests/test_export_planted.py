"""curator export into a folder someone else prepared: planted manifests and symbolic links.

Each test keeps a victim folder outside OUT and checks, through the real CLI, that the export
neither deletes nor writes anything in it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from db.settings import set_setting
from tests.helpers import imagefiles as f

#: A name of the shape an export writes, for no image of the catalog.
NAME = f"{'ab' * 32}.jpg"


def make_catalog(cli, tmp_path: Path) -> None:
    for i in range(4):
        f.jpeg(tmp_path / "in" / "happy" / f"h{i}.jpg", f.texture(i))
        f.jpeg(tmp_path / "in" / "unhappy" / f"u{i}.jpg", f.texture(50 + i))
    for label in ("happy", "unhappy"):
        assert cli("import", tmp_path / "in" / label, "--label", label).exit_code == 0


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under root: links as their targets (not followed), files with their bytes."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("folder",)
            else:
                found[rel] = ("file", path.read_bytes())
    return found


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside the export, holding a file of the name an export writes."""
    folder = tmp_path / "victim"
    (folder / "happy").mkdir(parents=True)
    (folder / "file").write_text("precious")
    (folder / NAME).write_text("precious too")
    (folder / "happy" / NAME).write_text("precious as well")
    return folder


def assert_refused(result, words: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr and "nothing was changed" in result.stderr, result.stderr


def add_to_manifest(out: Path, entry: object) -> None:
    manifest = out / ".curator-export.json"
    data = json.loads(manifest.read_text()) if manifest.exists() else {"classes": [], "files": []}
    data["files"].append(entry)
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "entry",
    [
        "{victim}/file",
        "../victim/file",
        f"../victim/{NAME}",
        "train/happy/../../../victim/file",
        f"train/happy/../../../victim/{NAME}",
        f"train/../../victim/{NAME}",
        f"train/..\\..\\victim/{NAME}",
        f"train/.hidden/{NAME}",
        f"other/happy/{NAME}",
        f"train/happy/{NAME.upper()}",
        f"train/happy/{NAME}.part",
        17,
    ],
)
def test_a_manifest_listing_anything_but_export_files_is_refused(
    cli, home, tmp_path, victim, entry
):
    make_catalog(cli, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    add_to_manifest(
        out, entry.replace("{victim}", str(victim)) if isinstance(entry, str) else entry
    )
    before = snapshot(out), snapshot(victim)
    result = cli("export", out)
    assert_refused(result, "is damaged")
    assert (snapshot(out), snapshot(victim)) == before


@pytest.mark.parametrize("files", ["../victim/file", {"../victim/file": 1}, None])
def test_a_manifest_whose_files_are_not_a_list_is_refused(cli, home, tmp_path, victim, files):
    make_catalog(cli, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".curator-export.json").write_text(json.dumps({"files": files}))
    before = snapshot(out), snapshot(victim)
    assert_refused(cli("export", out), "is damaged")
    assert (snapshot(out), snapshot(victim)) == before


def test_a_manifest_that_is_a_link_is_refused(cli, home, tmp_path, victim):
    make_catalog(cli, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (victim / "list.json").write_text(json.dumps({"files": []}))
    (out / ".curator-export.json").symlink_to(victim / "list.json")
    before = snapshot(out), snapshot(victim)
    assert_refused(cli("export", out), "symbolic link")
    assert (snapshot(out), snapshot(victim)) == before


@pytest.mark.parametrize(
    ("linked", "entry"),
    [
        ("train", f"train/happy/{NAME}"),  # -> victim/happy/NAME
        ("val/happy", f"val/happy/{NAME}"),  # -> victim/NAME
        ("test/gone", f"test/gone/{NAME}"),  # a class folder of no class: emptied, then removed
    ],
)
def test_an_export_whose_split_or_class_folder_is_a_link_is_refused(
    cli, home, tmp_path, victim, linked, entry
):
    make_catalog(cli, tmp_path)
    out = tmp_path / "out"
    assert cli("export", out).exit_code == 0
    folder = out / linked
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(exist_ok=True)
    folder.symlink_to(victim, target_is_directory=True)
    add_to_manifest(out, entry)  # a file that no longer belongs: a later export removes it
    before = snapshot(out), snapshot(victim)
    assert_refused(cli("export", out), "symbolic link")
    assert (snapshot(out), snapshot(victim)) == before


def test_links_planted_at_the_names_an_export_writes_are_replaced_not_followed(
    cli, home, tmp_path, victim
):
    make_catalog(cli, tmp_path)
    out = tmp_path / "out"
    assert cli("export", out, "--copy").exit_code == 0
    placed = sorted(p for p in out.rglob("*.jpg"))
    gone, same_size = placed[0], placed[1]
    gone.unlink()  # the next export copies it again, through its temporary
    (gone.parent / f".{gone.name}.part").symlink_to(victim / "file")
    (victim / "twin").write_bytes(b"x" * same_size.stat().st_size)
    same_size.unlink()
    same_size.symlink_to(victim / "twin")  # would pass for the image: same size
    (out / "classes.json").unlink()
    (out / "classes.json").symlink_to(victim / "file")
    (out / ".curator-export.json.part").symlink_to(victim / NAME)
    before = snapshot(victim)
    result = cli("export", out, "--copy")
    assert result.exit_code == 0, result.stderr
    assert snapshot(victim) == before
    for path in [*placed, out / "classes.json", out / ".curator-export.json"]:
        assert not path.is_symlink() and path.is_file(), path
    assert gone.read_bytes() == next((home / "images").rglob(gone.name)).read_bytes()
    assert same_size.read_bytes() == next((home / "images").rglob(same_size.name)).read_bytes()
    assert json.loads((out / "classes.json").read_text())["classes"] == ["happy", "unhappy"]
    listed = json.loads((out / ".curator-export.json").read_text())["files"]
    assert len(listed) == len(placed) == 8
    assert oct(gone.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_csv_export_does_not_write_through_a_planted_temporary(cli, home, tmp_path, victim):
    make_catalog(cli, tmp_path)
    out = tmp_path / "catalog.csv"
    (tmp_path / ".catalog.csv.part").symlink_to(victim / "file")
    before = snapshot(victim)
    assert cli("export", out, "--format", "csv").exit_code == 0
    assert snapshot(victim) == before
    assert out.is_file() and not out.is_symlink()
    assert len(out.read_text().splitlines()) == 1 + 8


def test_an_out_that_is_itself_a_link_is_the_user_s_choice(cli, home, tmp_path):
    make_catalog(cli, tmp_path)
    (tmp_path / "real").mkdir()
    out = tmp_path / "mine"
    out.symlink_to(tmp_path / "real", target_is_directory=True)
    for _ in range(2):  # a second export reads the manifest back through the link
        result = cli("export", out, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["files"] == 8
    assert len(list((tmp_path / "real").rglob("*.jpg"))) == 8


def test_classes_that_cannot_be_folders_are_refused_before_anything_is_written(
    cli, home, tmp_path, catalog
):
    make_catalog(cli, tmp_path)
    with catalog.writing() as session:  # as a catalog from before names were checked could be
        set_setting(session, key="classes", value=["happy", "unhappy", "un\nsure"])
    out = tmp_path / "out"
    result = cli("export", out)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "'un\\x0asure' cannot be a class name" in result.stderr
    assert not out.exists()
