"""``curator crawl``."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from curator.cli.common import (
    conflict_note,
    default_author,
    handle_errors,
    open_settings_catalog,
    print_json,
    settings_of,
    stderr,
    stdout,
    threshold_option,
)
from curator.defaults import CRAWL, DEFAULT_THRESHOLD, ENGINE_NAMES, LIMITS, REJECT_HELP
from curator.display import escape_controls, escape_controls_in

if TYPE_CHECKING:
    from curator.crawl.query import CrawlProgress

#: Seconds between two progress lines when stderr is not a terminal (a log file, a pipe).
PLAIN_EVERY = 5.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def plain_status(p: CrawlProgress, seconds: float) -> str:
    """One line for a log: ``crawling 'q' (bing): added 16/100, failed 3, 0:12``."""
    c = p.counts
    parts = [f"added {p.added}/{p.target}", f"failed {c.get('failed', 0)}"]
    for key, name in (
        ("exact_duplicate", "duplicates"),
        ("near_duplicate", "near duplicates"),
        ("known", "known"),
    ):
        if c.get(key):
            parts.append(f"{name} {c[key]}")
    engine = f" ({p.engine})" if p.engine else ""
    return f"crawling '{escape_controls(p.query)}'{engine}: {', '.join(parts)}, {_clock(seconds)}"


def fitted_status(p: CrawlProgress, seconds: float, width: int) -> Text:
    """The terminal's status line within ``width`` columns: whole parts are left out, the least
    telling first, rather than every column cut into an ellipsis (``2…``)."""
    c = p.counts
    extras = [
        f"failed {c.get('failed', 0)}",
        *(f"{name} {c[key]}" for key, name in _EXTRAS if c.get(key)),
    ]
    query = f"'{escape_controls(p.query)}'"
    bar = 24
    while True:
        head = " ".join(x for x in ("crawling", query) if x)
        numbers = " · ".join([f"added {p.added}/{p.target}", *extras])
        used = len(head) + 1 + len(numbers) + 1 + len(_clock(seconds))
        if used + (bar + 1 if bar else 0) <= width:
            break
        if bar > 10:
            bar = max(10, width - used - 1)
        elif bar:
            bar = 0
        elif extras:
            extras.pop()
        elif query:
            query = ""
        else:
            break  # narrower than "crawling added N/M 0:00": the terminal crops it
    line = Text(head + " ")
    if bar:
        done = bar * p.added // p.target if p.target else bar
        line.append("━" * done, style="bar.finished" if done == bar else "bar.complete")
        line.append("━" * (bar - done), style="bar.back")
        line.append(" ")
    return line.append(f"{numbers} {_clock(seconds)}")


_EXTRAS = (("exact_duplicate", "dup"), ("near_duplicate", "near"), ("known", "known"))


class _LiveStatus:
    """What a terminal shows while a crawl runs: one line, drawn again to the width it has."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.progress: CrawlProgress | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.progress is not None:
            seconds = time.monotonic() - self.started
            yield fitted_status(self.progress, seconds, options.max_width)


@contextmanager
def crawl_progress(console: Console) -> Iterator[Callable[[CrawlProgress], None]]:
    """Progress on ``console`` (stderr), from the first update on: in a terminal, a live line
    fitted to its width; elsewhere (a log file, a pipe), a plain line every `PLAIN_EVERY`
    seconds and one at the end, with no bar or cursor movement, and none at all for a crawl
    that ends sooner or stops on an error (so that the error stays its only line)."""
    started = time.monotonic()
    if console.is_terminal:
        status = _LiveStatus()
        live = Live(status, console=console, refresh_per_second=4, transient=False)

        def draw(p: CrawlProgress) -> None:
            if status.progress is None:
                live.start()
            status.progress = p

        try:
            yield draw
        finally:
            if status.progress is not None:
                live.stop()
        return
    shown: dict[str, Any] = {"next": started + PLAIN_EVERY, "last": None, "printed": None}

    def write(p: CrawlProgress) -> None:
        last = shown["last"]
        if last is not None and last.query != p.query and shown["printed"] == last.query:
            console.print(Text(plain_status(last, time.monotonic() - started)))
        shown["last"] = p
        if time.monotonic() >= shown["next"]:
            console.print(Text(plain_status(p, time.monotonic() - started)))
            shown["next"] = time.monotonic() + PLAIN_EVERY
            shown["printed"] = p.query

    yield write
    if shown["printed"] is not None and shown["last"] is not None:
        console.print(Text(plain_status(shown["last"], time.monotonic() - started)))


def _print_summary(results: dict[str, Any], seconds: float) -> None:
    for query, r in escape_controls_in(results).items():  # queries, reasons: from outside
        earlier = f", {r['already']} from earlier runs" if r["already"] else ""
        stdout.print(
            f"'{query}' ({r['engine']}): added {r['added']} (target {r['target']}{earlier})"
        )
        reasons = ", ".join(f"{k} {v}" for k, v in r["failed_by_reason"].items())
        rows = [
            ("exact duplicates", r["exact_duplicate"], ""),
            ("near duplicates", r["near_duplicate"], ""),
            ("failed", r["failed"], reasons),
            ("already known", r["known"], "URLs fetched by an earlier crawl, not fetched again"),
        ]
        if "to_retry" in r:
            note = "URLs of earlier runs that failed for a passing reason"
            rows.append(("to retry", r["to_retry"], note))
        if r.get("label_conflicts"):
            rows.append(("label conflicts", r["label_conflicts"], conflict_note(r)))
        if r["pages"] or r["pages_failed"]:
            rows.append(("result pages", r["pages"], _pages_note(r)))
        if r.get("hosts_slowed"):
            note = "a request timed out or dripped: one request at a time from then on"
            rows.append(("hosts slowed", r["hosts_slowed"], note))
        for name, value, note in rows:
            stdout.print(f"  {name:<18}{value:>6}" + (f"   ({note})" if note else ""))
        for engine, why in r.get("engines_skipped", {}).items():
            stdout.print(f"  skipped {engine}: {why}")
    stdout.print(f"done in {seconds:.1f} s")


def _pages_note(r: dict[str, Any]) -> str:
    notes = []
    if r.get("pages_without_images"):
        notes.append(f"{r['pages_without_images']} without images")
    if r["pages_failed"]:
        reasons = ", ".join(f"{k} {v}" for k, v in r["pages_failed_by_reason"].items())
        notes.append(f"{r['pages_failed']} failed: {reasons}")
    return "; ".join(notes)


def crawl_command(
    ctx: typer.Context,
    queries: list[str] = typer.Argument(
        ..., help="Search queries (sites for --engine greedy, a URL-list file for urls)."
    ),
    engine: str = typer.Option(
        "bing",
        "--engine",
        "-e",
        help=f"One of: {', '.join(ENGINE_NAMES)}; or search engines separated by commas "
        "(bing,google), each tried in turn when the one before cannot be reached or its result "
        "pages can no longer be read.",
    ),
    label: str | None = typer.Option(
        None, "--label", "-l", help="A weak label for every image found (origin: query)."
    ),
    relabel: bool = typer.Option(
        False,
        "--relabel",
        help="Where --label differs from the label an image's group already has, replace it "
        "(never a person's); without it the label is kept and the conflict reported.",
    ),
    max_images: int = typer.Option(
        CRAWL["max_images"],
        "--max",
        min=1,
        help="Images to add per query, counting earlier runs of it.",
    ),
    threads: int = typer.Option(
        CRAWL["threads"],
        min=1,
        max=64,
        help="Download threads; a download running far longer than the others gives its place "
        "to a spare thread, up to as many spares as threads.",
    ),
    per_host: int = typer.Option(CRAWL["per_host"], min=1, help="Requests at once to one host."),
    delay: float = typer.Option(
        CRAWL["delay"], min=0.0, help="Seconds between requests to one host."
    ),
    timeout: float = typer.Option(
        CRAWL["read_timeout"],
        min=1.0,
        help="Seconds to wait for a silent server (within --deadline).",
    ),
    deadline: float = typer.Option(
        CRAWL["deadline"],
        min=1.0,
        help="Seconds one URL may cost in all: its redirects, retries and waits between them "
        "included. A download still arriving then fails as too-slow and is not retried; a host "
        "that let a request time out or dripped gets one request at a time from then on.",
    ),
    retries: int = typer.Option(
        CRAWL["retries"],
        min=0,
        help="Retries on 429, 5xx, timeouts and connection errors, within --deadline.",
    ),
    max_pages: int = typer.Option(
        CRAWL["max_pages"], min=1, help="Result (or site) pages per query."
    ),
    max_bytes: int = typer.Option(LIMITS["max_bytes"], help="Refuse larger downloads."),
    max_pixels: int = typer.Option(LIMITS["max_pixels"], help="Refuse images with more pixels."),
    min_side: int = typer.Option(LIMITS["min_side"], help="Refuse images with a shorter side."),
    reject_issues: str | None = typer.Option(
        None, "--reject-issues", help=REJECT_HELP, metavar="ISSUE,ISSUE"
    ),
    ignore_noai: bool = typer.Option(
        False, "--ignore-noai", help="Also keep images whose X-Robots-Tag says noai."
    ),
    flickr_key: str | None = typer.Option(
        None, "--flickr-key", help="Flickr API key [env: FLICKR_API_KEY]."
    ),
    use_proxy_env: bool = typer.Option(
        False, "--use-proxy-env", help="Honour HTTP(S)_PROXY from the environment."
    ),
    allow_private: bool = typer.Option(
        False,
        "--allow-private",
        help="Also fetch from loopback, private and link-local addresses, for crawling your "
        "own intranet or a local mirror (refused by default: a public page must not make "
        "curator fetch from inside your network).",
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Fetch again only the URLs that earlier runs of the same searches could not fetch "
        "for a passing reason (a timeout, too-slow, a connection error, 429 or 5xx), within "
        "--max; no result page is fetched, nothing else is.",
    ),
    author: str = typer.Option(default_author(), help="Who the label events are recorded for."),
    threshold: int = threshold_option(DEFAULT_THRESHOLD),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Gather images from image search into the catalog, safely and resumably.

    Every image goes through the same validation, hashing, duplicate checks and storage as
    curator import; every URL tried, failed ones included, is recorded with its page, engine
    and query. URLs seen by an earlier crawl are not fetched again (those that failed for a
    passing reason are, when the results list them again; --retry-failed fetches only those),
    and --max counts images added over all runs of the same search: run an interrupted crawl
    again to continue it.

    Example:

        curator crawl "happy couple" "smiling couple" --label happy --max 500
        curator crawl urls.txt --engine urls --label unhappy
        curator crawl example.com --engine greedy --max 50
        curator crawl "happy couple" --retry-failed
        curator crawl "happy couple" --reject-issues small,low-information
    """
    from curator.crawl.http import FetchPolicy
    from curator.crawl.runner import CrawlOptions, crawl
    from curator.ingest.health import parse_issue_list, reject_limits
    from curator.ingest.imaging import Limits
    from db.catalog import open_catalog

    settings = settings_of(ctx)
    refused = parse_issue_list(reject_issues) if reject_issues is not None else []
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    if refused:
        limits = reject_limits(open_settings_catalog(settings), limits, refused)
    options = CrawlOptions(
        engine=engine,
        max_images=max_images,
        threads=threads,
        label=label,
        relabel=relabel,
        author=author,
        threshold=threshold,
        policy=FetchPolicy(
            read_timeout=timeout,
            deadline=deadline,
            max_bytes=max_bytes,
            retries=retries,
            per_host=per_host,
            delay=delay,
            respect_noai=not ignore_noai,
            allow_private=allow_private,
        ),
        limits=limits,
        flickr_key=flickr_key or os.environ.get("FLICKR_API_KEY"),
        max_pages=max_pages,
        trust_env=use_proxy_env,
        retry_failed=retry_failed,
    )
    started = time.monotonic()
    with crawl_progress(stderr) as update:
        # opened once the first result page has come back (no network: no home made)
        opener = functools.partial(open_catalog, settings.db_url)
        results = crawl(opener, settings.home, queries, options, on_progress=update)
    if as_json:
        print_json({"engine": engine, "queries": results})
    else:
        _print_summary(results, time.monotonic() - started)


def register(app: typer.Typer) -> None:
    app.command("crawl")(handle_errors(crawl_command))
