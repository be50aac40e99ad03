"""curator export: the catalog as an ImageFolder tree, a CSV file, or the formats other tools
read (Hugging Face, WebDataset, Label Studio: curator/formats/)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from curator.cli.common import (
    fail,
    open_settings_catalog,
    print_json,
    progress_bar,
    settings_of,
    stdout,
)
from curator.defaults import EXPORT_SHARD_MB
from curator.display import escape_controls
from curator.export import export_csv, export_imagefolder


class ExportFormat(StrEnum):
    imagefolder = "imagefolder"
    csv = "csv"
    hf = "hf"
    parquet = "parquet"
    webdataset = "webdataset"
    label_studio = "label-studio"


def export_format_for(out: Path) -> ExportFormat:
    """The format an export without --format writes: what OUT's name says."""
    return ExportFormat.csv if out.suffix.lower() == ".csv" else ExportFormat.imagefolder


def export_command(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="A folder, or a .csv file (csv)."),
    fmt: ExportFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="imagefolder, csv, hf, parquet, webdataset or label-studio (default: csv for a "
        "name ending in .csv, else imagefolder).",
    ),
    copy: bool = typer.Option(False, "--copy", help="Copy files instead of hard-linking them."),
    force: bool = typer.Option(
        False,
        "--force",
        help="hf, parquet, webdataset, label-studio: write into a folder that holds other "
        "files too (they are left as they are).",
    ),
    shard_size: float = typer.Option(
        EXPORT_SHARD_MB, "--shard-size", min=0.001, help="parquet, webdataset: MB per shard."
    ),
    max_side: int | None = typer.Option(
        None,
        "--max-side",
        min=16,
        help="webdataset: bring pictures larger than this many pixels to it (JPEG); "
        "default: the original bytes.",
    ),
    document_root: Path | None = typer.Option(
        None,
        "--document-root",
        help="label-studio: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, which "
        "image URLs are relative to (default: OUT itself).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Export the catalog for another tool: ImageFolder, CSV, Hugging Face, WebDataset,
    Label Studio.

    imagefolder writes OUT/<split>/<label>/<sha256>.<ext> for each active image with a class
    label, loadable by torchvision.datasets.ImageFolder; csv one row per image with its label,
    split, hashes and sources. hf writes a Hugging Face imagefolder with metadata.jsonl
    (datasets.load_dataset("imagefolder", data_dir=OUT)); parquet the same in Parquet shards
    with the pictures inside; webdataset tar shards of about --shard-size MB per split;
    label-studio tasks.json and label_config.xml for Label Studio's image classification
    template (docs/exports.md). Exporting again into the same folder brings it up to date,
    and an interrupted export is finished by running it again. A folder that is not empty
    and holds no earlier export of the format is refused (unless --force), and so are a
    damaged manifest and folders that are symbolic links, nothing touched. The format follows
    OUT's name unless --format says otherwise: OUT ending in .csv is a CSV file, anything else
    a folder.

    Example:

        curator export ./couples-dataset
        curator export couples.csv
        curator export ./couples-hf --format hf
        curator export ./shards -f webdataset --max-side 512
        curator export ./couples-ls --format label-studio
    """
    fmt = fmt or export_format_for(out)
    _check_options(fmt, force=force, max_side=max_side, document_root=document_root)
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    with catalog.reading() as session:
        if fmt is ExportFormat.csv:
            result = export_csv(session, home=settings.home, out=out)
        else:
            with progress_bar("exporting", None) as update:
                progress = lambda done, total: update(done, total=total)  # noqa: E731
                if fmt is ExportFormat.imagefolder:
                    result = export_imagefolder(
                        session, home=settings.home, out=out, link=not copy, on_progress=progress
                    )
                else:
                    from curator.formats import export_format

                    result = export_format(
                        session,
                        fmt.value,
                        home=settings.home,
                        out=out,
                        link=not copy,
                        force=force,
                        shard_mb=shard_size,
                        max_side=max_side,
                        document_root=document_root,
                        on_progress=progress,
                    )
    if as_json:
        print_json({"out": str(out), "format": fmt.value, **result})
    else:
        _print_export(fmt, out, result)


def _check_options(
    fmt: ExportFormat, *, force: bool, max_side: int | None, document_root: Path | None
) -> None:
    """Refuse an option the format does not read, rather than ignore it."""
    given = {
        "--force": (force, {"hf", "parquet", "webdataset", "label-studio"}),
        "--max-side": (max_side is not None, {"webdataset"}),
        "--document-root": (document_root is not None, {"label-studio"}),
    }
    for option, (used, formats) in given.items():
        if used and fmt.value not in formats:
            fail(f"{option} is an option of --format {' and '.join(sorted(formats))}")


def _print_export(fmt: ExportFormat, out: Path, result: dict[str, Any]) -> None:
    shown = escape_controls(out)
    if fmt is ExportFormat.csv:
        stdout.print(f"wrote {result['rows']} rows to {shown}")
        return
    if fmt is ExportFormat.label_studio:
        stdout.print(
            f"wrote {result['tasks']} Label Studio tasks to {shown} ({result['annotations']} "
            f"with a person's label, {result['predictions']} pre-annotations)"
        )
        root = escape_controls(result["document_root"])
        stdout.print(
            "  serve the pictures with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}"
        )
    else:
        stdout.print(f"exported {result['files']} images to {shown} ({fmt.value})")
    for key, value in result.items():
        if "/" in key or key in ("train", "val", "validation", "test"):
            stdout.print(f"  {escape_controls(key):<24}{value:>7}")
    if result.get("shards"):
        kept = f", {result['kept_shards']} already complete" if result.get("kept_shards") else ""
        stdout.print(f"  {result['shards']} shards{kept}")
    if result.get("removed"):
        stdout.print(f"  removed {result['removed']} files that no longer belong")
    if result.get("missing_files"):
        stdout.print(f"  {result['missing_files']} stored files were missing and skipped")
    if result.get("conflicts"):
        stdout.print(
            f"  {result['conflicts']} groups left out: people labeled their members "
            "differently (curator review --queue conflicts)"
        )
