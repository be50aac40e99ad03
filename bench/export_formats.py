"""Export speed: each format of curator export against the bare writing of the same bytes.

    python bench/export_formats.py [--images 300] [--repeat 3]

On a catalog of generated 1-megapixel JPEGs (1152 x 864, made and imported once under
.bench/), times, in this process, each format written afresh into an empty folder
(--copy for the folder formats, so that every byte is written, as a shard must be):

* imagefolder, hf, label-studio: one copied file per picture, and their metadata;
* parquet, webdataset: the same bytes in shards of 50 MB;

and, against them, the bare baseline of the same bytes: every stored original read and
written into one tar file with Python's tarfile (for the tar shards), into one Parquet
table with pyarrow (for Parquet), and copied file by file with shutil (for the folders).
Each format and its baseline run in turn. The ratio is curator's time over the baseline's:
what opening the catalog, checking OUT, the records (hashes, sources, labels, predictions),
the manifest and the rename of each file cost.
"""

from __future__ import annotations

import argparse
import functools
import io
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import curator  # noqa: E402
from curator.export import export_imagefolder  # noqa: E402
from curator.formats import export_format  # noqa: E402


def make_catalog(n: int) -> Path:
    home = BENCH / f"export-home-{n}"
    if (home / ".built").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    folder = BENCH / f"export-pictures-{n}"
    rng = np.random.default_rng(0)
    for label in ("happy", "unhappy"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    print(f"making and importing {n} pictures (once)...", flush=True)
    for i in range(n):
        blocks = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        picture = Image.fromarray(blocks, "RGB").resize((1152, 864), Image.Resampling.BICUBIC)
        noise = rng.integers(0, 24, (864, 1152, 3), dtype=np.uint8)
        picture = Image.fromarray(np.asarray(picture) // 2 + noise)
        picture.save(folder / random.Random(i).choice(["happy", "unhappy"]) / f"{i}.jpg")
    with curator.open(home) as catalog:
        for label in ("happy", "unhappy"):
            catalog.import_paths([folder / label], label=label)
    (home / ".built").touch()
    return home


def originals(home: Path) -> list[Path]:
    with curator.open(home) as catalog:
        return [r.path for r in catalog.image_rows()]


def bare_tar(paths: list[Path], out: Path) -> None:
    with tarfile.open(out / "all.tar", "w") as tar:
        for path in paths:
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def bare_parquet(paths: list[Path], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image": [p.read_bytes() for p in paths], "name": [p.name for p in paths]})
    pq.write_table(table, out / "all.parquet", row_group_size=100)


def bare_copy(paths: list[Path], out: Path) -> None:
    for path in paths:
        shutil.copyfile(path, out / path.name)


def once(write: Callable[[Path], object]) -> float:
    with tempfile.TemporaryDirectory(dir=BENCH) as scratch:
        out = Path(scratch) / "out"
        out.mkdir()
        start = time.perf_counter()
        write(out)
        return time.perf_counter() - start


def timed(ours: Callable[[Path], object], bare: Callable[[Path], object], repeat: int):
    """Median seconds of each, the two run in turn so that both meet the same machine."""
    pairs = [(once(ours), once(bare)) for _ in range(repeat)]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = make_catalog(args.images)
    paths = originals(home)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} pictures, {megabytes:.0f} MB; median of {args.repeat} runs")

    def ours(fmt: str) -> Callable[[Path], object]:
        def write(out: Path) -> object:
            with curator.open(home) as catalog, catalog.db.reading() as session:
                if fmt == "imagefolder":
                    return export_imagefolder(session, home=home, out=out, link=False)
                return export_format(session, fmt, home=home, out=out, link=False, shard_mb=50)

        return write

    baselines = {"tar": bare_tar, "parquet": bare_parquet, "copy": bare_copy}
    rows = [
        ("webdataset", "tar"),
        ("parquet", "parquet"),
        ("hf", "copy"),
        ("imagefolder", "copy"),
        ("label-studio", "copy"),
    ]
    print(f"{'format':<14}{'seconds':>9}{'MB/s':>8}   baseline{'':>5}{'seconds':>9}  ratio")
    for fmt, peer in rows:
        bare = baselines[peer]
        seconds, base = timed(ours(fmt), functools.partial(bare, paths), args.repeat)
        print(
            f"{fmt:<14}{seconds:>9.2f}{megabytes / seconds:>8.0f}   {peer:<13}"
            f"{base:>9.2f}  {seconds / base:.2f}x"
        )


if __name__ == "__main__":
    main()
