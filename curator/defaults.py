"""Defaults the command line shows in its help, kept apart from the heavy modules that use
them so that ``curator --help`` starts quickly. Tests check they match their users."""

from __future__ import annotations

#: Near-duplicate distance in bits of 64; measured by bench/hash_threshold.py (docs/catalog.md).
DEFAULT_THRESHOLD = 10
#: What an input may be (curator.ingest.imaging.Limits).
LIMITS = {"max_bytes": 64 * 1024 * 1024, "max_pixels": 80_000_000, "min_side": 32}
#: The crawl engines (curator.crawl.engines.ENGINES).
ENGINE_NAMES = ("bing", "google", "baidu", "flickr", "greedy", "urls")
