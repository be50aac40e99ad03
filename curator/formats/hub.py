"""Hugging Face's formats: an ``imagefolder`` with ``metadata.jsonl``, and Parquet shards.

``hf``: ``OUT/<split>/<sha256>.<ext>`` (train, validation, test: the names `datasets` takes
for splits) and ``OUT/<split>/metadata.jsonl``, one line per picture: its ``file_name`` and
the record of `curator.formats.records`. The pictures are hard links to the stored originals
where the file system allows, copies elsewhere.

``parquet``: ``OUT/data/<split>-NNNNN-of-NNNNN.parquet``, the same columns with the picture's
bytes inside (``image``: ``{bytes, path}``, which `datasets` decodes as an Image, as its own
``push_to_hub`` writes them), in shards of about ``shard_mb`` of pictures, row groups of 100
rows. pyarrow is needed for this one only (``pip install 'curator[formats]'``), loaded when
it runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sized
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from curator.errors import ExportError
from curator.export import _place
from curator.formats.outdir import OutFolder
from curator.formats.records import Record, Selection, shard_plan

if TYPE_CHECKING:
    import pyarrow as pa

#: The catalog's split names, as `datasets` names them.
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
_HF_FILES = re.compile(
    r"(train|validation|test)/([0-9a-f]{64}\.[a-z0-9]{1,8}|metadata\.jsonl)|classes\.json"
)
_PARQUET_FILES = re.compile(r"data/(train|validation|test)-\d{5}-of-\d{5}\.parquet|classes\.json")
#: Rows per row group: a reader fetches pictures a hundred at a time, not a shard at once.
ROW_GROUP = 100

Progress = Callable[[int, int], None]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _classes_json(chosen: Selection) -> str:
    return json.dumps({"classes": chosen.classes, "default_model": chosen.model})


def _by_split(records: list[Record]) -> dict[str, list[Record]]:
    split: dict[str, list[Record]] = {name: [] for name in HF_SPLITS.values()}
    for record in records:
        split[HF_SPLITS[record.split]].append(record)
    return split


def _metadata(record: Record) -> dict[str, Any]:
    return {**record.metadata(), "split": HF_SPLITS[record.split]}


def export_hf(
    chosen: Selection,
    *,
    out: Path,
    link: bool = True,
    force: bool = False,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the ``imagefolder``; return the counts by split. A split without pictures gets
    no folder: `datasets` refuses a split of no rows."""
    splits = {name: rows for name, rows in _by_split(chosen.records).items() if rows}
    lines = {
        name: "".join(
            json.dumps({"file_name": f"{r.sha256}{r.ext}", **_metadata(r)}) + "\n" for r in rows
        )
        for name, rows in splits.items()
    }
    classes = _classes_json(chosen)
    planned = {f"{HF_SPLITS[r.split]}/{r.sha256}{r.ext}": r.sha256 for r in chosen.records}
    planned |= {f"{name}/metadata.jsonl": _digest(text) for name, text in lines.items()}
    planned["classes.json"] = _digest(classes)
    folder = OutFolder(
        out, fmt="hf", files=_HF_FILES, folders=HF_SPLITS.values(), make=splits, force=force
    )
    folder.open(planned)
    for done, record in enumerate(chosen.records, 1):
        rel = f"{HF_SPLITS[record.split]}/{record.sha256}{record.ext}"
        _place(record.path, out / rel, link)
        folder.state[rel] = record.sha256  # the manifest is saved with the metadata below
        if on_progress:
            on_progress(done, len(chosen.records))
    # The metadata last: a split's metadata.jsonl names only pictures already in place.
    for name, text in lines.items():
        folder.write(f"{name}/metadata.jsonl", _digest(text), _text(text), binary=False)
    folder.write("classes.json", _digest(classes), _text(classes), binary=False)
    removed = folder.close(planned)
    return {"files": len(chosen.records), "removed": removed, **_counts(splits)}


def _text(text: str) -> Callable[[IO[str]], int]:
    return lambda fh: fh.write(text)


def _counts(splits: Mapping[str, Sized]) -> dict[str, int]:
    return {f"{name}": len(rows) for name, rows in splits.items()}


# -- Parquet ----------------------------------------------------------------------------------


def _schema() -> pa.Schema:
    import pyarrow as pa

    text, real = pa.string(), pa.float64()
    fields = [
        ("image", pa.struct([("bytes", pa.binary()), ("path", text)])),
        ("id", pa.int64()),
        ("sha256", text),
        ("label", text),
        ("label_index", pa.int64()),
        ("label_origin", text),
        ("split", text),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("phash", text),
        ("sources", pa.list_(pa.struct([("url", text), ("engine", text), ("query", text)]))),
        ("prediction", pa.struct([("model", pa.int64()), ("label", text), ("confidence", real)])),
        ("quality_issues", pa.list_(text)),
    ]  # fmt: skip
    schema = pa.schema(fields)
    features = {f.name: _feature(f.type) for f in schema if f.name != "image"}
    features = {"image": {"_type": "Image"}, **features}
    # What `datasets` reads to know the column types (an Image among them) without guessing.
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return schema.with_metadata(meta)


def _feature(kind: pa.DataType) -> dict[str, Any]:
    """A pyarrow type as `datasets.Features` writes it into a Parquet file's metadata."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return {kind.field(i).name: _feature(kind.field(i).type) for i in range(kind.num_fields)}
    if pa.types.is_list(kind):
        return {"feature": _feature(kind.value_type), "_type": "List"}
    names = {"string": "string", "int64": "int64", "double": "float64"}
    return {"dtype": names[str(kind)], "_type": "Value"}


def _load_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ExportError(
            "the parquet format needs pyarrow: pip install 'curator[formats]'"
        ) from None


def export_parquet(
    chosen: Selection,
    *,
    out: Path,
    shard_mb: float,
    force: bool = False,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the Parquet shards; return the counts by split and the number of shards."""
    _load_pyarrow()
    splits = _by_split(chosen.records)
    shards: dict[str, list[Record]] = {}
    for name, rows in splits.items():
        cut = shard_plan(rows, int(shard_mb * 1e6))
        for i, part in enumerate(cut):
            shards[f"data/{name}-{i:05d}-of-{len(cut):05d}.parquet"] = part
    planned = {rel: _digest(_shard_text(rows)) for rel, rows in shards.items()}
    classes = _classes_json(chosen)
    planned["classes.json"] = _digest(classes)
    folder = OutFolder(out, fmt="parquet", files=_PARQUET_FILES, folders=["data"], force=force)
    folder.open(planned)
    kept = folder.write_shards(
        shards,
        planned,
        lambda rows: partial(_write_parquet, rows=rows),
        total=len(chosen.records),
        on_progress=on_progress,
    )
    folder.write("classes.json", planned["classes.json"], _text(classes), binary=False)
    removed = folder.close(planned)
    return {
        "files": len(chosen.records),
        "shards": len(shards),
        "kept_shards": kept,
        "removed": removed,
        **_counts(splits),
    }


def _shard_text(rows: list[Record]) -> str:
    """What a shard holds, as text: its pictures (by content) and their metadata."""
    return json.dumps([_metadata(r) for r in rows], sort_keys=True)


def _write_parquet(fh: IO[bytes], rows: list[Record]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    with pq.ParquetWriter(fh, schema) as writer:
        for start in range(0, len(rows), ROW_GROUP):
            batch = []
            for record in rows[start : start + ROW_GROUP]:
                meta = _metadata(record)
                image = {"bytes": record.path.read_bytes(), "path": f"{record.sha256}{record.ext}"}
                batch.append({"image": image, **meta})
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
