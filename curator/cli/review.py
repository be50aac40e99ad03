"""``curator review``, ``curator label``, ``curator queue``."""

from __future__ import annotations

import csv
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode

import typer
from sqlalchemy.orm import Session

from curator.cli.common import (
    default_author,
    fail,
    handle_errors,
    open_settings_catalog,
    print_json,
    settings_of,
    stdout,
)
from curator.defaults import REVIEW_PORT
from curator.display import escape_controls
from curator.errors import BadRows, CuratorError
from curator.review.guard import MIN_TOKEN, allowed_hosts, check_token, is_loopback, new_token
from curator.runs import tracked_run
from db.catalog import display_url, read_only_error
from db.errors import CatalogError, UnknownClass
from db.images import find_image
from db.labels import (
    check_author,
    check_label,
    count_events,
    current_labels,
    label_images,
    latest_event,
)
from db.queues import QUEUES, review_queue
from db.settings import REJECT, get_classes


def _open_when_ready(url: str, health: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=1):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.1)


def review_command(
    ctx: typer.Context,
    queue: str = typer.Option("new", "--queue", "-q", help=f"One of: {', '.join(QUEUES)}."),
    port: int = typer.Option(
        REVIEW_PORT, min=0, max=65535, help="Port to listen on (a free one if it is taken)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; off loopback needs a token."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    author: str = typer.Option(default_author(), help="Who the decisions are recorded for."),
    token: str | None = typer.Option(
        None,
        envvar="CURATOR_REVIEW_TOKEN",
        show_envvar=True,
        help=f"Token every request needs, at least {MIN_TOKEN} characters (made up when "
        "listening off loopback). The variable keeps it out of the process list.",
    ),
) -> None:
    """Open the labeling page: confirm and correct labels with the keyboard.

    Focus view: one image at a time; 1/2 (or h/u) give a class, x rejects, s skips, z undoes,
    arrows move. Grid view (g): select many, label them in one stroke. Every decision is saved
    at once as a new event of the image's label history.

    The server answers only to its own address's names and only its own page may change
    labels, so other web pages open in the browser can neither read nor change the catalog.

    Example:

        curator review
        curator review --queue weak --no-browser
        curator review --host 0.0.0.0 --port 8800
    """
    from curator.review import serving
    from curator.review.server import create_app

    if queue not in QUEUES:
        fail(f"no queue {queue!r}; one of {', '.join(QUEUES)}")
    if token is not None:
        check_token(token)
    elif not is_loopback(host):
        token = new_token()
    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    if catalog.read_only:  # every decision is a write: refused before the page is offered
        raise read_only_error(display_url(settings.db_url))
    sock = serving.bind(host, port)
    actual = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    query = {"queue": queue, **({"token": token} if token else {})}
    url = f"http://{shown}:{actual}/?{urlencode(query)}"
    if actual != port and port != 0:
        stdout.print(f"port {port} is taken; using {actual}")
    stdout.print(
        f"reviewing {escape_controls(display_url(settings.db_url))} as {escape_controls(author)}"
    )
    stdout.print(f"open {escape_controls(url)}   (Ctrl-C stops)")
    if not no_browser:
        health = f"http://{shown}:{actual}/api/health" + (f"?token={token}" if token else "")
        threading.Thread(target=_open_when_ready, args=(url, health), daemon=True).start()
    params = {"author": author, "host": host, "queue": queue}
    with tracked_run(catalog, kind="review", params=params) as run:
        app = create_app(
            catalog=catalog,
            home=settings.home,
            author=author,
            run_id=run.id,
            token=token,
            port=actual,
            hosts=allowed_hosts(host),
            queue=queue,
        )
        try:
            serving.run(serving.make_server(app), [sock])
        finally:
            sock.close()
            with catalog.reading() as session:
                run.counts = {"decisions": count_events(session, run_id=run.id)}


class LabelRow(NamedTuple):
    """One decision to record: where it was given (a CSV line, a Label Studio task), the
    image (id or sha256), the label, its author, and what is wrong with it if already known."""

    where: str
    ref: str
    label: str
    author: str | None
    problem: str | None = None


def _label_rows(path: Path) -> list[LabelRow]:
    """The decisions of a CSV with a header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {name.strip().lower(): name for name in reader.fieldnames or []}
            ref_field = next((fields[n] for n in ("image", "id", "sha256") if n in fields), None)
            if ref_field is None or "label" not in fields:
                raise CuratorError(
                    f"{path} needs a header with an image column (image, id or sha256) "
                    "and a label column"
                )
            author_field = fields.get("author")
            return [
                LabelRow(
                    f"line {line}",
                    (row[ref_field] or "").strip(),
                    (row[fields["label"]] or "").strip(),
                    (row[author_field] or "").strip() or None if author_field else None,
                )
                for line, row in enumerate(reader, start=2)
            ]
    except FileNotFoundError:
        raise CuratorError(f"no such file: {path}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CuratorError(f"{path} is not a readable CSV file: {exc}") from None


def _row_problems(
    session: Session, ref: str, label: str, who: str, allowed: list[str]
) -> tuple[int | None, list[str]]:
    """The image a row names, and what is wrong with the row (nothing: an empty list)."""
    problems = []
    image_id = None
    try:
        image_id = find_image(session, ref=ref).id
    except CatalogError as exc:
        problems.append(str(exc))
    if not label:
        problems.append(f"no label for {ref!r}")
    elif label not in allowed:
        problems.append(str(UnknownClass(label, allowed[:-1])))
    try:
        check_author(who)
    except CatalogError as exc:
        problems.append(str(exc))
    return image_id, problems


def _label_studio_rows(path: Path) -> list[LabelRow]:
    """The decisions of a Label Studio JSON export (its annotators as authors)."""
    from curator.formats.labelstudio import read_annotations

    return [
        LabelRow(a.where, a.sha256 or "", a.label or "", a.author, a.problem)
        for a in read_annotations(path)
    ]


def _on_record(session: Session, image_id: int, label: str, author: str) -> bool:
    """Whether this person's latest decision about the image is already this label."""
    latest = latest_event(session, image_id=image_id, origin="human")
    return latest is not None and latest.label == label and latest.author == author


def _resolve_label_rows(
    session: Session, rows: list[LabelRow], author: str, source: str
) -> list[tuple[int, str, str]]:
    """(image id, label, author) for each row; raises `BadRows` naming every wrong row, in
    the order given, so that one run shows all there is to fix."""
    allowed = [*get_classes(session), REJECT]
    resolved: list[tuple[int, str, str]] = []
    problems: list[str] = []
    for row in rows:
        who = row.author or author
        if row.problem is not None:
            problems.append(f"{row.where}: {row.problem}")
            continue
        image_id, wrong = _row_problems(session, row.ref, row.label, who, allowed)
        if wrong:
            problems.append((f"{row.where}: " if row.where else "") + "; ".join(wrong))
        elif image_id is not None:
            resolved.append((image_id, row.label, who))
    if problems:
        what = f"rows of {source}" if source else "of the images given"
        raise BadRows(what, problems, "nothing was recorded")
    return resolved


def label_command(
    ctx: typer.Context,
    refs: list[str] | None = typer.Argument(None, help="Image ids or sha256 prefixes."),
    as_label: str | None = typer.Option(None, "--as", help="A class, or reject."),
    from_csv: Path | None = typer.Option(
        None, "--from-csv", help="CSV with image (id or sha256) and label columns."
    ),
    from_label_studio: Path | None = typer.Option(
        None,
        "--from-label-studio",
        help="A Label Studio JSON export of tasks curator export --format label-studio wrote: "
        "each task's latest annotation, by its annotator.",
    ),
    author: str = typer.Option(default_author(), help="Who the decisions are recorded for."),
    as_json: bool = typer.Option(False, "--json", help="Print what was recorded as JSON."),
) -> None:
    """Record human labels from the command line, a CSV file or a Label Studio export.

    All rows are checked before anything is written: if any names an unknown image or
    class, has no label or a bad author, every such row is listed (in file order, the first
    20 and how many more) and nothing is recorded. From Label Studio (its JSON export), each
    task's latest annotation that was not skipped is a decision of its annotator (their
    e-mail); one that still says what the task was exported with is left out as unchanged.

    Example:

        curator label 12 15 3fa9c1 --as happy
        curator label 40 --as reject --author anna
        curator label --from-csv corrections.csv
        curator label --from-label-studio project-1-at-2026-05-01.json
    """
    if sum(map(bool, (refs, from_csv, from_label_studio))) != 1:
        fail("give image ids with --as, or --from-csv FILE, or --from-label-studio FILE")
    if refs and as_label is None:
        fail("say which label with --as CLASS (or --as reject)")
    catalog = open_settings_catalog(settings_of(ctx))
    if refs:  # one label and one author for all: said once if wrong
        check_author(author)
        with catalog.reading() as session:
            check_label(session, label=as_label or "")
    rows: list[LabelRow]
    if from_csv:
        rows = _label_rows(from_csv)
    elif from_label_studio:
        rows = _label_studio_rows(from_label_studio)
    else:
        rows = [LabelRow("", ref, as_label or "", None) for ref in refs or []]
    recorded: list[dict[str, object]] = []
    with catalog.writing() as session:
        source = str(from_csv or from_label_studio or "")
        resolved = _resolve_label_rows(session, rows, author, source)
        if from_label_studio:  # an export read again: what is on record already is not new
            resolved = [r for r in resolved if not _on_record(session, *r)]
        for image_id, label, who in resolved:
            label_images(session, image_ids=[image_id], label=label, author=who)
            recorded.append({"id": image_id, "label": label, "author": who})
        now = current_labels(session, image_ids=[r[0] for r in resolved])
    if as_json:
        print_json({"recorded": recorded})
        return
    if not recorded:
        stdout.print(f"no new decisions in {escape_controls(source)}; nothing was recorded")
    for entry in recorded:
        current = now.get(int(str(entry["id"])))
        stdout.print(
            f"image {entry['id']}: {escape_controls(entry['label'])} (by "
            f"{escape_controls(entry['author'])}); now "
            f"{escape_controls(current.label) if current else 'unlabeled'}"
        )


#: What an empty queue holds when it is not empty, where that is not plain.
EMPTY = {
    "off-query": (
        " (it holds the pictures a search found, once curator embed --embedder clip has"
        " measured them against the search's words)"
    ),
}


def queue_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"One of: {', '.join(QUEUES)}."),
    limit: int = typer.Option(20, min=1, max=10_000, help="How many to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the queue as JSON."),
) -> None:
    """List the images a review queue would show first.

    new, weak, all and duplicates come from the labels; uncertain (closest to the model's
    decision boundary), disagree (weak labels the model finds least likely) and weak-disagree
    (the same for search-query labels) rank by the predictions of curator score; outlier
    (farthest from their neighbours), clusters (one cluster a page) and off-query (CLIP:
    farthest from the words of the search that found them) by the vectors of curator embed;
    issues and issue:TYPE by the properties curator check measures.

    Example:

        curator queue new --limit 10
        curator queue disagree --limit 50
        curator queue weak-disagree --json
        curator queue off-query --limit 100
    """
    catalog = open_settings_catalog(settings_of(ctx))
    with catalog.reading() as session:
        page = review_queue(session, name=name, limit=limit)
    if as_json:
        print_json({"queue": name, "items": [i.as_dict() for i in page.items]})
        return
    if not page.items:
        stdout.print(f"the {escape_controls(name)} queue is empty" + EMPTY.get(name, ""))
    for item in page.items:
        label = f"{item.label} ({item.origin})" if item.label else "unlabeled"
        extra = f", {len(item.duplicates)} near copies" if item.duplicates else ""
        p = item.prediction
        model = ""
        if p is not None:
            mine = p["probs"].get(item.label) if item.label else None
            model = f"  model {p['model']}: {p['label']} {p['confidence']:.2f}" + (
                f" (p of {item.label}: {mine:.2f})" if mine is not None else ""
            )
        stdout.print(f"{item.id:>8}  {item.sha256[:12]}  {escape_controls(label + extra + model)}")


def register(app: typer.Typer) -> None:
    app.command("review")(handle_errors(review_command))
    app.command("label")(handle_errors(label_command))
    app.command("queue")(handle_errors(queue_command))
