"""Decoding JPEGs in batches where the model runs (classifier/gpudecode.py), on its CPU
side: the same code a CUDA device runs, with ``device="cpu"``. No GPU is needed; where one
is present, `score_paths` takes this path by itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classifier import images
from classifier.gpudecode import (
    JpegBytes,
    collate_bytes,
    decode_batch,
    decode_on_device,
    fit_tensor,
)
from classifier.model import DeepConnection, ModelConfig
from classifier.score import Predictor, _score_on_device, score_paths
from tests.helpers import imagefiles as f

CPU = torch.device("cpu")


def _pil(path: Path, size: int, fit: str) -> np.ndarray:
    return np.asarray(images.load(str(path), size, fit)).transpose(2, 0, 1).astype(int)


@pytest.mark.parametrize("how", ["pad", "crop", "stretch"])
def test_a_tensor_is_fitted_to_the_square_as_pillow_fits_it(tmp_path: Path, how: str):
    path = f.jpeg(tmp_path / "a.jpg", f.picture(3, (180, 120)))
    picture = torch.from_numpy(
        np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy()
    )
    fitted = fit_tensor(picture, 48, how)
    assert fitted.shape == (3, 48, 48) and fitted.dtype == torch.uint8
    assert np.abs(fitted.numpy().astype(int) - _pil(path, 48, how)).mean() < 3


def test_a_batch_decodes_jpegs_together_and_the_rest_one_by_one(tmp_path: Path):
    jpeg = f.jpeg(tmp_path / "a.jpg", f.picture(1, (160, 120)))
    turned = tmp_path / "turned.jpg"  # stored on its side, an EXIF tag says to turn it
    exif = Image.Exif()
    exif[0x0112] = 6
    f.picture(2, (120, 160)).save(turned, exif=exif.tobytes())
    png = tmp_path / "b.png"
    f.picture(4, (100, 100)).save(png)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a picture")
    paths = [str(p) for p in (jpeg, turned, png, broken, tmp_path / "gone.jpg")]
    loader = torch.utils.data.DataLoader(JpegBytes(paths), batch_size=5, collate_fn=collate_bytes)
    data, indices, read_errors = next(iter(loader))
    batch, errors = decode_batch(data, paths, size=40, fit="pad", device=CPU)
    assert indices == [0, 1, 2, 3, 4] and read_errors[4].startswith("FileNotFoundError")
    assert [bool(e) for e in errors] == [False, False, False, True, True]
    for i in (0, 1, 2):
        assert np.abs(batch[i].numpy().astype(int) - _pil(Path(paths[i]), 40, "pad")).mean() < 3


def test_scoring_on_the_device_path_gives_what_the_cpu_path_gives(tmp_path: Path):
    torch.manual_seed(0)
    model = DeepConnection(ModelConfig(backbone="resnet18", image_size=64))
    predictor = Predictor(model, CPU, amp=False)
    paths = [str(f.jpeg(tmp_path / f"{i}.jpg", f.picture(i, (128, 96)))) for i in range(5)]
    paths.append(str(tmp_path / "gone.jpg"))
    plain = [s for b in score_paths(predictor, paths, size=64, fit="pad", workers=0) for s in b]
    device = [s for b in _score_on_device(predictor, paths, 64, "pad", 4, 0, lambda *_: "")
              for s in b]  # fmt: skip
    assert [s.index for s in device] == list(range(6))
    assert device[5].probs is None and device[5].error and plain[5].probs is None
    for a, b in zip(plain[:5], device[:5], strict=True):
        assert np.abs(a.probs - b.probs).max() < 0.05
    assert not decode_on_device(CPU)
