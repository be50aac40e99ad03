"""The cache of pictures decoded at the model's size (classifier/pixelcache.py), on the CPU:
what each later run, fold and scoring pass saves by reading small raw files instead of the
originals.

    python bench/pixel_cache.py [--pictures 400] [--size 80] [--original 640x480]

On `--pictures` generated couples saved as JPEGs of `--original` pixels, in one run, each
row without the cache and with it already filled (by an earlier run: what round 2 finds
after round 1, a fold after the first, a scoring pass after training); the scoring pass is
the median of three:

1. the demo's round 2: one epoch of `classifier.train.fit` (resnet18 at `--size` px, the
   demo's model), the pictures decoded once into memory at the start as training does;
2. the same epoch with the pictures read from disk on every epoch (``cache_mb=0``, what a
   set too large for memory does);
3. a 5-fold cross-fit's data path: each fold decodes its four fifths of the pictures for
   training (the model's part is the same either way, and left out); with the cache, the
   first fold fills it;
4. a scoring pass: every picture read for the model, in the scoring DataLoader.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from classifier.config import Machine, TrainConfig  # noqa: E402
from classifier.data import Example, Examples, decode_examples  # noqa: E402
from classifier.model import ModelConfig  # noqa: E402
from classifier.score import PictureDataset  # noqa: E402
from classifier.train import fit  # noqa: E402
from curator.demo.synthetic import draw_couple  # noqa: E402


def pictures(folder: Path, n: int, size: tuple[int, int]) -> list[Example]:
    out = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        draw_couple(random.Random(i), i % 2 == 0, size).save(path, quality=90)
        out.append(Example(i + 1, str(path), i % 2))
    return out


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def one_epoch(examples: list[Example], size: int, folder: Path, machine: Machine) -> None:
    cut, tail = len(examples) * 8 // 10, len(examples) * 9 // 10
    splits = {"train": examples[:cut], "val": examples[cut:tail], "test": examples[tail:]}
    fit(
        model_cfg=ModelConfig(backbone="resnet18", image_size=size),
        cfg=TrainConfig(epochs=1, batch_size=16, weights="none", patience=1),
        examples=Examples(classes=["happy", "unhappy"], splits=splits),
        folder=folder / f"model-{time.perf_counter_ns()}",
        machine=machine,
        resume=False,
    )


def cross_fit_data(examples: list[Example], size: int, cache: str | None) -> None:
    for k in range(5):
        train = [e for i, e in enumerate(examples) if i % 5 != k]
        decode_examples(train, size=size, workers=2, cache=cache)


def score_pass(examples: list[Example], size: int, cache: str | None) -> None:
    dataset = PictureDataset(
        [e.path for e in examples], size=size, fit="pad", describe=lambda *_: "", cache=cache
    )
    for _batch in DataLoader(dataset, batch_size=32, num_workers=2):
        pass


class Rows(dict[str, tuple[float, float]]):
    """Each row printed as soon as it is measured."""

    def __setitem__(self, name: str, value: tuple[float, float]) -> None:
        super().__setitem__(name, value)
        plain, cached = value
        line = f"{plain:7.2f} s   cached {cached:7.2f} s   ({plain / cached:5.2f}x)"
        print(f"  {name:<58} {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pictures", type=int, default=400)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--original", default="640x480")
    args = parser.parse_args()
    w, h = (int(v) for v in args.original.split("x"))
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pics").mkdir()
        examples = pictures(folder / "pics", args.pictures, (w, h))
        cache = str(folder / "cache")
        size = args.size
        rows = Rows()
        print(f"{args.pictures} JPEGs of {w}x{h}, read at {size} px, on the CPU:", flush=True)
        cross_fit_data(examples[:1], size, cache)  # warm the imports, not the cache
        rows["5-fold cross-fit, data path (first fold fills the cache)"] = (
            timed(lambda: cross_fit_data(examples, size, None), 1),
            timed(lambda: cross_fit_data(examples, size, cache), 1),
        )
        rows["scoring pass (every picture read)"] = (
            timed(lambda: score_pass(examples, size, None)),
            timed(lambda: score_pass(examples, size, cache)),
        )
        for name, mb in (("pictures in memory", 2048), ("read from disk every epoch", 0)):
            rows[f"demo round 2: one epoch, {name}"] = (
                timed(
                    functools.partial(one_epoch, examples, size, folder, Machine(cache_mb=mb)), 1
                ),
                timed(
                    functools.partial(
                        one_epoch, examples, size, folder, Machine(cache_mb=mb, pixel_cache=cache)
                    ),
                    1,
                ),
            )


if __name__ == "__main__":
    main()
