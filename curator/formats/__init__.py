"""The export formats other tools read: Hugging Face (``hf``, ``parquet``), WebDataset and
Label Studio. docs/exports.md has each one's layout and the line that loads it; the
ImageFolder tree and the CSV file are `curator.export`'s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

#: Each format, and what its files are.
FORMATS = {
    "hf": "Hugging Face imagefolder with metadata.jsonl",
    "parquet": "Hugging Face Parquet shards, the pictures inside",
    "webdataset": "WebDataset tar shards",
    "label-studio": "Label Studio tasks and label config",
}


def export_format(
    session: Session,
    fmt: str,
    *,
    home: Path,
    out: Path,
    link: bool = True,
    force: bool = False,
    shard_mb: float = 500.0,
    max_side: int | None = None,
    document_root: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export the catalog in ``fmt`` (one of `FORMATS`) into the folder ``out``."""
    from curator.formats.records import select_records

    chosen = select_records(session, home=home, unlabeled=fmt == "label-studio")
    if fmt == "hf":
        from curator.formats.hub import export_hf

        result = export_hf(chosen, out=out, link=link, force=force, on_progress=on_progress)
    elif fmt == "parquet":
        from curator.formats.hub import export_parquet

        result = export_parquet(
            chosen, out=out, shard_mb=shard_mb, force=force, on_progress=on_progress
        )
    elif fmt == "webdataset":
        from curator.formats.shards import export_webdataset

        result = export_webdataset(
            chosen,
            out=out,
            shard_mb=shard_mb,
            max_side=max_side,
            force=force,
            on_progress=on_progress,
        )
    elif fmt == "label-studio":
        from curator.formats.labelstudio import export_label_studio

        result = export_label_studio(
            chosen, out=out, document_root=document_root, link=link, force=force
        )
    else:
        raise ValueError(f"no export format {fmt!r}")
    extra = {"missing_files": chosen.missing_files, "conflicts": chosen.conflicts}
    return {**result, **{k: v for k, v in extra.items() if v}}
