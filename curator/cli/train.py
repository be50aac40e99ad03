"""``curator train`` (``curator models`` lists what it registers: curator/cli/models.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from classifier.config import (
    BACKBONES,
    FITS,
    HEADS,
    RECIPE_TITLES,
    RECIPES,
    Machine,
    ModelConfig,
    Recipe,
    format_lr,
)
from curator.cli.common import (
    device_option,
    fail,
    handle_errors,
    open_settings_catalog,
    pct,
    print_json,
    progress_bar,
    settings_of,
    stdout,
)
from curator.display import escape_controls

if TYPE_CHECKING:
    from classifier.distributed import Group
    from curator.learn.training import TrainOutcome
    from db.catalog import Catalog

#: The defaults the model's and the machine's options show and fall back to: the settings'
#: own (classifier.config). The recipe's options default to None: the recipe's value.
MODEL, MACHINE = ModelConfig(), Machine()
AUGMENTS = ("reference", "light", "none")
#: The exit status of a run whose model is no better than chance on val: registered, with
#: its report, but a script should not go on as if it had a model.
AT_CHANCE_EXIT = 3


def recipes_help(field: str) -> str:
    """Each recipe's value of an option, for its --help."""
    values = [
        f"{format_lr(v) if isinstance(v := getattr(cfg, field), float) else v} "
        f"{RECIPE_TITLES[name].split()[0].lower()}"
        for name, cfg in RECIPES.items()
    ]
    return f"Default: the recipe's ({', '.join(values)})."


def train_command(
    ctx: typer.Context,
    epochs: int | None = typer.Option(
        None,
        min=1,
        help="Epochs at most (early stopping may end sooner). " + recipes_help("epochs"),
    ),
    batch_size: int | None = typer.Option(
        None, min=1, help="Images per step. " + recipes_help("batch_size")
    ),
    lr: str | None = typer.Option(
        None,
        metavar="RATE|auto",
        help="Peak learning rate (AdamW), or auto: a range test before training picks it. "
        + recipes_help("lr"),
    ),
    weight_decay: float | None = typer.Option(
        None, min=0.0, help="Decoupled weight decay. " + recipes_help("weight_decay")
    ),
    image_size: int = typer.Option(
        MODEL.image_size, min=32, help="Pictures are fitted to this square."
    ),
    backbone: str = typer.Option(MODEL.backbone, help=f"One of: {', '.join(BACKBONES)}."),
    head: str = typer.Option(MODEL.head, help=f"One of: {', '.join(HEADS)} (the ablation)."),
    weights: str = typer.Option(
        "imagenet",
        help="Starting weights, which choose the recipe: imagenet (ImageNet fine-tuning), "
        "none (from scratch), a path to a ResNet state dict (as imagenet), or an earlier "
        "model's model.pt (fine-tuning it after a review round).",
    ),
    device: str = device_option(MACHINE.device),
    include_weak: bool = typer.Option(
        False, "--include-weak", help="Also train on query and import labels."
    ),
    fit_mode: str = typer.Option(
        MODEL.fit, "--fit", help=f"How a picture becomes a square: {', '.join(FITS)}."
    ),
    patience: int | None = typer.Option(
        None,
        min=1,
        help="Epochs without a better val loss to stop, counted once val accuracy has left "
        "chance. Default: a third of the epochs, at least 3.",
    ),
    seed: int = typer.Option(0, help="Seed of weights, data order and augmentation."),
    workers: int = typer.Option(
        MACHINE.workers, min=0, help="DataLoader processes decoding images."
    ),
    cache_mb: int = typer.Option(
        MACHINE.cache_mb,
        min=0,
        help="Decode the pictures once and keep them in memory when they fit in this many "
        "MiB (0: decode them on every epoch).",
    ),
    augment: str | None = typer.Option(
        None,
        help="Augmentation: reference (the paper's), light, or none. " + recipes_help("augment"),
    ),
    no_amp: bool = typer.Option(False, "--no-amp", help="Train in fp32 (no mixed precision)."),
    restart: bool = typer.Option(
        False, "--restart", help="Start over instead of resuming an interrupted run."
    ),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="Train on several processes with DistributedDataParallel, started by torchrun "
        "(NCCL on GPUs, gloo on CPUs); --batch-size is split between them.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train DeepConnection on the catalog's labels and register the model.

    Trains on human labels (and with --include-weak, on query and import labels too), one image
    per near-duplicate group, in the catalog's train/val/test splits. Keeps the epoch with the
    best val loss, evaluates the untouched test split once, and writes a report beside the
    model. Interrupted? The same command again continues where it stopped.

    The starting weights choose the recipe, and every option not given takes its value (the
    first line says which recipe, with which values, and marks those given):

    {recipes}

    A model no better than chance on val is registered as such (curator models shows it),
    is never the default model for scoring, and the command exits with status 3.

    Example:

        curator train
        curator train --backbone resnet18 --image-size 96 --weights none
        curator train --weights none --lr auto
        curator train --head gap --include-weak
        curator train --weights ~/.local/share/curator/models/3/model.pt
        torchrun --standalone --nproc-per-node 4 -m curator train --distributed
    """
    from classifier.device import pick_device
    from classifier.distributed import SINGLE, join, leave
    from classifier.errors import TrainingError

    try:
        pick_device(device)  # a device this machine lacks: refused before the catalog is opened
    except TrainingError as exc:
        fail(str(exc))
    for value, allowed, option in (
        (backbone, BACKBONES, "--backbone"),
        (head, HEADS, "--head"),
        (fit_mode, FITS, "--fit"),
        (augment or AUGMENTS[0], AUGMENTS, "--augment"),
    ):
        if value not in allowed:
            fail(f"{option} {value!r}: one of {', '.join(allowed)}")
    rate, lr_auto = parse_lr(lr)
    if weights not in ("imagenet", "none"):  # a file: stored absolute, for resumes and folds
        weights = str(Path(weights).expanduser().absolute())
    from curator.learn.training import choose_recipe

    recipe = choose_recipe(
        weights, lr_auto=lr_auto, epochs=epochs, batch_size=batch_size, lr=rate,
        weight_decay=weight_decay, patience=patience, augment=augment, seed=seed,
        include_weak=include_weak, amp=not no_amp,
    )  # fmt: skip
    group = SINGLE
    if distributed:
        try:
            group = join(device)
        except TrainingError as exc:
            fail(str(exc))
        if recipe.cfg.batch_size % group.world:
            leave()
            fail(
                f"--batch-size {recipe.cfg.batch_size} does not split into {group.world} processes"
            )
    model_cfg = ModelConfig(backbone=backbone, head=head, image_size=image_size, fit=fit_mode)
    machine = Machine(device=device, workers=workers, cache_mb=cache_mb)
    try:
        _train(ctx, group, model_cfg, recipe, machine, as_json, restart)
    finally:
        leave()


if train_command.__doc__:
    train_command.__doc__ = train_command.__doc__.replace(
        "{recipes}",
        "\n\n    ".join(
            f"{RECIPE_TITLES[name]} (--weights "
            f"{ {'imagenet': 'imagenet', 'scratch': 'none', 'finetune': 'MODEL.pt'}[name] }): "
            f"epochs {cfg.epochs}, batch {cfg.batch_size}, lr {format_lr(cfg.lr)}, "
            f"weight decay {cfg.weight_decay:g}, warm-up {cfg.warmup_epochs:g} epoch, "
            f"augment {cfg.augment}."
            for name, cfg in RECIPES.items()
        ),
    )


def parse_lr(value: str | None) -> tuple[float | None, bool]:
    """--lr: a rate (None: the recipe's), or auto; a bad value is one line."""
    if value is None:
        return None, False
    if value.strip().lower() == "auto":
        return None, True
    try:
        rate = float(value)
    except ValueError:
        fail(f"--lr {value!r}: a learning rate such as 2e-3, or auto")
    if not rate >= 0 or rate == float("inf"):
        fail(f"--lr {value!r}: a learning rate of 0 or more, or auto")
    return rate, False


def _train(
    ctx: typer.Context,
    group: Group,
    model_cfg: ModelConfig,
    recipe: Recipe,
    machine: Machine,
    as_json: bool,
    restart: bool,
) -> None:
    from classifier.config import Progress
    from classifier.errors import TrainingError
    from curator.learn.training import Started, train_model

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)

    def started(s: Started) -> None:
        sizes = ", ".join(f"{name} {sum(c.values())}" for name, c in s.counts.items())
        what = f"resuming model {s.model_id} after epoch {s.resumed_after}" if (
            s.resumed_after
        ) else f"training model {s.model_id}"  # fmt: skip
        shown = s.recipe.cfg.weights
        typer.echo(escape_controls(s.recipe.line(weights_shown=shown)), err=True)
        typer.echo(f"{what}: {sizes} images", err=True)

    with progress_bar("training", None) as update:

        def progress(p: Progress) -> None:
            if p.kind == "decode":
                update(p.step, "decoding the pictures once", total=p.steps)
            elif p.kind == "sweep":
                update(p.step, f"lr range test · loss {p.loss:.3f}", total=p.steps)
            elif p.kind == "step":
                update(p.step, f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.3f}", total=p.steps)
            elif p.kind == "note":
                typer.echo(f"warning: {p.note}", err=True)
            elif p.kind == "epoch" and p.stats is not None:
                s = p.stats
                typer.echo(
                    f"epoch {s.epoch:>2}: train loss {s.train_loss:.3f} · val loss "
                    f"{s.val_loss:.3f} · val accuracy {pct(s.val_accuracy)} · "
                    f"{s.images_per_s:.1f} images/s",
                    err=True,
                )

        try:
            outcome = train_model(
                catalog,
                settings.home,
                model_cfg=model_cfg,
                recipe=recipe,
                machine=machine,
                on_progress=progress,
                on_start=started,
                on_note=lambda note: typer.echo(f"warning: {escape_controls(note)}", err=True),
                restart=restart,
                group=group,
            )
        except TrainingError as exc:
            fail(str(exc))
    if group.main:  # rank 0 reports
        _report(catalog, outcome, as_json)
        if outcome.result.verdict.get("verdict") == "chance":
            raise typer.Exit(AT_CHANCE_EXIT)


def _report(catalog: Catalog, outcome: TrainOutcome, as_json: bool) -> None:
    from db.registry import chosen_default, default_model

    with catalog.reading() as session:
        now = default_model(session)
        default_id = now.id if now is not None else None
        chosen = default_id is not None and chosen_default(session) == default_id
    result, recipe = outcome.result, outcome.recipe
    assert recipe is not None  # rank 0's outcome, which names the recipe it trained with
    test, val = result.metrics["test"], result.metrics["val"]
    if as_json:
        print_json(
            {
                "model": outcome.model_id,
                "folder": str(outcome.folder),
                "report": str(outcome.report),
                "best_epoch": result.best_epoch,
                "epochs": len(result.history),
                "stopped_early": result.stopped_early,
                "resumed_from": result.resumed_from,
                "metrics": {
                    k: {m: v for m, v in d.items() if m != "per_class"}
                    for k, d in result.metrics.items()
                },
                "images": outcome.counts,
                "missing_files": outcome.missing_files,
                "conflicts": outcome.conflicts,
                "default": default_id,
                "verdict": result.verdict,
                "recipe": {
                    "name": recipe.name,
                    "values": recipe.cfg.as_dict(),
                    "given": list(recipe.given),
                },
                "lr_range": _range_summary(result.extras.get("lr_range")),
            }
        )
        return
    stdout.print(
        f"model {outcome.model_id}: best epoch {result.best_epoch} of "
        f"{len(result.history)}" + (" (stopped early)" if result.stopped_early else "")
    )
    stdout.print(f"  {'':<6}{'accuracy':>10}{'F1':>9}{'ROC AUC':>9}{'ECE':>8}{'images':>8}")
    for name, m in (("val", val), ("test", test)):
        auc = "-" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}"
        stdout.print(
            f"  {name:<6}{pct(m['accuracy']):>10}{m['f1']:>9.3f}{auc:>9}{m['ece']:>8.3f}{m['n']:>8}"
        )
    if outcome.missing_files:
        stdout.print(f"  {outcome.missing_files} images were left out: their files are missing")
    if outcome.conflicts:
        stdout.print(
            f"  {outcome.conflicts} groups were left out: people labeled their members "
            "differently (curator review --queue conflicts)"
        )
    stdout.print(f"report: {escape_controls(outcome.report)}")
    if result.verdict.get("verdict") == "chance":
        from classifier.chance import advice, describe_verdict

        stays = f"the default stays model {default_id}" if default_id else "there is no default"
        stdout.print(
            f"model {outcome.model_id} is {describe_verdict(result.verdict)}; {stays}. Try "
            f"{advice(recipe.cfg)}"
        )
    elif default_id != outcome.model_id:  # one chosen, or a newer model finished meanwhile
        why = "chosen with curator models --default" if chosen else "the newest finished one"
        stdout.print(
            f"the default stays model {default_id}, {why}; curator models --default "
            f"{outcome.model_id} makes it this one"
        )


def _range_summary(lr_range: dict[str, Any] | None) -> dict[str, Any] | None:
    """The range test's outcome for --json (its curve is in the model file and report)."""
    if not lr_range:
        return None
    return {k: lr_range[k] for k in ("chosen", "rule", "steep", "minimum")} | {
        "steps": len(lr_range["lrs"])
    }


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train_command))
