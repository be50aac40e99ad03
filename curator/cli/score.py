"""``curator score`` and ``curator explain``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from curator.cli.common import (
    counting_unreadable,
    decoding_workers_option,
    default_author,
    device_option,
    fail,
    forward_batch_option,
    handle_errors,
    open_settings_catalog,
    pct,
    print_json,
    progress_bar,
    settings_of,
    stderr,
    stdout,
    threshold_option,
)
from curator.display import escape_controls
from curator.ingest.door import display_path

if TYPE_CHECKING:
    from curator.config import Settings
    from curator.ingest.importer import Inputs
    from curator.learn.models import LoadedModel
    from curator.learn.outputs import Kept
    from db.catalog import Catalog


def score_command(
    ctx: typer.Context,
    paths: list[Path] | None = typer.Argument(
        None,
        help="Image files, folders (searched recursively) or videos; none: the catalog.",
        readable=False,
    ),
    model_ref: int | None = typer.Option(
        None, "--model", help="Model id (default: the default model; see curator models)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write rows to this .csv or .jsonl file (default: stdout)."
    ),
    fmt: str | None = typer.Option(None, "--format", help="csv or jsonl (default: from --out)."),
    add: bool = typer.Option(
        False, "--add", help="Also import the files into the catalog, with their predictions."
    ),
    folds: str | None = typer.Option(
        None,
        "--folds",
        metavar="K|auto",
        help="Cross-fit: train K models (2 to 20) on all labeled groups but one fold each, so "
        "every labeled image gets a prediction from a model that never saw it. auto: what the "
        "catalog's size supports, 5 folds from 100 labeled groups, else one per 20 (at least "
        "2).",
    ),
    every: float = typer.Option(1.0, help="Videos: score one frame every this many seconds."),
    out_dir: Path = typer.Option(
        Path("."), "--out-dir", help="Videos: where the per-frame CSV and timeline PNG go."
    ),
    rescore: bool = typer.Option(
        False, "--rescore", help="Catalog: score again images this model has scored already."
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="Catalog: score only shard I of N (by a stable hash of the image id), so that N "
        "processes or machines share the work, such as --shard 1/4 ... --shard 4/4.",
    ),
    batch_size: int = forward_batch_option(),
    workers: int = decoding_workers_option(),
    device: str = device_option(),
    author: str = typer.Option(default_author(), help="With --add: who the import is for."),
    threshold: int = threshold_option(10),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Score images with a trained model: the catalog, new folders, or videos.

    With no path, every active image of the catalog gets a prediction (written back, so the
    uncertain and disagree review queues can rank by it); a rerun scores only what is new.
    With paths, writes one row per file (path, predicted class, probabilities, or the reason
    the file could not be read) as CSV or JSON Lines; with --out, an interrupted run leaves
    its rows in FILE.partial and the same command again continues from them. A video, named
    or found in a folder, gets a per-frame CSV, a timeline plot and a verdict.

    Example:

        curator score
        curator score --folds auto
        curator score --folds 3
        curator score --shard 2/4 --device cuda:1
        curator score ~/new-photos --out predictions.csv
        curator score ~/new-photos --add --out predictions.jsonl
        curator score wedding.mp4 --every 2
    """
    from curator.learn.models import load_registered
    from curator.learn.scoring import parse_shard

    parts = parse_shard(shard) if shard is not None else None
    if parts is not None and (paths or folds):
        fail("--shard splits the scoring of the catalog; give no paths or --folds with it")
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    if folds and paths:
        fail("--folds scores the catalog's labeled images; give no paths with it")
    fold_count = parse_folds(folds)
    if every <= 0:
        fail("--every must be more than 0 seconds")
    if not paths:
        if add or out:
            fail("--add and --out are for scoring files: give paths")
        if folds:
            from curator.cli.crossfit import run_cross_fit

            run_cross_fit(
                catalog, settings.home, model_ref, fold_count, device, batch_size, workers,
                as_json,
            )  # fmt: skip
            return
        model = load_registered(catalog, settings.home, model_ref, device=device)
        mismatch = warn_of_classes(catalog, model)
        _score_catalog(
            catalog, settings.home, model, rescore, parts, batch_size, workers, as_json, mismatch
        )
        return
    _score_paths(
        catalog, settings, model_ref, paths, out, fmt, out_dir, every, add, author, threshold,
        device, batch_size, workers, as_json,
    )  # fmt: skip


def _score_paths(
    catalog: Catalog,
    settings: Settings,
    model_ref: int | None,
    paths: list[Path],
    out: Path | None,
    fmt_given: str | None,
    out_dir: Path,
    every: float,
    add: bool,
    author: str,
    threshold: int,
    device: str,
    batch_size: int,
    workers: int,
    as_json: bool,
) -> None:
    """Score the files and videos named: the pictures' rows to --out (or stdout), each
    video's frames and timeline to --out-dir; a damaged video fails at the end."""
    from curator.ingest.importer import collect_inputs
    from curator.learn.models import load_registered
    from curator.learn.outputs import output_format
    from curator.learn.video import VIDEO_SUFFIXES

    fmt = output_format(out, fmt_given)
    videos = [p for p in paths if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    pictures = [str(p) for p in paths if p not in videos]
    if not pictures and (out or add):
        fail("--out and --add are for pictures; a video's results go to --out-dir")
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        fail(f"{out} is a folder" if out.is_dir() else f"no such folder: {out.parent}")
    # Missing paths fail here; videos found in folders are scored as videos.
    inputs = collect_inputs(pictures, also=VIDEO_SUFFIXES) if pictures else None
    if inputs is not None:
        videos += [Path(v) for v in inputs.others]
    if videos and not out_dir.is_dir():
        fail(f"no such folder: {out_dir}")
    model = load_registered(catalog, settings.home, model_ref, device=device)
    summary: dict[str, Any] = {"model": model.id, "class_mismatch": warn_of_classes(catalog, model)}
    # A folder of videos alone writes no empty table of pictures, unless one was asked for.
    if inputs is not None and (inputs.files or not inputs.others or out is not None or add):
        summary["files"] = _score_files(
            catalog,
            settings,
            model,
            inputs,
            pictures,
            out,
            fmt,
            add,
            author,
            threshold,
            batch_size,
            workers,
            as_json,
        )
    damaged: list[str] = []
    if videos:
        stems = _unique_stems(videos)
        summary["videos"] = [
            _score_video(model, video, stem, every, out_dir, batch_size, as_json, damaged)
            for video, stem in zip(videos, stems, strict=True)
        ]
    if as_json:
        print_json(summary)
    if damaged:
        fail(
            damaged[0]
            if len(damaged) == 1
            else f"{len(damaged)} videos are damaged: " + "; ".join(damaged)
        )


def parse_folds(value: str | None) -> int | None:
    """--folds K or auto (None: as many as the catalog's size supports); a bad value is one
    line."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        fail(f"--folds {value!r}: a number of folds from 2 to 20, or auto")
    if not 2 <= count <= 20:
        fail(f"--folds {value}: " + ("needs at least 2 folds" if count < 2 else "at most 20"))
    return count


def _unique_stems(videos: list[Path]) -> list[str]:
    """The name each video's frames CSV and timeline take in --out-dir: its stem, and for a
    second video of the same stem (another folder's clip.mp4) the stem numbered."""
    taken: set[str] = set()
    stems = []
    for video in videos:
        stem = base = video.stem or "video"
        number = 1
        while stem in taken:
            number += 1
            stem = f"{base}-{number}"
        taken.add(stem)
        stems.append(stem)
    return stems


def _score_catalog(
    catalog: Catalog,
    home: Path,
    model: LoadedModel,
    rescore: bool,
    shard: tuple[int, int] | None,
    batch_size: int,
    workers: int,
    as_json: bool,
    mismatch: dict[str, list[str]] | None,
) -> None:
    from curator.learn.scoring import score_catalog

    started = time.monotonic()
    with progress_bar(f"scoring with model {model.id}", None) as update:
        counts = score_catalog(
            catalog,
            home,
            model,
            rescore=rescore,
            shard=shard,
            batch_size=batch_size,
            workers=workers,
            on_progress=counting_unreadable(update),
        )
    if as_json:
        print_json({**counts, "class_mismatch": mismatch})
        return
    seconds = time.monotonic() - started
    rate = counts["scored"] / seconds if seconds else 0.0
    where = f" (shard {counts['shard']})" if "shard" in counts else ""
    stdout.print(
        f"model {model.id}{where}: scored {counts['scored']} images ({rate:.1f}/s), "
        f"{counts['already_scored']} already scored, {counts['failed']} unreadable"
    )
    for image_id, why in sorted((counts.get("failures") or {}).items())[:10]:
        stdout.print(f"  image {image_id}: {escape_controls(why)}")
    if counts["in_sample"]:
        stdout.print(
            f"  {counts['in_sample']} of them trained this model: the disagree queues leave "
            "those out; curator score --folds auto gives them unbiased predictions"
        )
    stdout.print("next: curator review --queue disagree (or uncertain)")


def warn_of_classes(catalog: Catalog, model: LoadedModel) -> dict[str, list[str]] | None:
    """One line on stderr when the model was trained for other classes than the catalog's
    (it still scores: see curator.learn.scoring.class_mismatch); the two lists, for --json."""
    from curator.learn.models import class_mismatch

    mismatch = class_mismatch(catalog, model)
    if mismatch is not None:
        stderr.print(
            f"warning: model {model.id} was trained for "
            f"{escape_controls(', '.join(mismatch['model']))}, and the catalog's classes are "
            f"now {escape_controls(', '.join(mismatch['catalog']))}: its predictions name only "
            "its own classes"
        )
    return mismatch


def _score_files(
    catalog: Catalog,
    settings: Settings,
    model: LoadedModel,
    inputs: Inputs,
    pictures: list[str],
    out: Path | None,
    fmt: str,
    add: bool,
    author: str,
    threshold: int,
    batch_size: int,
    workers: int,
    as_json: bool,
) -> dict[str, Any]:
    from curator.ingest.importer import import_paths, some_names
    from curator.learn.outputs import RowWriter, open_output, partial_of
    from curator.learn.scoring import score_files

    imported = None
    if add:
        with progress_bar("importing", None) as update:
            imported = import_paths(
                catalog,
                settings.home,
                pictures,
                author=author,
                threshold=threshold,
                on_progress=lambda p: update(p.done, total=p.total),
            )
    files = inputs.files
    made_by = {"model": model.id, "format": fmt, "classes": model.classes, "with_ids": add}
    kept = _continued(out, made_by, files, as_json)
    writer: RowWriter | None = None
    try:
        with (
            open_output(out, made_by) as fh,
            progress_bar(f"scoring with model {model.id}", None) as update,
        ):
            writer = RowWriter(fh, fmt, model.classes, with_ids=add)
            counts = score_files(
                model,
                files,
                writer,
                catalog=catalog if add else None,
                kept=kept,
                batch_size=batch_size,
                workers=workers,
                on_progress=counting_unreadable(update),
            )
    except KeyboardInterrupt:
        if out is None or writer is None:
            raise
        stderr.print(
            f"interrupted: the {writer.rows} rows written are kept in "
            f"{escape_controls(partial_of(out))}; the same command again scores only the rest"
        )
        raise typer.Exit(130) from None
    counts["ignored_names"] = inputs.ignored
    counts["ignored_examples"] = [display_path(p) for p in inputs.ignored_examples]
    counts["unreadable_folders"] = [f"{p}: {why}" for p, why in inputs.unreadable]
    if imported is not None:
        counts["imported"] = {
            k: imported.get(k, 0) for k in ("added", "exact_duplicate", "near_duplicate", "failed")
        }
    if not as_json:
        by_class = ", ".join(f"{c} {n}" for c, n in sorted(counts["by_class"].items()))
        where = f" -> {out}" if out else ""
        stderr.print(
            f"scored {counts['scored']} of {counts['files']} files "
            f"({escape_controls(by_class) or 'none'}), {counts['failed']} unreadable"
            + escape_controls(where)
        )
        if counts.get("kept"):
            stderr.print(f"  {counts['kept']} of them kept from the interrupted run")
        if inputs.ignored:
            names = some_names(counts["ignored_examples"], inputs.ignored)
            stderr.print(
                f"  {inputs.ignored} files in folders were neither pictures nor videos, not "
                f"scored: {escape_controls(names)}"
            )
        for line in counts["unreadable_folders"]:
            stderr.print(f"  cannot list {escape_controls(line)}")
        if imported is not None:
            stderr.print(
                "  imported: " + ", ".join(f"{k} {v}" for k, v in counts["imported"].items())
            )
    return counts


def _continued(
    out: Path | None, made_by: dict[str, Any], files: list[str], as_json: bool
) -> Kept | None:
    """The rows of an interrupted run's ``FILE.partial`` that this run keeps (`Kept`), or
    None; says which, unless the output is JSON."""
    from curator.learn.outputs import kept_rows, partial_of

    if out is None or not partial_of(out).exists():
        return None
    kept = kept_rows(out, made_by, {display_path(p) for p in files})
    shown = escape_controls(partial_of(out))
    if kept is None:
        note = f"{shown} was written by another model or in another format; every file is "
        note += "scored again"
    else:
        note = f"continuing {shown}: {len(kept.rows)} files scored there are kept"
    if not as_json:
        stderr.print(note)
    return kept


def _score_video(
    model: LoadedModel,
    video: Path,
    stem: str,
    every: float,
    out_dir: Path,
    batch_size: int,
    as_json: bool,
    damaged: list[str],
) -> dict[str, Any]:
    from curator.learn.scoring import ScoreProgress
    from curator.learn.video import VideoError, score_video, write_frames_csv, write_timeline

    with progress_bar(f"scoring {video.name}", None) as update:

        def progress(p: ScoreProgress) -> None:
            update(p.done, "frames", total=p.total or None)

        try:
            result = score_video(
                model, video, every=every, batch_size=batch_size, on_progress=progress
            )
        except VideoError as exc:  # this one is unreadable: say so at the end, go on
            damaged.append(str(exc))
            return {"path": str(video), "error": str(exc)}
    frames_csv, timeline = out_dir / f"{stem}.frames.csv", out_dir / f"{stem}.timeline.png"
    try:
        write_frames_csv(result, frames_csv)
        write_timeline(result, timeline)
    except OSError as exc:
        fail(f"cannot write to {out_dir}: {exc.strerror or exc}")
    found = {**result.as_dict(), "frames_csv": str(frames_csv), "timeline": str(timeline)}
    if result.damage is not None:
        damaged.append(
            f"{video} is damaged at {result.damaged_at or 0:.1f} s ({result.damage}); the "
            f"{len(result.frames)} frames before it are scored in {frames_csv}"
        )
        return found
    if not as_json:
        verdict = result.verdict or "-"
        stdout.print(
            f"{escape_controls(video)}: {escape_controls(verdict)} (mean probability "
            f"{max(result.mean):.2f}; {pct(result.shares.get(verdict, 0.0))} of "
            f"{len(result.frames)} frames sampled every {every:g} s)"
        )
        stdout.print(f"  frames: {escape_controls(frames_csv)}")
        stdout.print(f"  timeline: {escape_controls(timeline)}")
    return found


def register(app: typer.Typer) -> None:
    app.command("score")(handle_errors(score_command))
