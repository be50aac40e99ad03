"""Catalog commands: import, stats, show, export (curator/cli/export.py), classes (dedup:
curator/cli/dedup.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from curator.cli.common import (
    conflict_note,
    default_author,
    handle_errors,
    open_settings_catalog,
    print_json,
    progress_bar,
    settings_of,
    stdout,
    threshold_option,
)
from curator.cli.dedup import dedup_command
from curator.cli.export import export_command
from curator.defaults import REJECT_HELP
from curator.display import escape_controls, escape_controls_in
from curator.ingest import dedup as dedup_lib
from curator.ingest.health import parse_issue_list, reject_limits
from curator.ingest.imaging import Limits
from curator.ingest.importer import ImportProgress, import_paths, some_names
from curator.stats import catalog_stats, image_details
from db.catalog import display_url
from db.labels import replace_classes
from db.settings import get_classes


def _format_counts(counts: dict[str, Any]) -> str:
    return " · ".join(
        f"{name.replace('_', ' ')} {counts.get(key, 0)}"
        for key, name in (
            ("added", "added"),
            ("exact_duplicate", "dup"),
            ("near_duplicate", "near"),
            ("failed", "failed"),
            ("unchanged", "unchanged"),
        )
    )


#: Failure reasons that a limit of curator import decides, and the option that sets it.
LIMIT_OPTIONS = {
    "too-small": ("min_side", "--min-side", "a side under {} pixels", "a lower"),
    "too-large": ("max_bytes", "--max-bytes", "more than {:,} bytes", "a higher"),
    "too-many-pixels": ("max_pixels", "--max-pixels", "more than {:,} pixels", "a higher"),
}


def _limit_hints(reasons: dict[str, int], limits: Limits) -> list[str]:
    """For each failure a limit decided, what the limit was and the option that moves it."""
    hints = []
    for reason, (field, option, what, direction) in LIMIT_OPTIONS.items():
        if reasons.get(reason):
            limit = what.format(getattr(limits, field))
            hints.append(f"{reason}: {limit}; to import them, run again with {direction} {option}")
    return hints


def _print_import_summary(counts: dict[str, Any], seconds: float, limits: Limits) -> None:
    total = sum(
        counts.get(k, 0)
        for k in ("added", "exact_duplicate", "near_duplicate", "failed", "unchanged")
    )
    rate = total / seconds if seconds > 0 else 0.0
    stdout.print(f"imported {total} files in {seconds:.1f} s ({rate:.1f} files/s)")
    rows = [
        ("added", counts.get("added", 0), ""),
        ("exact duplicates", counts.get("exact_duplicate", 0), ""),
        ("near duplicates", counts.get("near_duplicate", 0), ""),
        (
            "failed",
            counts.get("failed", 0),
            ", ".join(
                f"{escape_controls(k)} {v}" for k, v in counts.get("failed_by_reason", {}).items()
            ),
        ),
        ("already in catalog", counts.get("unchanged", 0), ""),
    ]
    if counts.get("ignored_names"):
        names = some_names(counts.get("ignored_examples", []), counts["ignored_names"])
        rows.append(("ignored", counts["ignored_names"], f"not image names: {names}"))
    if counts.get("label_conflicts"):
        rows.append(("label conflicts", counts["label_conflicts"], conflict_note(counts)))
    for name, value, note in rows:
        note = escape_controls(note)  # file names among them
        stdout.print(f"  {name:<19}{value:>7}" + (f"   ({note})" if note else ""))
    for hint in _limit_hints(counts.get("failed_by_reason", {}), limits):
        stdout.print(f"  {hint}")


def import_command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., help="Image files and folders (searched recursively).", readable=False
    ),
    label: str | None = typer.Option(
        None, "--label", "-l", help="Record this class for every image (origin: import)."
    ),
    relabel: bool = typer.Option(
        False,
        "--relabel",
        help="Where --label differs from the label an image's group already has, replace it "
        "(never a person's); without it the label is kept and the conflict reported.",
    ),
    author: str = typer.Option(default_author(), help="Who the label events are recorded for."),
    threshold: int = threshold_option(dedup_lib.DEFAULT_THRESHOLD),
    max_pixels: int = typer.Option(Limits.max_pixels, help="Refuse images with more pixels."),
    max_bytes: int = typer.Option(Limits.max_bytes, help="Refuse files larger than this."),
    min_side: int = typer.Option(Limits.min_side, help="Refuse images with a shorter side."),
    reject_issues: str | None = typer.Option(
        None, "--reject-issues", help=REJECT_HELP, metavar="ISSUE,ISSUE"
    ),
    workers: int = typer.Option(0, help="Worker processes (0: one per core)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Import image files and folders into the catalog.

    Every file is fully decoded and validated, hashed (sha256 and a perceptual hash), stored by
    content with a thumbnail, and checked against the whole catalog for exact and near
    duplicates. Bad files are recorded with a reason and the import goes on. Importing the
    same files again adds nothing; an interrupted import continues where it stopped.

    Example:

        curator import ~/Pictures/couples/happy --label happy
        curator import photo1.jpg photo2.png --json
        curator import ~/Downloads --reject-issues small,low-information
    """
    settings = settings_of(ctx)
    refused = parse_issue_list(reject_issues) if reject_issues is not None else []
    catalog = open_settings_catalog(settings)
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    limits = reject_limits(catalog, limits, refused)
    started = time.monotonic()
    with progress_bar("importing", None) as update:

        def on_progress(p: ImportProgress) -> None:
            update(p.done, _format_counts(p.counts), total=p.total)

        counts = import_paths(
            catalog,
            settings.home,
            [str(p) for p in paths],
            label=label,
            relabel=relabel,
            author=author,
            threshold=threshold,
            limits=limits,
            workers=workers or None,
            on_progress=on_progress,
        )
    if as_json:
        print_json(counts)
    else:
        _print_import_summary(counts, time.monotonic() - started, limits)


def stats_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Show what the catalog holds: images, splits, labels, sources and failures.

    Example:

        curator stats
        curator stats --json | jq .labels
    """
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    with catalog.reading() as session:
        stats = catalog_stats(session)
    stats["home"] = str(settings.home)
    if as_json:
        print_json(stats)
        return
    stats = escape_controls_in(stats)  # class names, reasons: from outside, one line each
    images, labels, sources = stats["images"], stats["labels"], stats["sources"]
    shown = escape_controls(display_url(settings.db_url))
    stdout.print(f"catalog     {shown}" + (" (read-only)" if catalog.read_only else ""))
    stdout.print(f"classes     {', '.join(stats['classes'])}")
    stdout.print(
        f"images      {images['total']} ({images['active']} active, "
        f"{images['duplicate']} duplicates, {images['bytes'] / 1e6:.1f} MB)"
    )
    stdout.print(
        "splits      " + ", ".join(f"{k} {v}" for k, v in stats["splits"].items()) + " (active)"
    )
    by_class = ", ".join(f"{k} {v}" for k, v in labels["by_class"].items()) or "none"
    by_origin = ", ".join(f"{k} {v}" for k, v in labels["by_origin"].items()) or "none"
    stdout.print(f"labels      {by_class}; unlabeled {labels['unlabeled']}")
    stdout.print(f"  origins   {by_origin}")
    if labels["conflicts"]:
        stdout.print(
            f"  conflicts {labels['conflicts']} groups whose members people labeled "
            "differently, out of training until settled (curator review --queue conflicts)"
        )
    outcomes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sources["by_outcome"].items())
    stdout.print(f"sources     {sources['total']} ({outcomes or 'none'})")
    if sources["failed_by_reason"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sources["failed_by_reason"].items())
        stdout.print(f"  failures  {reasons}")
    runs = ", ".join(f"{k} {v}" for k, v in stats["runs"].items()) or "none"
    stdout.print(f"runs        {runs}")


def show_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Image id, or at least 6 characters of its sha256."),
    as_json: bool = typer.Option(False, "--json", help="Print the details as JSON."),
) -> None:
    """Show one image: its file, sources, label history, its near-duplicate group (each
    member with its own label) and the label conflicts met, and status changes.

    The label shown is the group's, the one stats, queues, export and training go by.

    Example:

        curator show 42
        curator show 3fa9c1
    """
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    with catalog.reading() as session:
        info = image_details(session, ref=ref, home=str(settings.home))
    if as_json:
        print_json(info)
        return
    info = escape_controls_in(info)  # file names, URLs, queries, labels, authors
    stdout.print(f"image {info['id']}  {info['sha256']}")
    stdout.print(f"  file      {info['path']}")
    stdout.print(
        f"  pixels    {info['width']} x {info['height']} {info['format']}, {info['bytes']:,} bytes"
    )
    dup = f" of {info['duplicate_of']}" if info["duplicate_of"] else ""
    stdout.print(f"  status    {info['status']}{dup}, split {info['split']}")
    stdout.print(f"  phash     {info['phash']} (mirror {info['phash_mirror']})")
    current = f"{info['label']} ({info['label_origin']})" if info["label"] else "none"
    group = info["group"]
    if group is not None:
        current += f", the label of group {group['representative']}"
        if info["own_label"] != info["label"]:
            mine = info["own_label"] or "none"
            current += f"; its own: {mine}" + (
                f" ({info['own_label_origin']})" if info["own_label"] else ""
            )
    stdout.print(f"  label     {current}")
    if group is not None:
        _print_group(group)
    if info["label_conflicts"]:
        stdout.print("  label conflicts")
        for c in info["label_conflicts"]:
            stdout.print(
                f"    {c['time']}  image {c['image']}: {c['origin']} label {c['label']} "
                f"(run {c['run']}) met {c['held']} ({c['held_origin']}): {c['outcome']}"
            )
    stdout.print("  sources")
    for s in info["sources"]:
        extra = f"  query '{s['query']}' via {s['engine']}" if s["engine"] else ""
        stdout.print(f"    {s['time']}  {s['outcome']:<16}{s['locator']}{extra}")
    stdout.print("  label history")
    for e in info["labels"] or []:
        stdout.print(
            f"    {e['time']}  {e['label'] or '(withdrawn)':<10} {e['origin']:<7} by {e['author']}"
        )
    if not info["labels"]:
        stdout.print("    (none)")
    if info["changes"]:
        stdout.print("  changes")
        for c in info["changes"]:
            stdout.print(
                f"    {c['time']}  run {c['run']}: {c['status'][0]} -> {c['status'][1]}, "
                f"split {c['split'][0]} -> {c['split'][1]}"
            )


def _print_group(group: dict[str, Any]) -> None:
    members = group["members"]
    note = (
        "  people disagree: out of training until a decision settles it"
        if group["human_conflict"]
        else ""
    )
    stdout.print(f"  group     {len(members)} near copies{note}")
    for m in members:
        role = "kept" if m["id"] == group["representative"] else m["status"]
        label = f"{m['label']} ({m['origin']})" if m["label"] else "unlabeled"
        stdout.print(
            f"    {m['id']:>8}  {m['sha256'][:12]}  {m['width']} x {m['height']}  {role:<9} {label}"
        )


def classes_command(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(None, help="New class names, to replace them."),
) -> None:
    """Show the catalog's classes, or set them.

    A class name becomes a folder of curator export: letters and digits of any script, space,
    _, - and . (not first), at most 64 characters.

    Example:

        curator classes
        curator classes happy unhappy neutral
    """
    catalog = open_settings_catalog(settings_of(ctx))
    if names:
        with catalog.writing() as session:
            replace_classes(session, classes=names)
    with catalog.reading() as session:
        stdout.print(" ".join(escape_controls(c) for c in get_classes(session)))


def register(app: typer.Typer) -> None:
    app.command("import")(handle_errors(import_command))
    app.command("dedup")(handle_errors(dedup_command))
    app.command("stats")(handle_errors(stats_command))
    app.command("show")(handle_errors(show_command))
    app.command("export")(handle_errors(export_command))
    app.command("classes")(handle_errors(classes_command))
