"""``curator demo``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from curator.cli.common import handle_errors, pct, print_json, settings_of, stderr, stdout
from curator.display import escape_controls

if TYPE_CHECKING:
    from curator.demo.setup import DemoConfig, DemoResult


def demo_command(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Where the demo catalog goes (default: CURATOR_HOME/demo)."
    ),
    full: bool = typer.Option(
        False, "--full", help="The paper's configuration: ResNet-34 at 512 px (for a GPU)."
    ),
    per_class: int | None = typer.Option(
        None, min=20, help="Pictures per search (default 300; 400 with --full)."
    ),
    epochs: int | None = typer.Option(
        None, min=1, help="Epochs of round 1 and of each fold (default 10; 15 with --full)."
    ),
    weights: str | None = typer.Option(
        None,
        help="Starting weights: none (default), or with --full imagenet (default), or a path "
        "to a ResNet state dict.",
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the generated web and of training."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run curator's whole job on a generated web, offline, in a demo home.

    Generates couple pictures with known truth (exact and near copies, broken files, off-topic
    pictures, a query's label wrong one time in ten) behind a search engine on 127.0.0.1 that
    answers as Bing does, then: crawl "happy couple" and "unhappy couple" -> dedup -> train
    round 1 on the weak labels -> score and cross-fit -> a simulated reviewer relabels the top
    of the disagree and uncertain queues -> round 2 fine-tunes round 1 -> score new photos ->
    Grad-CAM -> an HTML report. The demo home is wiped and rebuilt on each run. About 4
    minutes on two CPU cores with bf16 in hardware, 11 on two that train in fp32.

    Example:

        curator demo
        curator demo --home /tmp/curator-demo
        curator demo --full --device cuda
        curator demo --full --weights none --per-class 200 --epochs 8
    """
    from curator.demo import DemoConfig

    settings = settings_of(ctx)
    demo_home = (home or settings.home / "demo").expanduser().absolute()
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "per_class": per_class,
            "epochs": epochs,
            "weights": weights,
            "seed": seed,
            "device": device,
        }.items()
        if v is not None
    }
    config = DemoConfig.full(**overrides) if full else DemoConfig(**overrides)
    result = _run(demo_home, config)
    if as_json:
        print_json(result.as_dict())
        return
    _print_result(result)


def _run(demo_home: Path, config: DemoConfig) -> DemoResult:
    """The demo with a line a step and a bar for the step's work, on stderr."""
    from curator.demo import run_demo

    bars = Progress(
        TextColumn("  {task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        console=stderr,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def progress(description: str, done: int, total: int | None, status: str) -> None:
        if description not in tasks:
            for other in tasks.values():
                bars.update(other, visible=False)
            tasks[description] = bars.add_task(description, total=total, status="")
        bars.update(tasks[description], completed=done, total=total, status=status)

    try:
        with bars:
            result = run_demo(
                demo_home,
                config,
                step=lambda m: bars.console.print(
                    Text("> ", style="bold") + Text(escape_controls(m))
                ),
                progress=progress,
            )
    except KeyboardInterrupt:
        stderr.print(
            f"interrupted: the demo starts over when run again ({escape_controls(demo_home)})"
        )
        raise typer.Exit(130) from None
    return result


def _print_result(result: DemoResult) -> None:
    for query, counts in result.crawl.items():
        failed = ", ".join(f"{k} {v}" for k, v in counts["failed_by_reason"].items())
        stdout.print(
            f"crawl {query!r:<17} added {counts['added']:>4}, exact duplicates "
            f"{counts['exact_duplicate']:>3}, near duplicates {counts['near_duplicate']:>3}, "
            f"rejected {counts['failed']:>2}" + (f" ({failed})" if failed else "")
        )
    d, n, r = result.dedup, result.noise, result.review
    stdout.print(
        f"dedup          {d['groups']} near-duplicate groups holding {d['in_groups']} images"
    )
    stdout.print(
        f"label noise    {n['wrong_weak_labels']} of {n['groups']} weak labels wrong; the first "
        f"10 % of the disagree queue held {n['wrong_in_top_10pct']} of them "
        f"({pct(n['recall_at_10pct'])})"
    )
    stdout.print(
        f"review         {r['looked_at']} images looked at, {r['wrong_labels_fixed']} wrong labels "
        f"fixed, {r['wrong_labels_left']} left"
    )
    for name, m in result.rounds.items():
        auc = "-" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}"
        stdout.print(
            f"{name:<15}model {m['model']}: test accuracy {pct(m.get('accuracy'))}, F1 "
            f"{m.get('f1', 0):.3f}, ROC AUC {auc} ({m.get('n', 0)} test images, against the truth)"
        )
    p = result.new_photos
    stdout.print(
        f"new photos     {p['scored']} scored, accuracy {pct(p['accuracy'])} -> {p['csv']}"
    )
    total = sum(result.seconds.values())
    stdout.print(f"time           {total / 60:.1f} min")
    stdout.print(f"\nreport:        {escape_controls(result.report)}")
    stdout.print(f"browse it:     {escape_controls(result.browse)}")


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo_command))
