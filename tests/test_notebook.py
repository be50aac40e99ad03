"""The catalog in a notebook: its images as a table, and a torch Dataset that trains a model
of one's own in ten lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import curator
from tests.helpers.training import blob_picture


@pytest.fixture(scope="module")
def notebook_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A catalog of 30 warm and 30 cold pictures and a near copy of one of each, labeled by
    a person, shared by the module's tests (which only read it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CURATOR_DB_URL", raising=False)
        yield make_home(tmp_path_factory.mktemp("notebook"))


def make_home(tmp_path: Path) -> Path:
    for truth, warm, seed in (("happy", True, 0), ("unhappy", False, 500)):
        folder = tmp_path / "pictures" / truth
        folder.mkdir(parents=True)
        for i in range(30):
            blob_picture(seed + i, warm).save(folder / f"{i}.jpg")
        # A near copy of the first: one picture of the group is what a model sees.
        blob_picture(seed, warm).resize((100, 75)).save(folder / "copy.jpg")
    home = tmp_path / "home"
    with curator.open(home) as catalog:
        for truth in ("happy", "unhappy"):
            catalog.import_paths([tmp_path / "pictures" / truth], label=truth, workers=1)
        rows = catalog.image_rows()
        catalog.label([r.id for r in rows if r.label == "happy"], "happy", author="ann")
        catalog.label([r.id for r in rows if r.label == "unhappy"], "unhappy", author="ann")
    return home


def test_images_are_a_dataframe_with_labels_splits_and_paths(notebook_home):
    with curator.open(notebook_home) as catalog:
        table = catalog.images(split="train", label="happy")
        everything = catalog.images(status=None)
    assert isinstance(table, pandas.DataFrame)
    assert len(table) > 10 and set(table["split"]) == {"train"}
    assert set(table["label"]) == {"happy"} and set(table["label_origin"]) == {"human"}
    assert all(pandas.Series(table["path"]).map(lambda p: Path(p).read_bytes()[:2] == b"\xff\xd8"))
    assert (everything["status"] == "duplicate").sum() >= 2 and len(everything) == 62


@pytest.fixture
def one_thread() -> Iterator[None]:
    # A model this small trains several times slower with threads fighting for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_model_of_ones_own_trains_on_the_torch_dataset_in_ten_lines(notebook_home, one_thread):
    torch.manual_seed(0)
    with curator.open(notebook_home) as catalog:
        data = catalog.torch_dataset(split="train", size=32, augment="light")
        held_out = catalog.torch_dataset(split="test", size=32) + catalog.torch_dataset(
            split="val", size=32
        )
        groups = len(catalog.images(status="active"))
    # The ten lines.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, len(data.classes)))  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _epoch in range(6):
        for x, y in DataLoader(data, batch_size=8, shuffle=True):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x, y = next(iter(DataLoader(held_out, batch_size=len(held_out))))
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    assert data.classes == ["happy", "unhappy"] and x.dtype == torch.float32
    assert x.shape[1:] == (3, 32, 32) and -3 < float(x.mean()) < 3  # normalised, not 0-255
    # One picture per near-duplicate group, each split apart.
    assert len(data) + len(held_out) == groups < 62
    assert len(set(data.image_ids)) == len(data)
    with curator.open(notebook_home) as catalog:
        plain = catalog.torch_dataset(split="train", size=32, normalized=False)
    assert plain[0][0].dtype == torch.uint8


def test_without_pandas_the_images_are_a_list_of_dicts(notebook_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with curator.open(notebook_home) as catalog:
        rows = catalog.images(split="train", label="unhappy")
        typed = catalog.image_rows(split="train", label="unhappy")
    assert isinstance(rows, list) and len(rows) == len(typed) > 10
    assert rows[0] == {**vars(typed[0]), "path": str(typed[0].path)}
