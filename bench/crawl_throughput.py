"""Crawl throughput: curator's crawl against icrawler's stock crawler, same server, same run;
and what stragglers cost a crawl.

    python bench/crawl_throughput.py [--images 500] [--latency 0.05] [--threads 8] [--repeat 3]
                                     [--stragglers 4] [--straggler-images 200] [--deadline 60]

A loopback server (tests/helpers/crawl_server.py) plays Bing: result pages in Bing's format listing
`--images` distinct JPEGs (480 x 360), each answered after `--latency` seconds. The images are
spread over ten ports of 127.0.0.1, ten hosts to a crawler, as search results spread over many
hosts; `--hosts 1` puts them all on one.

* curator: ``curator.crawl.crawl`` with its defaults (per-host limit 4, retries, byte cap,
  deadline) into a fresh catalog: every image fully decoded, validated, hashed twice,
  stored, thumbnailed, checked for duplicates and recorded with its source.
* icrawler: its stock ``BingImageCrawler`` (BingFeeder, BingParser, ImageDownloader) with the
  same number of download threads, writing files to a folder.

Each run is a fresh process; they alternate. Prints images per second and the ratio.

The straggler case: `--straggler-images` of those images, and `--stragglers` URLs among them
(every 50th place from the first) that drip a valid JPEG one byte every 0.25 s, on as many of
the hosts, crawled by curator with a budget of `--deadline` seconds per URL and a --max above
what can be added (so the crawl waits for the stragglers, as a crawl of every result does);
against the same crawl without the stragglers, in the same run. Goals: the stragglers cost at
most their budget and 10 % more, and the images are recorded at the same rate while they run.
`--stragglers 0` leaves the case out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg  # noqa: E402

OURS = """
import json, sys, time
import curator
from curator.crawl.http import FetchPolicy
routes, home, n, threads = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# The ten image hosts are ports of 127.0.0.1: private addresses, allowed here.
extra = {"per_host": int(sys.argv[5])} if len(sys.argv) > 5 else {}
policy = FetchPolicy(allow_private=True, **extra)
t = time.perf_counter()  # timed from before the catalog is made, as in curator crawl
catalog = curator.open(home)
result = catalog.crawl(["bench"], routes=routes, threads=threads, max_images=n, policy=policy)
print(time.perf_counter() - t, result["bench"]["added"])
"""

THEIRS = """
import json, logging, os, sys, time
from icrawler.builtin import BingImageCrawler
from curator.crawl.addresses import AddressGuard
from curator.crawl.http import _Adapter
routes, folder = json.loads(sys.argv[1]), sys.argv[2]
n, threads = int(sys.argv[3]), int(sys.argv[4])
crawler = BingImageCrawler(downloader_threads=threads, storage={"root_dir": folder},
                           log_level=logging.CRITICAL)
adapter = _Adapter(threads + 4, (10, 15), routes, AddressGuard(allow_private=True))
crawler.session.mount("https://", adapter)
crawler.session.mount("http://", adapter)
t = time.perf_counter()
crawler.crawl(keyword="bench", max_num=n)
print(time.perf_counter() - t, len(os.listdir(folder)))
"""


STRAGGLERS = """
import json, sys, time
import curator
from curator.crawl.http import FetchPolicy
routes, home, query = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
good, most, threads = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
deadline = float(sys.argv[7])
policy = FetchPolicy(allow_private=True, deadline=deadline)
t = time.perf_counter()
reached = []
def progress(p):  # called at least every 0.1 s while the crawl records
    if not reached and p.added >= good:
        reached.append(time.perf_counter() - t)
catalog = curator.open(home)
result = catalog.crawl([query], routes=routes, threads=threads, max_images=most, policy=policy,
                       on_progress=progress)
wall = time.perf_counter() - t
print(wall, reached[0] if reached else wall, result[query]["added"])
"""


def run(code: str, *args: str) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    seconds, count = done.stdout.split()[-2:]
    return float(seconds), int(count)


def straggler_case(server: EngineServer, args: argparse.Namespace) -> dict[str, float]:
    """Wall time and time to the last good image, without and with the stragglers."""
    good = [server.image_url(f"{i:04d}.jpg", port_index=i) for i in range(args.straggler_images)]
    server.results["clean"] = [(url, None) for url in good]
    dripping = list(good)
    for k in reversed(range(args.stragglers)):
        name = f"drip-{k}.jpg"
        # A valid JPEG, a byte every 0.25 s: whole after hours, cut at the budget.
        server.images[name] = Behaviour(good_jpeg(9000 + k), drip=0.25)
        dripping.insert(50 * k, server.image_url(name, port_index=k))
    server.results["stragglers"] = [(url, None) for url in dripping]
    routes = json.dumps(server.routes)
    most = str(len(dripping))  # above what can be added: the crawl waits for the stragglers
    figures: dict[str, list[float]] = {"clean": [], "clean_good": [], "with": [], "with_good": []}
    for _ in range(args.repeat):
        for query, key in (("clean", "clean"), ("stragglers", "with")):
            with tempfile.TemporaryDirectory() as home:
                done = subprocess.run(
                    [sys.executable, "-c", STRAGGLERS, routes, home, query,
                     str(len(good)), most, str(args.threads), str(args.deadline)],
                    capture_output=True, text=True, cwd=ROOT, check=False,
                )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
            wall, to_good, added = done.stdout.split()[-3:]
            assert int(added) == len(good), f"curator added {added} of {len(good)}"
            figures[key].append(float(wall))
            figures[f"{key}_good"].append(float(to_good))
    med = {key: statistics.median(values) for key, values in figures.items()}
    return {
        "straggler_images": len(good),
        "stragglers": args.stragglers,
        "deadline_s": args.deadline,
        "clean_wall_s": round(med["clean"], 2),
        "straggler_wall_s": round(med["with"], 2),
        "overrun_of_budget": round((med["with"] - med["clean"]) / args.deadline, 3),
        "clean_recorded_per_s": round(len(good) / med["clean_good"], 1),
        "straggler_recorded_per_s": round(len(good) / med["with_good"], 1),
        "recording_rate_ratio": round(med["clean_good"] / med["with_good"], 2),
    }


def print_stragglers(r: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"{r['straggler_images']} images and {r['stragglers']} dripping URLs over "
        f"{args.hosts} host(s), a budget of {r['deadline_s']:g} s per URL, median of {args.repeat}"
    )
    print(
        f"  without stragglers  {r['clean_wall_s']:>7.1f} s   "
        f"(images recorded at {r['clean_recorded_per_s']:.1f}/s)"
    )
    print(
        f"  with stragglers     {r['straggler_wall_s']:>7.1f} s   "
        f"(images recorded at {r['straggler_recorded_per_s']:.1f}/s while they run)"
    )
    print(
        f"  the stragglers cost {r['overrun_of_budget']:.2f} of their budget (goal: at most 1.10)"
    )
    print(
        f"  images recorded while they run at {r['recording_rate_ratio']:.2f} of the pace "
        "without them (goal: 1)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-host", type=int, help="curator's per-host limit (default: its own)")
    parser.add_argument("--stragglers", type=int, default=4)
    parser.add_argument("--straggler-images", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=60.0, help="the budget per URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.stragglers and args.straggler_images > args.images:
        parser.error("--straggler-images are some of the --images: at most as many")
    server = EngineServer(image_delay=args.latency).start(ports=args.hosts)
    for i in range(args.images):
        server.add_image(f"{i:04d}.jpg", Behaviour(good_jpeg(5000 + i)))
    server.results["bench"] = [
        (server.image_url(f"{i:04d}.jpg", port_index=i), None) for i in range(args.images)
    ]
    routes = json.dumps(server.routes)
    ours, theirs = [], []
    stragglers: dict[str, float] = {}
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as home:
                extra = [str(args.per_host)] if args.per_host else []
                seconds, added = run(
                    OURS, routes, home, str(args.images), str(args.threads), *extra
                )
            assert added == args.images, f"curator added {added} of {args.images}"
            ours.append(added / seconds)
            with tempfile.TemporaryDirectory() as folder:
                seconds, saved = run(THEIRS, routes, folder, str(args.images), str(args.threads))
            theirs.append(saved / seconds)
        if args.stragglers:
            stragglers = straggler_case(server, args)
    finally:
        server.stop()
    result = {
        "images": args.images,
        "latency_s": args.latency,
        "threads": args.threads,
        "hosts": args.hosts,
        "curator_added_per_s": round(statistics.median(ours), 1),
        "icrawler_saved_per_s": round(statistics.median(theirs), 1),
    }
    result["ratio"] = round(result["curator_added_per_s"] / result["icrawler_saved_per_s"], 2)
    result.update(stragglers)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.images} images, {args.latency * 1000:.0f} ms each, over {args.hosts} host(s), "
        f"{args.threads} download threads, median of {args.repeat}"
    )
    print(
        f"  curator crawl (validated, hashed, catalogued)  {result['curator_added_per_s']:>7.1f}/s"
    )
    print(
        f"  icrawler BingImageCrawler (files saved)        {result['icrawler_saved_per_s']:>7.1f}/s"
    )
    print(f"  ratio: {result['ratio']:.2f}x")
    if stragglers:
        print_stragglers(stragglers, args)


if __name__ == "__main__":
    main()
