"""``curator models``: the trained models, their verdicts, the default, removal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from curator.cli.common import (
    fail,
    handle_errors,
    open_settings_catalog,
    pct,
    print_json,
    settings_of,
    stdout,
)
from curator.display import escape_controls, escape_controls_in

if TYPE_CHECKING:
    from db.catalog import Catalog

DEFAULT_HELP = (
    "the default model of curator score, explain, the uncertain queue and the review page's "
    "Grad-CAM"
)


def models_command(
    ctx: typer.Context,
    default: str | None = typer.Option(
        None,
        "--default",
        metavar="N|newest",
        help="Make model N the default until another is chosen: a model trained later does "
        "not replace it. newest: the newest finished model again, as each is trained.",
    ),
    remove: int | None = typer.Option(
        None,
        "--remove",
        metavar="N",
        help="Remove model N: its row, its predictions and its own folder of files (never "
        "another model's). Refused while a running command uses it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List the trained models, newest first; choose the default, or remove one.

    The default (marked *) is the model curator score, curator explain, the uncertain queue and
    the review page's Grad-CAM use when no --model is given: the one chosen with --default N,
    which a model trained later does not replace; with none chosen, the newest finished one,
    so that each new training takes over. A model that failed, was interrupted or is still
    training is never the default, nor a cross-fit fold model, nor one whose file is missing
    or whose classes are not the catalog's.

    Example:

        curator models
        curator models --json
        curator models --default 3
        curator models --default newest
        curator models --remove 2
    """
    settings = settings_of(ctx)
    if default is not None and remove is not None:
        fail("--default and --remove: one at a time")
    catalog = open_settings_catalog(settings)
    if remove is not None:
        _remove(catalog, settings.home, remove, as_json)
        return
    if default is not None:
        _choose(catalog, settings.home, default, as_json)
        if as_json:
            return
    _list(catalog, as_json)


def _choose(catalog: Catalog, home: Path, value: str, as_json: bool) -> None:
    from curator.learn.registry import follow_newest, set_default

    if value.strip().lower() == "newest":
        now = follow_newest(catalog)
        if as_json:
            print_json({"default": now, "chosen": False})
        else:
            newest = f"model {now}" if now is not None else "none yet"
            stdout.print(f"the default is the newest finished model again: {newest}")
        return
    try:
        model_id = int(value)
    except ValueError:
        fail(f"--default {value!r}: a model id (see curator models), or newest")
    set_default(catalog, home, model_id)
    if as_json:
        print_json({"default": model_id, "chosen": True})
    else:
        stdout.print(
            f"model {model_id} is the default now; a model trained later does not replace it "
            "(curator models --default newest lets the newest take over again)"
        )


def _remove(catalog: Catalog, home: Path, model_id: int, as_json: bool) -> None:
    from curator.learn.registry import remove_model

    removal = remove_model(catalog, home, model_id)
    if as_json:
        print_json(
            {
                "removed": removal.model,
                "predictions": removal.predictions,
                "folder": None if removal.folder is None else str(removal.folder),
                "default": removal.default,
                "folds_kept": removal.folds,
                "left": removal.left,
            }
        )
        return
    files = f"its folder {removal.folder}" if removal.folder else "no folder of files"
    default = f"model {removal.default}" if removal.default is not None else "none"
    stdout.print(
        f"removed model {removal.model}: {removal.predictions} predictions and "
        f"{escape_controls(files)}; the default is {default}"
    )
    if removal.folds:
        ids = ", ".join(str(i) for i in removal.folds)
        stdout.print(
            f"  its cross-fit fold models ({ids}) are kept, with their predictions; "
            f"curator models --remove {removal.folds[0]} removes one"
        )
    for path in removal.left:
        typer.echo(f"warning: could not delete all of {escape_controls(path)}", err=True)


def _list(catalog: Catalog, as_json: bool) -> None:
    from db.registry import chosen_default, default_model, list_models

    with catalog.reading() as session:
        default = default_model(session)
        default_id = default.id if default is not None else None
        chosen = chosen_default(session) == default_id and default_id is not None
        rows = [
            {
                "id": m.id,
                "status": m.status,
                "default": m.id == default_id,
                "chosen": chosen and m.id == default_id,
                "backbone": m.config.get("backbone"),
                "head": m.config.get("head"),
                "image_size": m.config.get("image_size"),
                "epochs": m.epochs,
                "best_epoch": m.best_epoch,
                "test_accuracy": (m.metrics.get("test") or {}).get("accuracy"),
                "val_accuracy": (m.metrics.get("val") or {}).get("accuracy"),
                "verdict": m.verdict,
                "recipe": m.training.get("recipe"),
                "created": m.created_at.isoformat(timespec="seconds"),
                "path": m.path,
            }
            for m in list_models(session)
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no models yet: curator train")
        return
    rows = escape_controls_in(rows)  # a catalog's rows, whoever wrote them
    stdout.print(
        f"{'id':>4}  {'status':<11} {'model':<24} {'epochs':>6} {'val acc':>8} "
        f"{'test acc':>8}  {'verdict':<10} created"
    )
    for r in rows:
        mark = "*" if r["default"] else " "
        model = f"{r['backbone']}/{r['head']}@{r['image_size']}"
        verdict = {"chance": "at chance", None: "-"}.get(r["verdict"], r["verdict"])
        stdout.print(
            f"{r['id']:>4}{mark} {r['status']:<11} {model:<24} {r['epochs']:>6} "
            f"{pct(r['val_accuracy']):>8} {pct(r['test_accuracy']):>8}  {verdict:<10} "
            f"{r['created']}"
        )
    flagged = [str(r["id"]) for r in rows if r["verdict"] == "chance"]
    if flagged:
        which = (
            f"model {flagged[0]} is" if len(flagged) == 1 else f"models {', '.join(flagged)} are"
        )
        stdout.print(
            f"at chance: {which} no better than chance on val (the report says on what), and "
            "never the default"
        )
    if default_id is None:
        stdout.print("no finished model yet: none is the default")
    elif chosen:
        stdout.print(
            f"* {DEFAULT_HELP}: chosen with curator models --default {default_id}, so a model "
            "trained later does not replace it (--default newest lets the newest take over)"
        )
    else:
        stdout.print(
            f"* {DEFAULT_HELP}: the newest finished one, so each model trained takes over "
            "(curator models --default N keeps one)"
        )


def register(app: typer.Typer) -> None:
    app.command("models")(handle_errors(models_command))
