"""``curator train`` and ``curator models``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from curator.cli.common import (
    fail,
    handle_errors,
    open_settings_catalog,
    pct,
    print_json,
    progress_bar,
    settings_of,
    stdout,
)
from curator.display import escape_controls, escape_controls_in

BACKBONES = ("resnet18", "resnet34", "resnet50")
HEADS = ("gap", "spp", "spp-pmt")
FITS = ("pad", "crop", "stretch")


def train_command(
    ctx: typer.Context,
    epochs: int = typer.Option(15, min=1, help="Epochs at most (early stopping may end sooner)."),
    batch_size: int = typer.Option(48, min=1, help="Images per step."),
    lr: float = typer.Option(3e-4, min=0.0, help="Peak learning rate (AdamW)."),
    weight_decay: float = typer.Option(0.05, min=0.0, help="Decoupled weight decay."),
    image_size: int = typer.Option(512, min=32, help="Pictures are fitted to this square."),
    backbone: str = typer.Option("resnet34", help=f"One of: {', '.join(BACKBONES)}."),
    head: str = typer.Option("spp-pmt", help=f"One of: {', '.join(HEADS)} (the ablation)."),
    weights: str = typer.Option(
        "imagenet",
        help="Starting weights: imagenet, none, a path to a ResNet state dict, or an earlier "
        "model's model.pt (fine-tuning it after a review round).",
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    include_weak: bool = typer.Option(
        False, "--include-weak", help="Also train on query and import labels."
    ),
    fit_mode: str = typer.Option(
        "pad", "--fit", help=f"How a picture becomes a square: {', '.join(FITS)}."
    ),
    patience: int = typer.Option(3, min=1, help="Epochs without a better val loss to stop."),
    seed: int = typer.Option(0, help="Seed of weights, data order and augmentation."),
    workers: int = typer.Option(2, min=0, help="DataLoader processes decoding images."),
    cache_mb: int = typer.Option(
        2048,
        min=0,
        help="Decode the pictures once and keep them in memory when they fit in this many "
        "MiB (0: decode them on every epoch).",
    ),
    augment: str = typer.Option(
        "reference", help="Augmentation: reference (the paper's), light, or none."
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

    Example:

        curator train
        curator train --backbone resnet18 --image-size 128 --weights none --epochs 10
        curator train --head gap --include-weak
        curator train --image-size 64 --weights none --augment light
        curator train --weights ~/.local/share/curator/models/3/model.pt --epochs 5
        torchrun --standalone --nproc-per-node 4 -m curator train --distributed
    """
    from classifier.distributed import SINGLE, join, leave
    from classifier.errors import TrainingError
    from classifier.train import pick_device

    try:
        pick_device(device)  # a device this machine lacks: refused before the catalog is opened
    except TrainingError as exc:
        fail(str(exc))
    for value, allowed, option in (
        (backbone, BACKBONES, "--backbone"),
        (head, HEADS, "--head"),
        (fit_mode, FITS, "--fit"),
        (augment, ("reference", "light", "none"), "--augment"),
    ):
        if value not in allowed:
            fail(f"{option} {value!r}: one of {', '.join(allowed)}")
    if weights not in ("imagenet", "none"):  # a file: stored absolute, for resumes and folds
        weights = str(Path(weights).expanduser().absolute())
    group = SINGLE
    if distributed:
        try:
            group = join(device)
        except TrainingError as exc:
            fail(str(exc))
        if batch_size % group.world:
            leave()
            fail(f"--batch-size {batch_size} does not split into {group.world} processes")
    try:
        _train(
            ctx,
            group,
            backbone,
            head,
            image_size,
            weights,
            as_json,
            restart,
            {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "weight_decay": weight_decay,
                "patience": patience,
                "seed": seed,
                "fit": fit_mode,
                "augment": augment,
                "include_weak": include_weak,
                "device": device,
                "workers": workers,
                "cache_mb": cache_mb,
                "amp": not no_amp,
                "world_size": group.world,
            },
        )
    finally:
        leave()


def _train(
    ctx: typer.Context,
    group: Any,
    backbone: str,
    head: str,
    image_size: int,
    weights: str,
    as_json: bool,
    restart: bool,
    options: dict[str, Any],
) -> None:
    from classifier.errors import TrainingError
    from classifier.model import ModelConfig
    from classifier.train import Progress, TrainConfig
    from curator.training import train_model

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    model_cfg = ModelConfig(backbone=backbone, head=head, image_size=image_size)
    cfg = TrainConfig(weights=weights, **options)

    def started(model_id: int, resumed: int | None, counts: dict) -> None:
        sizes = ", ".join(f"{s} {sum(c.values())}" for s, c in counts.items())
        what = (
            f"resuming model {model_id} after epoch {resumed}"
            if resumed
            else (f"training model {model_id}")
        )
        (typer.echo(f"{what}: {sizes} images", err=True))

    with progress_bar("training", None) as update:

        def progress(p: Progress) -> None:
            if p.kind == "decode":
                update(p.step, "decoding the pictures once", total=p.steps)
            elif p.kind == "step":
                update(p.step, f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.3f}", total=p.steps)
            elif p.stats is not None:
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
                cfg=cfg,
                on_progress=progress,
                on_start=started,
                on_note=lambda note: typer.echo(f"warning: {escape_controls(note)}", err=True),
                restart=restart,
                group=group,
            )
        except TrainingError as exc:
            fail(str(exc))
    if not group.main:
        return  # rank 0 reports
    result = outcome.result
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
    stdout.print(f"report: {escape_controls(outcome.report)}")


def models_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List the trained models, newest first; the newest finished one is the default.

    Example:

        curator models
        curator models --json
    """
    from db.registry import list_models

    catalog = open_settings_catalog(settings_of(ctx))
    with catalog.reading() as session:
        rows = [
            {
                "id": m.id,
                "status": m.status,
                "backbone": m.config.get("backbone"),
                "head": m.config.get("head"),
                "image_size": m.config.get("image_size"),
                "epochs": m.epochs,
                "best_epoch": m.best_epoch,
                "test_accuracy": (m.metrics.get("test") or {}).get("accuracy"),
                "val_accuracy": (m.metrics.get("val") or {}).get("accuracy"),
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
    default = next((r["id"] for r in rows if r["status"] == "done"), None)
    stdout.print(
        f"{'id':>4}  {'status':<11} {'model':<24} {'epochs':>6} {'val acc':>8} "
        f"{'test acc':>8}  created"
    )
    for r in rows:
        mark = "*" if r["id"] == default else " "
        model = f"{r['backbone']}/{r['head']}@{r['image_size']}"
        stdout.print(
            f"{r['id']:>4}{mark} {r['status']:<11} {model:<24} {r['epochs']:>6} "
            f"{pct(r['val_accuracy']):>8} {pct(r['test_accuracy']):>8}  "
            f"{r['created']}"
        )
    if default:
        stdout.print("* the default model of curator score and explain")


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train_command))
    app.command("models")(handle_errors(models_command))
