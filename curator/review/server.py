"""The review server: a small Starlette app over the catalog, and one static page.

    GET  /                       the page (static/index.html)
    GET  /api/state              classes, keys, author, queues and their sizes
    GET  /api/queue/{name}       a page of a queue (?limit=, ?after=)
    GET  /api/images/{id}        one image: labels, sources, group
    POST /api/label              {"ids": [...], "label": "happy" | "reject" | null}
    POST /api/undo               {"events": [...]}: undo decisions made here
    POST /api/separate           {"id": ...}: this near-duplicate group holds no duplicates
    POST /api/split-off          {"id": ...}: this one image is not a copy of the rest
    GET  /api/explain/{id}.png   Grad-CAM of a model's prediction (?model=N, default: the
                                 default model), the e key
    GET  /api/similar/{id}       the pictures most like this one, as a queue page (the m key)
    GET  /api/search?text=       the pictures the words describe, with CLIP (the / key)
    GET  /thumbs/{sha256}.jpg    a thumbnail (immutable: content-addressed)
    GET  /originals/{sha256}     the stored original

Every decision is a new label event (origin ``human``, the reviewer as author); an undo is a
new event too, and withdraws only decisions of this server's own run. Each request is its
own short transaction, so two reviewers, and a crawl writing at the same time, work side by
side. What other pages in the browser may not do, and the token off loopback, are
`curator.review.guard`'s; the limits on what one request may carry, `curator.review.payload`'s.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from classifier.errors import TrainingError
from curator.config import Layout
from curator.errors import CuratorError
from curator.hints import REVIEW_PAGE, with_hint
from curator.ingest.dedup import separate_group, split_off
from curator.ingest.thumbs import ThumbStore
from curator.review.guard import LOOPBACK_NAMES, protect
from curator.review.payload import BadRequest, cursor, id_list, json_body, path_id, row_id
from curator.stats import image_details
from db.catalog import Catalog
from db.errors import CatalogBusy, CatalogError, UnknownClass, UnknownImage
from db.grouplabels import kept_labels
from db.groups import representatives_of
from db.images import image_by_id, path_and_format
from db.labels import current_labels, label_images, undo_events
from db.queues import (
    QUEUES,
    VECTOR_QUEUES,
    QueueUnavailable,
    UnknownQueue,
    items_of,
    queue_counts,
    review_queue,
)
from db.rankings import refresh_kept
from db.registry import NoModel, UnknownModel, default_model, model_by_id
from db.settings import REJECT, get_classes
from db.vectors import NoVectors

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from curator.learn.models import LoadedModel

STATIC = Path(__file__).resolve().parent / "static"
_SHA = re.compile(r"^[0-9a-f]{64}$")
_MEDIA = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
# Content-addressed, so never stale; private, so no shared cache keeps a reviewer's photos.
_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
#: Grad-CAM renderings at once, and waiting: a flood of e presses is answered 429 beyond it.
EXPLAIN_RUNNING = 1
EXPLAIN_WAITING = 4


def keys_for(classes: list[str]) -> dict[str, str]:
    """Keyboard shortcuts: 1..9 for the classes in order, and each class's first letter when
    no other class starts with it and it is not a key of the page (x, s, z, g, f, a, n, e,
    c, y, m); x rejects."""
    keys = {str(i + 1): name for i, name in enumerate(classes[:9])}
    taken = {"x", "s", "z", "g", "f", "a", "n", "e", "c", "y", "m"}
    firsts = [name[:1].lower() for name in classes]
    for name, first in zip(classes, firsts, strict=True):
        if first.isalpha() and firsts.count(first) == 1 and first not in taken:
            keys[first] = name
    keys["x"] = REJECT
    return keys


def _why(name: str) -> str:
    """Why a queue cannot be had yet, in the page's words."""
    if name == "off-query":
        return "needs CLIP vectors of crawled pictures: run curator embed --embedder clip"
    if name in VECTOR_QUEUES:
        return "needs the pictures' vectors: run curator embed"
    return "needs a model's predictions: run curator score"


def endpoint(
    handler: Callable[[Request, Any], Response], *, body: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Run a handler in the thread pool (the catalog is synchronous), with its JSON body,
    and turn the catalog's errors into JSON answers with the right status, worded with what
    to do next where curator.hints has it (the page shows the message as it is)."""

    async def wrapped(request: Request) -> Response:
        try:
            payload = await json_body(request) if body else None
            return await run_in_threadpool(handler, request, payload)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except (UnknownImage, UnknownQueue, UnknownModel) as exc:
            return JSONResponse({"error": with_hint(exc, REVIEW_PAGE)}, 404)
        except (QueueUnavailable, NoVectors, NoModel, CuratorError, TrainingError) as exc:
            return JSONResponse({"error": with_hint(exc, REVIEW_PAGE)}, 409)
        except CatalogBusy as exc:
            return JSONResponse({"error": str(exc)}, 503)
        except (UnknownClass, CatalogError, ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc) or type(exc).__name__}, 400)

    return wrapped


def limited(
    handler: Callable[[Request], Awaitable[Response]], *, running: int, waiting: int
) -> Callable[[Request], Awaitable[Response]]:
    """At most ``running`` requests of this handler at once, ``waiting`` more queued on the
    event loop (not in the thread pool, which the other requests need); 429 past that."""
    slots = asyncio.Semaphore(running)
    held = 0

    async def wrapped(request: Request) -> Response:
        nonlocal held
        if held >= running + waiting:
            return JSONResponse(
                {"error": "busy with other explanations; try again in a moment"},
                429,
                headers={"Retry-After": "2"},
            )
        held += 1
        try:
            async with slots:
                return await handler(request)
        finally:
            held -= 1

    return wrapped


def create_app(
    *,
    catalog: Catalog,
    home: Path,
    author: str,
    run_id: int,
    token: str | None = None,
    port: int = 0,
    hosts: frozenset[str] = LOOPBACK_NAMES,
    queue: str = "new",
) -> ASGIApp:
    """The review app for one catalog; ``author`` is who every decision is recorded for, and
    ``run_id`` the review run they belong to (an undo withdraws only decisions of this run).
    ``hosts`` are the names it answers to (`curator.review.guard.allowed_hosts`); with a
    ``token``, every request needs it (``port`` names its cookie)."""
    api = Handlers(catalog=catalog, home=home, author=author, run_id=run_id, queue=queue)
    explain = limited(endpoint(api.explanation), running=EXPLAIN_RUNNING, waiting=EXPLAIN_WAITING)
    routes = [
        Route("/", api.index),
        Route("/api/health", endpoint(api.health)),
        Route("/api/state", endpoint(api.state)),
        Route("/api/queue/{name}", endpoint(api.queue_page)),
        Route("/api/images/{image_id:int}", endpoint(api.image)),
        Route("/api/label", endpoint(api.label, body=True), methods=["POST"]),
        Route("/api/undo", endpoint(api.undo, body=True), methods=["POST"]),
        Route("/api/separate", endpoint(api.separate, body=True), methods=["POST"]),
        Route("/api/split-off", endpoint(api.split, body=True), methods=["POST"]),
        Route("/api/explain/{image_id:int}.png", explain),
        Route("/api/similar/{image_id:int}", endpoint(api.similar)),
        Route("/api/search", endpoint(api.search)),
        Route("/thumbs/{sha}.jpg", api.thumb),
        Route("/originals/{sha}", endpoint(api.original)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return protect(Starlette(routes=routes), hosts=hosts, token=token, port=port)


class Handlers:
    """The answers of the review app's routes, over one catalog, for one reviewer and run."""

    def __init__(
        self, *, catalog: Catalog, home: Path, author: str, run_id: int, queue: str
    ) -> None:
        self.catalog, self.home = catalog, home
        self.author, self.run_id, self.queue = author, run_id, queue
        self.thumbs = ThumbStore(home)
        self.explainer = Explainer(catalog, home)
        from curator.learn.neighbours import Finder

        self.finder = Finder(catalog, home)

    def sha_row(self, sha: str) -> tuple[str, str]:
        if not _SHA.match(sha):
            raise UnknownImage(sha[:80])
        with self.catalog.reading() as session:
            row = path_and_format(session, sha256=sha)
        if row is None:
            raise UnknownImage(sha)
        relpath, fmt = row
        return str(stored_file(self.home, relpath, sha)), fmt

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def health(self, request: Request, _body: None) -> Response:
        return JSONResponse({"ok": True})

    def state(self, request: Request, _body: None) -> Response:
        with self.catalog.reading() as session:
            classes = get_classes(session)
            counts = queue_counts(session)
            model = default_model(session)
        return JSONResponse(
            {
                "classes": classes,
                "keys": keys_for(classes),
                "author": self.author,
                "queue": self.queue,
                "queues": {name: counts.get(name) for name in QUEUES},
                # The model the uncertain queue, the panel and Grad-CAM go by, when not told.
                "model": None if model is None else {"id": model.id, "classes": model.classes},
                "why": {name: _why(name) for name in QUEUES if counts.get(name) is None},
            }
        )

    def queue_page(self, request: Request, _body: None) -> Response:
        limit = min(max(int(request.query_params.get("limit", 200)), 1), 500)
        after = cursor(request.query_params.get("after", "0"))
        name = request.path_params["name"]
        with self.catalog.reading() as session:
            page = review_queue(session, name=name, limit=limit, after=after)
        return JSONResponse({"items": [i.as_dict() for i in page.items], "next": page.next})

    def similar(self, request: Request, _body: None) -> Response:
        limit = min(max(int(request.query_params.get("limit", 100)), 1), 500)
        chosen = self.finder.similar(path_id(str(request.path_params["image_id"])), limit)
        return self.as_page(chosen)

    def search(self, request: Request, _body: None) -> Response:
        limit = min(max(int(request.query_params.get("limit", 100)), 1), 500)
        text = request.query_params.get("text", "")
        if len(text) > 300:
            raise BadRequest("text: 300 characters at most")
        return self.as_page(self.finder.search(text, limit))

    def as_page(self, chosen: list[int]) -> Response:
        with self.catalog.reading() as session:
            items = items_of(session, chosen)
        return JSONResponse({"items": [i.as_dict() for i in items], "next": None})

    def image(self, request: Request, _body: None) -> Response:
        with self.catalog.reading() as session:
            ref = str(path_id(str(request.path_params["image_id"])))
            info = image_details(session, ref=ref, home=str(self.home))
        info.pop("path", None)
        return JSONResponse(info)

    def label(self, request: Request, body: dict[str, Any]) -> Response:
        ids = id_list(body, "ids")
        value = body.get("label")
        if value is not None and not isinstance(value, str):
            raise ValueError("label must be a string or null")
        with self.catalog.writing() as session:
            events = label_images(
                session, image_ids=ids, label=value, author=self.author, run_id=self.run_id
            )
            labels = _labels(session, [e.image_id for e in events])  # members included
        return JSONResponse({"events": [e.id for e in events], "labels": labels})

    def undo(self, request: Request, body: dict[str, Any]) -> Response:
        event_ids = id_list(body, "events")
        with self.catalog.writing() as session:
            restored, skipped = undo_events(
                session, event_ids=event_ids, author=self.author, run_id=self.run_id
            )
            labels = _labels(session, [e.image_id for e in restored])
        return JSONResponse({"undone": len(restored), "skipped": skipped, "labels": labels})

    def separate(self, request: Request, body: dict[str, Any]) -> Response:
        image_id = row_id(body.get("id"), "id")
        with self.catalog.writing() as session:
            members = separate_group(
                session, image_id=image_id, author=self.author, run_id=self.run_id
            )
        return JSONResponse({"separated": members})

    def split(self, request: Request, body: dict[str, Any]) -> Response:
        image_id = row_id(body.get("id"), "id")
        with self.catalog.writing() as session:
            moved = split_off(session, image_id=image_id, author=self.author, run_id=self.run_id)
        return JSONResponse({"split": moved})

    async def thumb(self, request: Request) -> Response:
        # The hot path of a grid page: one indexed read, on the event loop, no catalog query.
        # A thumbnail that is missing (made on another machine) is made in the thread pool.
        sha = request.path_params["sha"]
        blob = self.thumbs.get(sha) if _SHA.match(sha) else None
        if blob is None:
            try:
                path, _fmt = await run_in_threadpool(self.sha_row, sha)
            except UnknownImage as exc:
                return JSONResponse({"error": str(exc)}, 404)
            blob = await run_in_threadpool(self.thumbs.get_or_make, sha, Path(path))
        return Response(blob, media_type="image/jpeg", headers=_IMMUTABLE)

    def original(self, request: Request, _body: None) -> Response:
        path, fmt = self.sha_row(request.path_params["sha"])
        return FileResponse(
            path, media_type=_MEDIA.get(fmt, "application/octet-stream"), headers=_IMMUTABLE
        )

    def explanation(self, request: Request, _body: None) -> Response:
        wanted = request.query_params.get("model")
        model = None if wanted is None else path_id(wanted)
        png, used = self.explainer.png(path_id(str(request.path_params["image_id"])), model)
        headers = {"Cache-Control": "no-cache", "X-Curator-Model": str(used)}
        return Response(png, media_type="image/png", headers=headers)


class Explainer:
    """Grad-CAM for the page's ``e`` key: of the model whose prediction the page shows, or
    the default model (the one curator models marks); the last model used stays loaded,
    figures are cached under the home by model and image."""

    def __init__(self, catalog: Catalog, home: Path) -> None:
        self.catalog, self.home = catalog, home
        self.lock = threading.Lock()
        self.loaded: LoadedModel | None = None
        self.key: tuple[int, datetime] | None = None

    def _model(self, wanted: int | None) -> LoadedModel:
        from curator.learn.models import load_registered

        with self.catalog.reading() as session:
            chosen = (
                default_model(session) if wanted is None else model_by_id(session, model_id=wanted)
            )
        if chosen is None:
            if wanted is not None:
                raise UnknownModel(wanted)
            raise NoModel()
        # The same id can name a new model once the newest one was removed (SQLite gives it
        # again): the time it was registered tells them apart.
        key = (chosen.id, chosen.created_at)
        if self.loaded is None or self.key != key:
            self.loaded = load_registered(self.catalog, self.home, chosen.id, device="cpu")
            self.key = key
        return self.loaded

    def png(self, image_id: int, wanted: int | None = None) -> tuple[bytes, int]:
        """The figure, and the id of the model it explains."""
        from classifier.explain import gradcam_figure
        from curator.learn.explaining import explain_picture, open_picture

        with self.lock:  # one explanation at a time: each is a forward and backward pass
            model = self._model(wanted)
            cache = Layout(self.home).explain_cache / str(model.id) / f"{image_id}.png"
            if cache.exists():
                return cache.read_bytes(), model.id
            with self.catalog.reading() as session:
                image = image_by_id(session, image_id=image_id)
                if image is None:
                    raise UnknownImage(str(image_id))
                path = stored_file(self.home, image.path, str(image_id))
            result = explain_picture(model, open_picture(path))
            figure = gradcam_figure(result, result.predicted, theme="dark")
            buffer = io.BytesIO()
            figure.save(buffer, format="PNG")
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, cache)
            return buffer.getvalue(), model.id


def stored_file(home: Path, relpath: str, name: str) -> Path:
    """A stored original's real path, refused when it leads out of the home's images/ (a
    symlink planted there must not serve, or render, any other file)."""
    path = (home / relpath).resolve()
    if not path.is_relative_to(Layout(home).images.resolve()):
        raise UnknownImage(name)
    return path


def _labels(session: Session, ids: list[int]) -> dict[str, dict[str, Any]]:
    """What the page shows of each image after a change: its group's label (the one every
    command goes by), whether people now disagree on the group, and its own label."""
    refresh_kept(session)  # the group columns, brought up to date in this transaction
    own = current_labels(session, image_ids=ids)
    rep_of = representatives_of(session, image_ids=ids)
    groups = kept_labels(session, image_ids=rep_of.values())
    out: dict[str, dict[str, Any]] = {}
    for i in ids:
        group = groups.get(rep_of.get(i, i))
        mine = own.get(i)
        out[str(i)] = {
            "label": group.label if group else None,
            "origin": group.origin if group else None,
            "conflict": group.conflict if group else False,
            "own": mine.label if mine else None,
            "own_origin": mine.origin if mine else None,
        }
    return out
