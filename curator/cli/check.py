"""``curator check``: issue types, leaks across splits, label balance and entanglement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from curator.cli.common import (
    fail,
    handle_errors,
    open_settings_catalog,
    print_json,
    progress_bar,
    settings_of,
    stdout,
)
from curator.display import escape_controls, escape_controls_in
from curator.ingest.crops import crops_left_out


def _print_result(result: dict[str, Any]) -> None:
    result = escape_controls_in(result)  # class names, sites, engines: from outside
    stdout.print(f"{result['images']} active images", end="")
    if result["not_measured"]:
        stdout.print(
            f"; {result['not_measured']} not measured yet (curator check --backfill)", end=""
        )
    stdout.print()
    stdout.print("issue              images  threshold   examples")
    for name, count in result["counts"].items():
        examples = ", ".join(str(i) for i in result["examples"][name]) or "-"
        stdout.print(f"  {name:<17}{count:>6}  {result['thresholds'][name]:>9g}   {examples}")
    leaks = result["leaks"]
    shown = ", ".join(f"{a}/{b}" for a, b in leaks[:5])
    whole = result.get("leaks_without_crops")
    stdout.print(
        f"leaks across splits: {len(leaks)} pairs of near copies"
        + (f" ({shown}); curator check --fix-splits regroups them" if leaks else "")
        + (f" (whole frames only: {crops_left_out()})" if whole else "")
    )
    stdout.print("label balance per split:")
    for split, by_label in result["balance"].items():
        parts = ", ".join(f"{label} {n}" for label, n in by_label.items())
        stdout.print(f"  {split:<6}{parts}")
    if result["entanglement"]:
        stdout.print("labels entangled with sources or looks:")
    for finding in result["entanglement"]:
        if "value" in finding:
            stdout.print(
                f"  {finding['class']}: {finding['share'] * 100:.0f} % from {finding['kind']} "
                f"{finding['value']} (the other classes: {finding['others_share'] * 100:.0f} %)"
            )
        else:
            stdout.print(
                f"  {finding['class']}: {finding['kind']} (mean {finding['mean']}, "
                f"the other classes {finding['others_mean']})"
            )


def check_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    report: Path | None = typer.Option(
        None, "--report", help="Also write an HTML page with thumbnails into this folder."
    ),
    force: bool = typer.Option(
        False, "--force", help="With --report: write into a folder that holds other files."
    ),
    backfill: bool = typer.Option(
        False, "--backfill", help="First measure images imported before properties existed."
    ),
    fix_splits: bool = typer.Option(
        False, "--fix-splits", help="Regroup near copies that sit on both sides of a split."
    ),
    crops: bool | None = typer.Option(
        None,
        "--crops/--no-crops",
        help="Count cropped copies among the leaks (default: up to 20,000 pictures).",
        show_default=False,
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Set an issue type's threshold for this catalog: ISSUE=VALUE."
    ),
) -> None:
    """Check the catalog for what hashes and labels do not catch.

    Issue types, each at a threshold measured on real photographs (curator check --set
    changes it for this catalog): blurry, dark, bright, low-information, grayscale,
    odd-aspect, small. Also: near copies (cropped ones too, by default up to 20,000
    pictures) on both sides of a split boundary, the label balance per split, and classes
    entangled with a source (an engine, a site) or a look (smaller, darker, grayscale).
    Review flagged images with curator review --queue issues (or issue:blurry, ...).

    Example:

        curator check
        curator check --backfill --report check-report
        curator check --set blurry=0.02 --set small=96
        curator check --fix-splits
        curator check --json | jq '.issues.blurry'
    """
    from curator.checkreport import prepare_folder, write_report
    from curator.ingest.health import backfill as measure_all
    from curator.ingest.health import parse_settings, store_settings

    settings = settings_of(ctx)
    values = parse_settings(set_)  # bad input: refused before anything is opened
    if force and report is None:
        fail("--force goes with --report DIR")
    if report is not None:
        prepare_folder(report, force=force)
    catalog = open_settings_catalog(settings)
    if values:
        stored = store_settings(catalog, values)
        if not as_json:
            changed = ", ".join(f"{k}={stored[k]:g}" for k in values)
            stdout.print(f"thresholds set: {changed}")
    if backfill:
        with progress_bar("measuring", None) as update:
            counts = measure_all(
                catalog, settings.home, on_progress=lambda d, t: update(d, total=t)
            )
        if not as_json:
            stdout.print(
                f"measured {counts['measured']} images"
                + (f"; {counts['unreadable']} originals unreadable" if counts["unreadable"] else "")
            )
    result, fixed = _checked(catalog, settings.home, fix=fix_splits, crops=crops)
    if fixed is not None:
        result["fix_splits"] = fixed
    if report is not None:
        page = write_report(catalog, settings.home, report, result, force=True)
        result["report"] = str(page)
    if as_json:
        print_json(result)
        return
    if fixed is not None:
        stdout.print(
            f"fix-splits: {fixed['leaks_before']} pairs across splits before, "
            f"{fixed['leaks_after']} after (dedup run {fixed['dedup'].get('run', '-')})"
        )
    _print_result(result)
    if report is not None:
        stdout.print(f"report: {escape_controls(str(page))}")


def _checked(
    catalog: Any, home: Path, *, fix: bool, crops: bool | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The check's result, after regrouping near copies across splits where asked (and what
    that did), with a progress bar while crops are matched."""
    from curator.check import check_catalog
    from curator.check import fix_splits as regroup

    with progress_bar("matching crops", None) as update:

        def progress(stage: str, done: int, total: int) -> None:
            update(done, stage, total=total)

        fixed = regroup(catalog, home, crops=crops, on_progress=progress) if fix else None
        found = fixed.pop("leaks") if fixed is not None else None
        result = check_catalog(catalog, home, crops=crops, on_progress=progress, found=found)
    return result, fixed


def register(app: typer.Typer) -> None:
    app.command("check")(handle_errors(check_command))
