"""Crawl throughput: curator's crawl against icrawler's stock crawler, same server, same run.

    python bench/crawl_throughput.py [--images 500] [--latency 0.05] [--threads 8] [--repeat 3]

A loopback server (tests/crawl_server.py) plays Bing: result pages in Bing's format listing
`--images` distinct JPEGs (480 x 360), each answered after `--latency` seconds. The images are
spread over ten ports of 127.0.0.1, ten hosts to a crawler, as search results spread over many
hosts; `--hosts 1` puts them all on one.

* curator: ``curator.crawl.crawl`` with its defaults (per-host limit 4, retries, byte cap,
  deadline) into a fresh catalog: every image fully decoded, validated, hashed twice,
  stored, thumbnailed, checked for duplicates and recorded with its source.
* icrawler: its stock ``BingImageCrawler`` (BingFeeder, BingParser, ImageDownloader) with the
  same number of download threads, writing files to a folder.

Each run is a fresh process; they alternate. Prints images per second and the ratio.
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

from tests.crawl_server import Behaviour, EngineServer, good_jpeg  # noqa: E402

OURS = """
import json, sys, time
from curator.config import load_settings
from curator.crawl.runner import CrawlOptions, crawl
from curator.crawl.http import FetchPolicy
routes, home, n, threads = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# The ten image hosts are ports of 127.0.0.1: private addresses, allowed here.
extra = {"per_host": int(sys.argv[5])} if len(sys.argv) > 5 else {}
policy = FetchPolicy(allow_private=True, **extra)
t = time.perf_counter()
result = crawl(load_settings(home=home), ["bench"],
               CrawlOptions(routes=routes, threads=threads, max_images=n, policy=policy))
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


def run(code: str, *args: str) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    seconds, count = done.stdout.split()[-2:]
    return float(seconds), int(count)


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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = EngineServer(image_delay=args.latency).start(ports=args.hosts)
    for i in range(args.images):
        server.add_image(f"{i:04d}.jpg", Behaviour(good_jpeg(5000 + i)))
    server.results["bench"] = [
        (server.image_url(f"{i:04d}.jpg", port_index=i), None) for i in range(args.images)
    ]
    routes = json.dumps(server.routes)
    ours, theirs = [], []
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


if __name__ == "__main__":
    main()
