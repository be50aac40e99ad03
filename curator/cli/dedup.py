"""``curator dedup``: group near duplicates (cropped copies too), and undo a grouping."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from curator.cli.common import (
    fail,
    open_settings_catalog,
    print_json,
    progress_bar,
    settings_of,
    stdout,
    threshold_option,
)
from curator.ingest import dedup as dedup_lib
from curator.ingest.crops import crops_left_out
from curator.runs import tracked_run
from db.images import changes_of_run
from db.runs import latest_run, run_by_id, runs_of_kind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from db.catalog import Catalog


def dedup_command(
    ctx: typer.Context,
    threshold: int = threshold_option(dedup_lib.DEFAULT_THRESHOLD),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Show what would change; change no group (window hashes made are kept).",
    ),
    crops: bool | None = typer.Option(
        None,
        "--crops/--no-crops",
        help=(
            "Also join copies cut from a picture, or with a banner added (window hashes). "
            "Default: on up to 20,000 pictures."
        ),
        show_default=False,
    ),
    undo: bool = typer.Option(False, "--undo", help="Put back what the last dedup run changed."),
    run_id: int | None = typer.Option(
        None, "--run", help="With --undo: the run to undo (an import's grouping, too)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Group near-duplicate images and keep one of each group active.

    Images whose perceptual hashes (or mirrored hashes) lie within the threshold form a group;
    the one with the most pixels (then the oldest) stays active, the others are marked
    duplicate. Copies cut from a picture (10 to 25 % of each side) or with a banner added
    join its group too, by the hashes of its windows (--no-crops: whole frames only), made
    from the thumbnails the first time and kept. That scan's time grows with the square of
    the catalog's size, so over 20,000 pictures it runs only with --crops.
    Group members share one split. Nothing is deleted, and --undo reverts a run:
    the last dedup run, or --run N (an import's grouping, too). A run already undone is said
    to be so, and nothing changes (exit 0).

    Example:

        curator dedup --dry-run
        curator dedup --threshold 8
        curator dedup --undo
    """
    if run_id is not None and not undo:
        fail(f"--run names the run to undo: curator dedup --undo --run {run_id}")
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    if undo:
        _undo_dedup(catalog, run_id, as_json)
        return
    with progress_bar("matching crops", None) as update:
        plan, summary = dedup_lib.run_dedup(
            catalog,
            settings.home,
            threshold=threshold,
            dry_run=dry_run,
            crops=crops,
            on_progress=lambda stage, done, total: update(done, stage, total=total),
        )
    if as_json:
        print_json({**summary, "groups_list": plan.groups})
        return
    stdout.print(f"near-duplicate threshold: {threshold} bits of 64")
    if summary["crops_left_out"]:
        stdout.print(f"whole frames only: {crops_left_out()}")
    stdout.print(
        f"{plan.images} images; {len(plan.groups)} groups holding {summary['in_groups']} images"
    )
    verb = "would mark" if dry_run else "marked"
    stdout.print(
        f"{verb} {summary['to_duplicate']} as duplicate and {summary['to_active']} as active"
        f" ({summary['changed']} changes)" + ("; nothing was changed" if dry_run else "")
    )
    if "run" in summary:
        stdout.print(
            f"run {summary['run']}; undo with: curator dedup --undo --run {summary['run']}"
        )


def _undo_dedup(catalog: Catalog, run_id: int | None, as_json: bool) -> None:
    with catalog.reading() as session:
        if run_id is None:
            run = latest_run(session, kind="dedup")
        else:
            run = run_by_id(session, run_id=run_id)
        undone_by = None if run is None else _undone_by(session, run.id)
    if run is None:
        fail(f"no run {run_id} to undo" if run_id else "no dedup run to undo")
    if undone_by is not None:
        # The same state as undoing it again would leave: not an error (exit 0), nothing done.
        if as_json:
            print_json({"undone_run": run.id, "already_undone_by": undone_by, "reverted": 0})
        else:
            stdout.print(
                f"{run.kind} run {run.id} was already undone (by run {undone_by}); "
                "nothing was changed"
            )
        return
    with tracked_run(catalog, kind="dedup-undo", params={"undo_run": run.id}) as undo_run:
        with catalog.writing() as session:
            reverted, conflicts, regrouped = dedup_lib.undo_run(
                session, run_id=run.id, undo_run_id=undo_run.id
            )
        counts = {"reverted": reverted, "conflicts": conflicts, "regrouped": regrouped}
        undo_run.counts = counts
    if as_json:
        print_json({"undone_run": run.id, **counts})
        return
    stdout.print(f"undid {run.kind} run {run.id}: {reverted} image changes put back")
    if conflicts:
        stdout.print(f"{conflicts} images changed again since then were left as they are")
    if regrouped:
        stdout.print(f"{regrouped} images that joined those groups later were regrouped")


def _undone_by(session: Session, run_id: int) -> int | None:
    """The undo run that put back what run ``run_id`` changed, unless that undo was itself
    undone since (then the run's changes stand again); None when nothing undid it."""
    for undo in runs_of_kind(session, kind="dedup-undo"):
        if (undo.params or {}).get("undo_run") != run_id:
            continue
        # Done, or stopped after its one write transaction committed: it changed images.
        took = undo.status == "done" or bool(changes_of_run(session, run_id=undo.id))
        if took and _undone_by(session, undo.id) is None:
            return undo.id
    return None
