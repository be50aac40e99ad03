"""The review server: a small Starlette app over the catalog, and one static page.

    GET  /                       the page (static/index.html)
    GET  /api/state              classes, keys, author, queues and their sizes
    GET  /api/queue/{name}       a page of a queue (?limit=, ?after=)
    GET  /api/images/{id}        one image: labels, sources, group
    POST /api/label              {"ids": [...], "label": "happy" | "reject" | null}
    POST /api/undo               {"events": [...]}: undo decisions made here
    POST /api/separate           {"id": ...}: this near-duplicate group holds no duplicates
    GET  /api/explain/{id}.png   Grad-CAM of the default model's prediction (the e key)
    GET  /thumbs/{sha256}.jpg    a thumbnail (immutable: content-addressed)
    GET  /originals/{sha256}     the stored original

Every decision is a new label event (origin ``human``, the reviewer as author); an undo is a
new event too. Each request is its own short transaction, so two reviewers, and a crawl
writing at the same time, work side by side. Bound to anything but loopback, every request
must carry the token (``?token=`` once, then a cookie, or an ``X-Curator-Token`` header).
"""

from __future__ import annotations

import hmac
import io
import os
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from classifier.errors import TrainingError
from curator.dedup import separate_group
from curator.errors import CuratorError
from curator.stats import image_details
from curator.thumbs import ThumbStore
from db.catalog import Catalog
from db.errors import CatalogBusy, CatalogError, UnknownClass, UnknownImage
from db.labels import current_labels, label_images, undo_events
from db.models import Image
from db.queues import QUEUES, QueueUnavailable, UnknownQueue, queue_counts, review_queue
from db.settings import REJECT, get_classes

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
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
COOKIE = "curator_token"


def keys_for(classes: list[str]) -> dict[str, str]:
    """Keyboard shortcuts: 1..9 for the classes in order, and each class's first letter when
    no other class starts with it and it is not a key of the page (x, s, z, g, f, a, n, e);
    x rejects."""
    keys = {str(i + 1): name for i, name in enumerate(classes[:9])}
    taken = {"x", "s", "z", "g", "f", "a", "n", "e"}
    firsts = [name[:1].lower() for name in classes]
    for name, first in zip(classes, firsts, strict=True):
        if first.isalpha() and firsts.count(first) == 1 and first not in taken:
            keys[first] = name
    keys["x"] = REJECT
    return keys


class TokenGate:
    """ASGI middleware: refuse every request without the token (when one is set)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.token is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = (
            request.query_params.get("token")
            or request.headers.get("x-curator-token")
            or request.cookies.get(COOKIE)
            or ""
        )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            response: Response = JSONResponse({"error": "a valid token is required"}, 403)
            await response(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and request.query_params.get("token"):
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def endpoint(
    handler: Callable[[Request, Any], Response], *, body: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Run a handler in the thread pool (the catalog is synchronous), with its JSON body,
    and turn the catalog's errors into JSON answers with the right status."""

    async def wrapped(request: Request) -> Response:
        try:
            payload = await request.json() if body else None
            if body and not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            return await run_in_threadpool(handler, request, payload)
        except (UnknownImage, UnknownQueue) as exc:
            return JSONResponse({"error": str(exc)}, 404)
        except (QueueUnavailable, NoModel, CuratorError, TrainingError) as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except CatalogBusy as exc:
            return JSONResponse({"error": str(exc)}, 503)
        except (UnknownClass, CatalogError, ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc) or type(exc).__name__}, 400)

    return wrapped


def create_app(
    *,
    catalog: Catalog,
    home: Path,
    author: str,
    token: str | None = None,
    queue: str = "new",
    run_id: int | None = None,
) -> Any:
    """The review app for one catalog; ``author`` is who every decision is recorded for, and
    ``run_id`` the review session they belong to (needed to split groups)."""
    thumbs = ThumbStore(home)

    def sha_row(sha: str) -> tuple[str, str]:
        if not _SHA.match(sha):
            raise UnknownImage(sha[:80])
        with catalog.reading() as session:
            row = session.execute(
                select(Image.path, Image.format).where(Image.sha256 == sha)
            ).first()
        if row is None:
            raise UnknownImage(sha)
        path = (home / row.path).resolve()
        if not path.is_relative_to((home / "images").resolve()):
            raise UnknownImage(sha)
        return str(path), row.format

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def health(request: Request, _body: Any) -> Response:
        return JSONResponse({"ok": True})

    def state(request: Request, _body: Any) -> Response:
        with catalog.reading() as session:
            classes = get_classes(session)
            counts = queue_counts(session)
        return JSONResponse(
            {
                "classes": classes,
                "keys": keys_for(classes),
                "author": author,
                "queue": queue,
                "queues": {name: counts.get(name) for name in QUEUES},
            }
        )

    def queue_page(request: Request, _body: Any) -> Response:
        limit = min(max(int(request.query_params.get("limit", 200)), 1), 500)
        raw = request.query_params.get("after", "0")
        after: int | str = raw if ":" in raw else max(int(raw or 0), 0)
        with catalog.reading() as session:
            page = review_queue(session, name=request.path_params["name"], limit=limit, after=after)
        return JSONResponse({"items": [i.as_dict() for i in page.items], "next": page.next})

    def image(request: Request, _body: Any) -> Response:
        with catalog.reading() as session:
            info = image_details(session, ref=str(request.path_params["image_id"]), home=str(home))
        info.pop("path", None)
        return JSONResponse(info)

    def label(request: Request, body: dict[str, Any]) -> Response:
        ids = [int(i) for i in body["ids"]]
        value = body.get("label")
        if value is not None and not isinstance(value, str):
            raise ValueError("label must be a string or null")
        with catalog.writing() as session:
            events = label_images(session, image_ids=ids, label=value, author=author, run_id=run_id)
            labels = _labels(session, ids)
        return JSONResponse({"events": [e.id for e in events], "labels": labels})

    def undo(request: Request, body: dict[str, Any]) -> Response:
        event_ids = [int(i) for i in body["events"]]
        with catalog.writing() as session:
            restored, skipped = undo_events(
                session, event_ids=event_ids, author=author, run_id=run_id
            )
            labels = _labels(session, [e.image_id for e in restored])
        return JSONResponse({"undone": len(restored), "skipped": skipped, "labels": labels})

    def separate(request: Request, body: dict[str, Any]) -> Response:
        if run_id is None:
            raise ValueError("this server was started without a review run")
        with catalog.writing() as session:
            members = separate_group(
                session, image_id=int(body["id"]), author=author, run_id=run_id
            )
        return JSONResponse({"separated": members})

    async def thumb(request: Request) -> Response:
        # The hot path of a grid page: one indexed read, on the event loop, no catalog query.
        # A thumbnail that is missing (made on another machine) is made in the thread pool.
        sha = request.path_params["sha"]
        blob = thumbs.get(sha) if _SHA.match(sha) else None
        if blob is None:
            try:
                path, _fmt = await run_in_threadpool(sha_row, sha)
            except UnknownImage as exc:
                return JSONResponse({"error": str(exc)}, 404)
            blob = await run_in_threadpool(thumbs.get_or_make, sha, Path(path))
        return Response(blob, media_type="image/jpeg", headers=_IMMUTABLE)

    def original(request: Request, _body: Any) -> Response:
        path, fmt = sha_row(request.path_params["sha"])
        return FileResponse(
            path, media_type=_MEDIA.get(fmt, "application/octet-stream"), headers=_IMMUTABLE
        )

    explainer = Explainer(catalog, home)

    def explanation(request: Request, _body: Any) -> Response:
        png = explainer.png(int(request.path_params["image_id"]))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", index),
        Route("/api/health", endpoint(health)),
        Route("/api/state", endpoint(state)),
        Route("/api/queue/{name}", endpoint(queue_page)),
        Route("/api/images/{image_id:int}", endpoint(image)),
        Route("/api/label", endpoint(label, body=True), methods=["POST"]),
        Route("/api/undo", endpoint(undo, body=True), methods=["POST"]),
        Route("/api/separate", endpoint(separate, body=True), methods=["POST"]),
        Route("/api/explain/{image_id:int}.png", endpoint(explanation)),
        Route("/thumbs/{sha}.jpg", thumb),
        Route("/originals/{sha}", endpoint(original)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    return TokenGate(app, token)


class NoModel(CatalogError):
    pass


class Explainer:
    """Grad-CAM of the default model for the page's ``e`` key: the model loaded once (again
    when a newer one is trained), figures cached under the home by model and image."""

    def __init__(self, catalog: Catalog, home: Path) -> None:
        self.catalog, self.home = catalog, home
        self.lock = threading.Lock()
        self.loaded: Any = None

    def _model(self) -> Any:
        from curator.scoring import load_registered
        from db.registry import default_model

        with self.catalog.reading() as session:
            newest = default_model(session)
        if newest is None:
            raise NoModel("no trained model yet: run curator train to see explanations")
        if self.loaded is None or self.loaded.id != newest.id:
            self.loaded = load_registered(self.catalog, self.home, newest.id, device="cpu")
        return self.loaded

    def png(self, image_id: int) -> bytes:
        from classifier.explain import gradcam_figure
        from curator.explaining import explain_picture, open_picture

        with self.lock:  # one explanation at a time: each is a forward and backward pass
            model = self._model()
            cache = self.home / "cache" / "explain" / str(model.id) / f"{image_id}.png"
            if cache.exists():
                return cache.read_bytes()
            with self.catalog.reading() as session:
                image = session.get(Image, image_id)
                if image is None:
                    raise UnknownImage(str(image_id))
                path = self.home / image.path
            result = explain_picture(model, open_picture(path))
            figure = gradcam_figure(result, result.predicted)
            buffer = io.BytesIO()
            figure.save(buffer, format="PNG")
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, cache)
            return buffer.getvalue()


def _labels(session: Any, ids: list[int]) -> dict[str, dict[str, str | None]]:
    current = current_labels(session, image_ids=ids)
    return {
        str(i): {
            "label": current[i].label if i in current else None,
            "origin": current[i].origin if i in current else None,
        }
        for i in ids
    }
