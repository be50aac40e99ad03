"""``curator demo``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from curator.cli.common import handle_errors, print_json, settings_of, stderr, stdout
from curator.demo import run_demo


def demo_command(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Where the demo catalog goes (default: CURATOR_HOME/demo)."
    ),
    per_class: int = typer.Option(60, min=4, help="Generated pictures per class."),
    seed: int = typer.Option(0, help="Seed of the generated collection."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run curator's main job on a generated collection, offline, in a demo home.

    Generates pictures of happy and unhappy couples (with exact and near duplicates and broken
    files, as real crawls bring), imports them as two labeled folders, groups near duplicates,
    and prints what the catalog holds. The demo home is wiped and rebuilt on each run.

    Example:

        curator demo
        curator demo --home /tmp/curator-demo --per-class 200
    """
    settings = settings_of(ctx)
    demo_home = (home or settings.home / "demo").expanduser().absolute()
    result = run_demo(
        demo_home,
        per_class=per_class,
        seed=seed,
        step=lambda m: stderr.print(Text("> ", style="bold") + Text(m)),
    )
    if as_json:
        print_json(
            {
                "home": str(result.home),
                "imports": result.imports,
                "dedup": result.dedup,
                "stats": result.stats,
                "planted": result.planted,
                "found": result.found,
            }
        )
        return
    for label, counts in result.imports.items():
        failed = ", ".join(f"{k} {v}" for k, v in counts["failed_by_reason"].items())
        stdout.print(
            f"import {label:<8} added {counts['added']:>4}, exact duplicates "
            f"{counts['exact_duplicate']:>3}, near duplicates {counts['near_duplicate']:>3}, "
            f"failed {counts['failed']:>2}" + (f" ({failed})" if failed else "")
        )
    stdout.print(
        "found          "
        + ", ".join(
            f"{result.found[k]} of {result.planted[k]} planted {name}"
            for k, name in (
                ("exact", "exact copies"),
                ("near", "near copies"),
                ("broken", "broken files"),
            )
        )
    )
    d = result.dedup
    stdout.print(
        f"dedup          {d['groups']} near-duplicate groups holding {d['in_groups']} images"
    )
    s = result.stats
    stdout.print(
        f"catalog        {s['images']['active']} active images, {s['images']['duplicate']} "
        f"duplicates; splits " + ", ".join(f"{k} {v}" for k, v in s["splits"].items())
    )
    stdout.print(
        "labels         " + ", ".join(f"{k} {v}" for k, v in s["labels"]["by_class"].items())
    )
    stdout.print(f"\nbrowse it:     curator --home {result.home} stats")


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo_command))
