"""Import throughput: curator's whole import against imagededup's hashing alone, same run.

    python bench/import_throughput.py [--images 2000] [--workers N] [--repeat 3]

On a generated folder of about 1-megapixel JPEGs (1152 x 864, made once and kept under
.bench/), times, each in a fresh process with the same number of worker processes:

* curator: ``import_paths`` into a fresh catalog: full decode, validation, sha256, pHash and
  mirror pHash, content-addressed storage, thumbnail, catalog rows, near-duplicate check;
* imagededup: ``PHash().encode_images(image_dir, num_enc_workers=N)``: hashing alone;
* curator without the image properties (`curator.ingest.properties.measure` skipped in that
  process only), to state what measuring them at ingest costs (``curator check``);
  ``--no-peer`` times only the two imports, without imagededup;
* in this process, `curator.ingest.imaging.analyze` on the same files with and without the
  properties, one after the other for each file (``--micro`` files, ``--repeat`` rounds):
  what the properties add to the door's own work, robust to load that drifts, as both
  timings of a file meet the same load. ``--micro-only`` runs this part alone.

Of the imports, besides the medians of each kind, the median over rounds of the cost each
round's pair of runs gives, and the processor time the import and its workers used (user and
system, from ``getrusage``): on a machine whose cores are all busy, the throughput an import
loses is the share of processor time it adds, and that figure moves less with other load.

Interpreter start and module imports are left out of both. imagededup is installed only for
this benchmark, beside the project rather than in it:

    pip install --no-deps --target .bench/imagededup-site imagededup==0.3.3.post2 \\
        matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil \\
        scikit-learn joblib threadpoolctl tqdm narwhals cloudpickle
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
SITE = BENCH / "imagededup-site"
sys.path.insert(0, str(ROOT))

OURS = """
import resource, sys, time
import curator
home, folder, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
if sys.argv[4:] == ["bare"]:  # the same import without the image properties, to cost them
    import curator.ingest.imaging as imaging
    imaging.measure = lambda *args, **kwargs: None
catalog = curator.open(home)

def cpu():  # this process and its workers (reaped when the import's pool shuts down)
    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime

c, t = cpu(), time.perf_counter()
counts = catalog.import_paths([folder], author="bench", workers=workers)
print(time.perf_counter() - t, cpu() - c, counts["added"] + counts["near_duplicate"])
"""

THEIRS = """
import sys, time, logging
logging.disable(logging.CRITICAL)
from imagededup.methods import PHash
folder, workers = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
encodings = PHash(verbose=False).encode_images(image_dir=folder, num_enc_workers=workers)
print(time.perf_counter() - t, len(encodings))
"""


def _make(args: tuple[Path, int]) -> None:
    from curator.demo.synthetic import draw_couple

    path, seed = args
    rng = random.Random(seed)
    draw_couple(rng, seed % 2 == 0, (1152, 864)).save(path, "JPEG", quality=90)


def ensure_images(count: int) -> Path:
    folder = BENCH / f"photos-1mp-{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"generating {count} JPEGs of 1152 x 864 in {folder} (once)...", flush=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_make, [(folder / f"{i:05d}.jpg", i) for i in range(count)], chunksize=16))
    return folder


def run(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, ...]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-2000:]}")
    *seconds, items = done.stdout.split()[-3 if code is OURS else -2 :]
    return (*map(float, seconds), int(items))


def micro(folder: Path, count: int, rounds: int) -> tuple[float, float, float]:
    """Seconds per file of analyze with and without the properties (each the median of
    `rounds` rounds), and the median over rounds of their ratio less one."""
    import time

    import curator.ingest.imaging as imaging
    from curator.ingest.importer import keep_freed_memory

    keep_freed_memory()  # as each import worker does
    blobs = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:count]]
    measure = imaging.measure
    skip = lambda *args, **kwargs: None  # noqa: E731
    imaging.warm_up()
    full, bare, ratios = [], [], []
    for _ in range(rounds):
        spent = {True: 0.0, False: 0.0}
        for i, blob in enumerate(blobs):
            for with_props in (i % 2 == 0, i % 2 == 1):  # which goes first alternates
                # the one swap the benchmark makes: measuring or not, the same decode
                imaging.measure = measure if with_props else skip  # type: ignore[assignment]
                start = time.perf_counter()
                imaging.analyze(blob)
                spent[with_props] += time.perf_counter() - start
        imaging.measure = measure
        full.append(spent[True] / len(blobs))
        bare.append(spent[False] / len(blobs))
        ratios.append(spent[True] / spent[False] - 1)
    return statistics.median(full), statistics.median(bare), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="leave imagededup out")
    parser.add_argument("--micro", type=int, default=100, help="files analyzed in process")
    parser.add_argument("--micro-only", action="store_true", help="only the in-process part")
    args = parser.parse_args()
    if args.micro_only:
        folder = ensure_images(args.images)
        report_micro(*micro(folder, args.micro, args.repeat), args.micro, args.repeat)
        return
    if not args.no_peer and not (SITE / "imagededup").is_dir():
        raise SystemExit(
            f"imagededup is not installed for the benchmark; see {__file__}'s docstring"
        )
    folder = ensure_images(args.images)
    ours: list[float] = []
    bare: list[float] = []
    cpu: dict[bool, list[float]] = {True: [], False: []}
    theirs: list[float] = []
    for _ in range(args.repeat):  # alternate, so that drifting load hits all alike
        for times, extra in ((ours, ()), (bare, ("bare",))):
            with tempfile.TemporaryDirectory(dir=BENCH) as home:
                seconds, used, added = run(OURS, home, str(folder), str(args.workers), *extra)
            assert added == args.images, f"curator imported {added} of {args.images}"
            times.append(args.images / seconds)
            cpu[not extra].append(used / args.images)
        if args.no_peer:
            continue
        seconds, encoded = run(
            THEIRS, str(folder), str(args.workers), env={"PYTHONPATH": str(SITE)}
        )
        assert encoded == args.images
        theirs.append(args.images / seconds)
    result = {
        "images": args.images,
        "workers": args.workers,
        "curator_import_per_s": round(statistics.median(ours), 1),
        "without_properties_per_s": round(statistics.median(bare), 1),
    }
    result["properties_cost"] = round(1 - statistics.median(ours) / statistics.median(bare), 3)
    # Each round's pair of runs met the same load: the median of their ratios, by wall clock
    # and by the processor time the import and its workers used (what a busy machine gives).
    result["properties_cost_paired"] = round(
        statistics.median(1 - o / b for o, b in zip(ours, bare, strict=True)), 3
    )
    result["cpu_ms_per_image"] = round(statistics.median(cpu[True]) * 1000, 3)
    result["cpu_ms_per_image_without_properties"] = round(statistics.median(cpu[False]) * 1000, 3)
    result["properties_cpu_cost"] = round(
        statistics.median(1 - b / f for f, b in zip(cpu[True], cpu[False], strict=True)), 3
    )
    if theirs:
        result["imagededup_phash_per_s"] = round(statistics.median(theirs), 1)
        result["ratio"] = round(
            result["curator_import_per_s"] / result["imagededup_phash_per_s"], 2
        )
    in_process = micro(folder, args.micro, args.repeat)
    result["analyze_ms"] = round(in_process[0] * 1000, 3)
    result["analyze_without_properties_ms"] = round(in_process[1] * 1000, 3)
    result["properties_add_to_analyze"] = round(in_process[2], 3)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.images} JPEGs of 1152 x 864, {args.workers} worker processes")
    print(f"images per second, median of {args.repeat} runs each, alternating:")
    ours_s, bare_s = result["curator_import_per_s"], result["without_properties_per_s"]
    print(f"  curator import (decode, validate, 2 hashes, store, thumbnail, rows) {ours_s:>7.1f}/s")
    print(f"  the same without the image properties                              {bare_s:>7.1f}/s")
    print(f"  image properties cost: {result['properties_cost'] * 100:.1f} % of throughput")
    print(
        f"  the same from each round's pair of runs: {result['properties_cost_paired'] * 100:.1f} %"
        " (median)"
    )
    print(
        f"processor time per image (the import and its workers): "
        f"{result['cpu_ms_per_image']:.2f} ms with the properties, "
        f"{result['cpu_ms_per_image_without_properties']:.2f} ms without: they take "
        f"{result['properties_cpu_cost'] * 100:.1f} % of it (median of the rounds' pairs)"
    )
    if theirs:
        theirs_s = result["imagededup_phash_per_s"]
        print(
            f"  imagededup PHash().encode_images (hashing only)                     "
            f"{theirs_s:>7.1f}/s"
        )
        print(f"  ratio: {result['ratio']:.2f}x")
    report_micro(*in_process, args.micro, args.repeat)


def report_micro(full: float, bare: float, extra: float, count: int, rounds: int) -> None:
    print(f"analyze() in one process, {count} files, with and without the properties in turn:")
    print(f"  {full * 1000:.2f} ms per file with them, {bare * 1000:.2f} ms without")
    print(f"  the properties add {extra * 100:.1f} % (median of {rounds} rounds)")


if __name__ == "__main__":
    main()
