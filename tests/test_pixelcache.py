"""The cache of pictures decoded at a model's size (classifier/pixelcache.py): the same
pixels as decoding, read from the entry while the original is unchanged, decoded again when
the original changed, at another size, or the entry is torn; a removed original fails as it
would uncached."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from classifier import images
from classifier.data import CatalogDataset, Example, decode_examples
from classifier.pixelcache import PixelCache
from classifier.score import PictureDataset
from tests.helpers import imagefiles as f


def _decoded(path: Path, size: int, fit: str = "pad") -> np.ndarray:
    return np.asarray(images.load(str(path), size, fit)).transpose(2, 0, 1)


def test_a_kept_picture_is_the_decoded_one_and_is_read_from_its_entry(tmp_path: Path):
    original = f.jpeg(tmp_path / "a.jpg", f.picture(1, (200, 150)))
    cache = PixelCache(tmp_path / "cache", size=32, fit="pad")
    first = cache.load(str(original))
    assert first.shape == (3, 32, 32) and np.array_equal(first, _decoded(original, 32))
    entry = cache.entry(str(original))
    assert entry.is_file()
    # Mark the entry's pixels: a read that returns the mark read the entry, not the JPEG.
    raw = bytearray(entry.read_bytes())
    raw[-1] ^= 0xFF
    entry.write_bytes(bytes(raw))
    assert cache.load(str(original))[2, 31, 31] == first[2, 31, 31] ^ 0xFF


def test_a_changed_original_a_torn_entry_and_another_size_decode_again(tmp_path: Path):
    original = f.jpeg(tmp_path / "a.jpg", f.picture(1, (200, 150)))
    cache = PixelCache(tmp_path / "cache", size=32, fit="pad")
    cache.load(str(original))
    # The original rewritten with another picture (another size and time): decoded again.
    f.jpeg(original, f.picture(2, (120, 160)))
    os.utime(original, ns=(10**18, 10**18))
    assert np.array_equal(cache.load(str(original)), _decoded(original, 32))
    # An entry cut short, as a crash in another writer could not leave it but a disk might.
    entry = cache.entry(str(original))
    entry.write_bytes(entry.read_bytes()[:100])
    assert np.array_equal(cache.load(str(original)), _decoded(original, 32))
    # A model reading another size (or fit) has its own folder: never the 32 px pixels.
    other = PixelCache(tmp_path / "cache", size=48, fit="crop")
    assert np.array_equal(other.load(str(original)), _decoded(original, 48, "crop"))
    assert other.entry(str(original)) != entry and entry.is_file()
    # A stray temporary file from a killed writer is never read.
    (entry.parent / f".tmp-1-{entry.name}").write_bytes(b"half")
    assert np.array_equal(cache.load(str(original)), _decoded(original, 32))


def test_a_removed_original_fails_as_uncached_and_prune_drops_entries(tmp_path: Path):
    kept, gone = (f.jpeg(tmp_path / f"{n}.jpg", f.picture(n, (90, 60))) for n in (1, 2))
    cache = PixelCache(tmp_path / "cache", size=24, fit="pad")
    cache.load(str(kept)), cache.load(str(gone))
    gone.unlink()
    with pytest.raises(FileNotFoundError):
        cache.load(str(gone))
    assert cache.prune({str(kept)}) == 1
    assert cache.entry(str(kept)).is_file() and not cache.entry(str(gone)).exists()


def test_training_and_scoring_read_the_same_pixels_through_the_cache(tmp_path: Path):
    paths = [f.jpeg(tmp_path / f"{n}.jpg", f.picture(n, (160, 120), n % 2 == 0)) for n in range(6)]
    examples = [Example(n, str(p), n % 2) for n, p in enumerate(paths)]
    plain, _ = decode_examples(examples, size=40, workers=0)
    for _ in range(2):  # the first pass keeps them, the second reads them back
        cached, failed = decode_examples(
            examples, size=40, workers=0, cache=str(tmp_path / "cache")
        )
        assert not failed and torch.equal(plain, cached)
    dataset = CatalogDataset(examples, size=40, cache=str(tmp_path / "cache"))
    assert torch.equal(dataset[3][0], plain[3])
    cache = str(tmp_path / "cache")
    scoring = PictureDataset(
        [str(p) for p in paths], size=40, fit="pad", describe=lambda _p, e: str(e), cache=cache
    )
    assert torch.equal(scoring[5][0], plain[5])
    paths[0].unlink()  # a picture gone from disk is a failure with a reason, as uncached
    _, failed = decode_examples(examples, size=40, workers=0, cache=str(tmp_path / "cache"))
    assert list(failed) == [0] and "FileNotFoundError" in failed[0]
