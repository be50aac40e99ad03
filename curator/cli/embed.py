"""``curator embed``, ``curator similar``, ``curator search``: the pictures as vectors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import typer

from curator.cli.common import (
    counting_unreadable,
    decoding_workers_option,
    device_option,
    fail,
    forward_batch_option,
    handle_errors,
    open_settings_catalog,
    print_json,
    progress_bar,
    settings_of,
    stdout,
)
from curator.defaults import EMBED
from curator.display import escape_controls

if TYPE_CHECKING:
    from curator.learn.embedding import EmbedProgress

#: Each stage's bar: the pictures embedded, then the rows of the set scored.
STAGES = {
    "embedding": "embedding with {}",
    "index": "indexing the vectors",
    "neighbours": "finding each picture's neighbours",
    "checking": "checking the most outlying exactly",
    "clusters": "clustering the pictures",
}


@contextmanager
def stage_bars(embedder: str) -> Iterator[Callable[[EmbedProgress], None]]:
    """One progress bar a stage of an embed run, each closed when the next begins (a first
    refresh of a large set searches every picture's neighbours: minutes, not silence)."""
    with ExitStack() as stack:
        current: list[tuple[str, ExitStack, Callable[..., None]]] = []

        def show(p: EmbedProgress) -> None:
            if not current or current[0][0] != p.stage:
                if current:
                    current.pop()[1].close()
                bar = stack.enter_context(ExitStack())
                update = bar.enter_context(progress_bar(STAGES[p.stage].format(embedder), None))
                current.append((p.stage, bar, update))
            update = current[0][2]
            if p.stage == "embedding":
                counting_unreadable(update)(p)
            else:
                update(p.done, "", total=p.total)

        yield show


EMBEDDER_HELP = "model (a curator model's trunk), imagenet (ResNet-50) or clip (curator[clip])."


def embed_command(
    ctx: typer.Context,
    embedder_name: str = typer.Option(EMBED["embedder"], "--embedder", help=EMBEDDER_HELP),
    model_ref: int | None = typer.Option(
        None, "--model", help="With --embedder model: model id (default: the default model)."
    ),
    clip_model: str = typer.Option(
        EMBED["clip_model"],
        "--clip-model",
        help="With --embedder clip: open_clip ARCH:WEIGHTS, or a folder with "
        "open_clip_config.json and its weights.",
    ),
    batch_size: int = forward_batch_option(),
    workers: int = decoding_workers_option(),
    device: str = device_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Embed every active image as a vector: for the outlier and clusters queues, similar
    pictures and, with CLIP, text search and the off-query queue.

    The vectors are stored beside the catalog, one set per embedder and version (a new model
    makes a new set; sets are never mixed). An interrupted run keeps what it embedded and
    the same command continues; a rerun embeds only the images added since. Each run also
    brings each image's outlier score and cluster up to date, and with CLIP measures each
    searched picture against the words of its search (the off-query queue).

    Example:

        curator embed
        curator embed --model 2
        curator embed --embedder imagenet
        curator embed --embedder clip --clip-model ViT-B-32:laion2b_s34b_b79k
    """
    from curator.learn.embedding import embed_catalog, load_embedder

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    embedder = load_embedder(
        catalog,
        settings.home,
        embedder_name,
        model_ref=model_ref,
        clip_model=clip_model,
        device=device,
    )
    started = time.monotonic()
    with stage_bars(embedder.name) as show:
        counts = embed_catalog(
            catalog,
            settings.home,
            embedder,
            batch_size=batch_size,
            workers=workers,
            on_progress=show,
        )
    if as_json:
        print_json(counts)
        return
    seconds = time.monotonic() - started
    rate = counts["embedded"] / seconds if seconds else 0.0
    stdout.print(
        f"{escape_controls(counts['version'])}: embedded {counts['embedded']} images "
        f"({rate:.1f}/s), {counts['already_embedded']} already embedded, "
        f"{counts['failed']} unreadable; {counts['vectors']} vectors of {counts['dim']}, "
        f"{counts['clusters']} clusters, {counts.get('rescored', 0)} outlier scores updated"
        + (
            f", {counts['query_distances']} pictures measured against their search's words"
            if counts.get("query_distances")
            else ""
        )
    )
    for image_id, why in sorted((counts.get("failures") or {}).items())[:10]:
        stdout.print(f"  image {image_id}: {escape_controls(why)}")
    after = "clusters, off-query" if embedder.text is not None else "clusters"
    stdout.print(f"next: curator review --queue outlier (or {after})")


def similar_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="An image id, a sha256 prefix, or a picture file."),
    limit: int = typer.Option(20, min=1, max=1000, help="How many to list."),
    device: str = typer.Option("cpu", help="Where a picture not embedded yet is embedded."),
    as_json: bool = typer.Option(False, "--json", help="Print the neighbours as JSON."),
) -> None:
    """List the pictures most like one picture, by the newest vectors of curator embed.

    Images added since the vectors were made are embedded first, by the same embedder.

    Example:

        curator similar 42
        curator similar 3fa9c1 --limit 50
        curator similar ~/Downloads/photo.jpg --json
    """
    from curator.learn.neighbours import similar

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    image_id, found = similar(catalog, settings.home, ref, limit=limit, device=device)
    if as_json:
        print_json({"image": image_id, "similar": [n.as_dict() for n in found]})
        return
    _print_neighbours(catalog, found)


def search_command(
    ctx: typer.Context,
    text: str = typer.Argument("", help="What the pictures show, in words."),
    prelabel: bool = typer.Option(
        False,
        "--prelabel",
        help="Instead: give every picture no person labeled the class whose words ('a photo "
        "of CLASS') it is nearest, as a weak label of origin model.",
    ),
    limit: int = typer.Option(20, min=1, max=1000, help="How many to list."),
    device: str = typer.Option("cpu", help="Where the words are embedded."),
    as_json: bool = typer.Option(False, "--json", help="Print the pictures as JSON."),
) -> None:
    """Find pictures by what they show, in words (needs curator embed --embedder clip).

    With --prelabel, a new crawl gets a zero-shot label: each picture no person labeled
    gets the class CLIP finds nearest, with origin model (the disagree queue then weighs it
    like any weak label; a person's decision always wins).

    Example:

        curator search "a single person"
        curator search "clip art" --limit 100 --json
        curator search --prelabel
    """
    from curator.learn.neighbours import text_search, zero_shot

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    if prelabel:
        if text:
            fail("--prelabel labels by the classes' own words; give no text with it")
        made = zero_shot(catalog, settings.home, device=device)
        if as_json:
            print_json(made)
            return
        shown = ", ".join(f"{escape_controls(k)} {v}" for k, v in made["prelabeled"].items())
        stdout.print(f"zero-shot labels (origin model): {shown}")
        if made["beneath"]:
            under = ", ".join(f"{k} {v}" for k, v in made["beneath"].items())
            stdout.print(
                f"  the label of {made['in_effect']} of them; the others keep the stronger "
                f"weak label they have ({under})"
            )
        return
    found = text_search(catalog, settings.home, text, limit=limit, device=device)
    if as_json:
        print_json({"text": text, "found": [n.as_dict() for n in found]})
        return
    _print_neighbours(catalog, found)


def _print_neighbours(catalog: object, found: list) -> None:
    from db.queues import items_of

    with catalog.reading() as session:  # type: ignore[attr-defined]
        items = {i.id: i for i in items_of(session, [n.id for n in found])}
    if not found:
        stdout.print("nothing found")
    for n in found:
        item = items.get(n.id)
        label = f"{item.label} ({item.origin})" if item and item.label else "unlabeled"
        sha = item.sha256[:12] if item else "-"
        stdout.print(f"{n.id:>8}  {sha}  {n.similarity:.3f}  {escape_controls(label)}")


def register(app: typer.Typer) -> None:
    app.command("embed")(handle_errors(embed_command))
    app.command("similar")(handle_errors(similar_command))
    app.command("search")(handle_errors(search_command))
