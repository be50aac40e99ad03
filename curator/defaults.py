"""Defaults the command line shows in its help, kept apart from the heavy modules that use
them so that ``curator --help`` starts quickly: each is defined here once, and the settings
that use it (`curator.crawl.http.FetchPolicy`, `curator.crawl.query.CrawlOptions`,
`curator.ingest.imaging.Limits`...) read it from here, as the commands' options do. Training's
own are `classifier.config`'s, which is as light."""

from __future__ import annotations

from typing import Any

#: Near-duplicate distance in bits of 64; measured by bench/hash_threshold.py (docs/catalog.md).
DEFAULT_THRESHOLD = 10
#: What an input may be (curator.ingest.imaging.Limits); ``reject_issues``: the issue types
#: (curator check) refused at the door, none unless asked (--reject-issues).
LIMITS: dict[str, Any] = {
    "max_bytes": 64 * 1024 * 1024,
    "max_pixels": 80_000_000,
    "min_side": 32,
    "reject_issues": (),
}
#: The crawl engines (curator.crawl.engines.ENGINES).
ENGINE_NAMES = ("bing", "google", "baidu", "flickr", "greedy", "urls")
#: A crawl's reach and patience (CrawlOptions, FetchPolicy): images to add per query,
#: download threads, result pages per query; requests at once to one host and seconds
#: between two; seconds to wait for a silent server and for everything one URL may cost;
#: retries on passing failures.
CRAWL: dict[str, Any] = {
    "max_images": 100,
    "threads": 8,
    "max_pages": 200,
    "per_host": 4,
    "delay": 0.0,
    "read_timeout": 15.0,
    "deadline": 60.0,
    "retries": 3,
}
#: Scoring: pictures per batch, and processes decoding them (curator.learn.scoring).
SCORE = {"batch_size": 32, "workers": 2}
#: The port curator review listens on (a free one when it is taken).
REVIEW_PORT = 8765
#: Megabytes of pictures per shard of curator export --format parquet and webdataset: the
#: size `datasets`' push_to_hub cuts Parquet shards at, and inside the 100 MB - 1 GB that
#: WebDataset's documentation advises for reading at full speed.
EXPORT_SHARD_MB = 500.0
#: Embedding (curator.learn.embedding): the embedder `curator embed` uses, the CLIP model
#: of the clip embedder (ARCH:WEIGHTS of open_clip, or a folder), and the neighbours an
#: image's outlier score is the mean distance to (cleanlab's default k).
EMBED: dict[str, Any] = {
    "embedder": "model",
    "clip_model": "ViT-B-32:laion2b_s34b_b79k",
    "neighbours": 10,
}
#: The issue types of curator check (db.properties.ISSUES, where their thresholds are).
ISSUE_NAMES = ("blurry", "dark", "bright", "low-information", "grayscale", "odd-aspect", "small")
#: The help of --reject-issues, which import and crawl share.
REJECT_HELP = (
    "Refuse images with these issues (curator check) at the door, recorded as failed with "
    "the reason: any of " + ", ".join(ISSUE_NAMES) + "."
)
