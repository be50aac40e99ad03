"""``curator check --report DIR``: the check as one HTML page with thumbnails of each issue.

Everything shown is escaped: class names, file names, URLs, sites and engine names come from
the web and from other people's folders. The page loads nothing but its own thumbnails
(a Content-Security-Policy in the page says so).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.ingest.thumbs import ThumbStore
from db.catalog import Catalog
from db.images import images_by_id, sources_of
from db.properties import ISSUES

#: Thumbnails shown per issue type.
SHOWN = 24

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px}img{height:96px;margin:2px}"
    "figure{display:inline-block;margin:4px;text-align:center;font-size:12px}"
)


class ReportFolderNotEmpty(CuratorError):
    def __init__(self, folder: Path) -> None:
        super().__init__(f"{folder} already holds other files; choose an empty folder or --force")


def prepare_folder(folder: Path, *, force: bool) -> None:
    """Make the folder; refuse one that holds files a report did not write, unless forced."""
    if folder.exists() and not folder.is_dir():
        raise CuratorError(f"{folder} is a file, not a folder")
    if folder.is_dir() and not force:
        ours = {"index.html", "thumbs"}
        if any(entry.name not in ours for entry in folder.iterdir()):
            raise ReportFolderNotEmpty(folder)
    try:
        (folder / "thumbs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CuratorError(f"cannot make the report folder {folder}: {exc.strerror}") from None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list[str], rows: list[list[object]]) -> str:
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _figures(ids: list[int], names: dict[int, str]) -> str:
    return "".join(
        f'<figure><img src="thumbs/{i}.jpg" alt="image {i}"><figcaption>{i}<br>'
        f"{_e(names.get(i, ''))}</figcaption></figure>"
        for i in ids
    )


def _source_name(locator: str) -> str:
    """The last part of a path or URL, as a caption (escaped where it is shown)."""
    tail = locator.rstrip("/").rsplit("/", 1)[-1]
    return tail[:80]


def _write_thumbs(catalog: Catalog, home: Path, folder: Path, ids: set[int]) -> dict[int, str]:
    """Each image's thumbnail as thumbs/<id>.jpg (names are ids: never a file's own name);
    returns each image's caption: its first source's name and its label."""
    store = ThumbStore(home)
    with catalog.reading() as session:
        images = images_by_id(session, image_ids=sorted(ids))
        sources = {i: sources_of(session, image_id=i) for i in images}
    labels = {}
    for image_id, image in images.items():
        try:
            blob = store.get_or_make(image.sha256, home / image.path)
        except OSError:
            continue
        tmp = folder / "thumbs" / f".{image_id}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, folder / "thumbs" / f"{image_id}.jpg")
        name = _source_name(sources[image_id][0].locator) if sources[image_id] else ""
        labels[image_id] = " ".join(part for part in (name, image.label or "") if part)
    return labels


def write_report(
    catalog: Catalog, home: Path, folder: Path, result: dict[str, Any], *, force: bool = False
) -> Path:
    """Write index.html (and its thumbnails) into ``folder``; return the page's path."""
    prepare_folder(folder, force=force)
    shown = {i for ids in result["issues"].values() for i in ids[:SHOWN]}
    shown |= {i for pair in result["leaks"][:SHOWN] for i in pair}
    labels = _write_thumbs(catalog, home, folder, shown)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src 'self'; style-src 'unsafe-inline'\">",
        f"<title>curator check</title><style>{_STYLE}</style></head><body>",
        f"<h1>curator check</h1><p>{_e(result['images'])} active images; "
        f"{_e(result['not_measured'])} not measured yet.</p>",
        "<h2>Issues</h2>",
        _table(
            ["issue", "images", "threshold", "what"],
            [[n, result["counts"][n], result["thresholds"][n], ISSUES[n].what] for n in ISSUES],
        ),
    ]
    for name in ISSUES:
        ids = result["issues"][name][:SHOWN]
        if ids:
            parts.append(f"<h3>{_e(name)}</h3>{_figures(ids, labels)}")
    parts.append(f"<h2>Leaks across splits</h2><p>{_e(len(result['leaks']))} pairs</p>")
    for a, b in result["leaks"][:SHOWN]:
        parts.append(f"<div>{_figures([a, b], labels)}</div>")
    parts.append("<h2>Label balance per split</h2>")
    rows = [[s, lab, n] for s, by in result["balance"].items() for lab, n in by.items()]
    parts.append(_table(["split", "label", "images"], rows))
    parts.append("<h2>Labels entangled with sources</h2>")
    ent = [
        [f["class"], f["kind"], f.get("value", f.get("mean")), f.get("share", f.get("others_mean"))]
        for f in result["entanglement"]
    ]
    parts.append(_table(["class", "kind", "value", "share or others' mean"], ent))
    parts.append("</body></html>")
    page = folder / "index.html"
    tmp = folder / ".index.html.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, page)
    return page
