"""What the vectors answer: the pictures most like one picture (``curator similar``, the review
page's ``m``), the pictures a text describes (``curator search``, ``/``, with CLIP), and a
zero-shot label for the pictures no one labeled yet (``curator search --prelabel``).

Each works on the newest set of vectors (the one `curator embed` ran on last); an active
image that came after it is embedded first, with the same embedder at the same version, so
an answer never compares vectors of two embedders.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.errors import CuratorError
from curator.hints import clip_step
from curator.learn.embedding import PROMPT, VectorSet, embed_catalog, load_embedder, newest_set
from curator.learn.vectors import SetBusy
from db.catalog import Catalog
from db.errors import UnknownImage
from db.images import ACTIVE, active_paths, find_image
from db.vectors import NoVectors, embedded_ids

if TYPE_CHECKING:
    from classifier.embed import Embedder


class NoTextEmbedder(CuratorError):
    def __init__(self, embedder: str | None) -> None:
        has = "the catalog has none" if embedder is None else f"the newest are {embedder}'s"
        super().__init__(f"text search needs CLIP vectors, and {has}: {clip_step()}")


@dataclass(frozen=True)
class Neighbour:
    id: int
    similarity: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "similarity": round(self.similarity, 4)}


def set_embedder(catalog: Catalog, home: Path, vectors: VectorSet, device: str = "cpu") -> Embedder:
    """The embedder that made ``vectors``, at the same version (or an error saying why not)."""
    if vectors.embedder == "model":
        model_id = int(vectors.version.split()[1])
        embedder = load_embedder(catalog, home, "model", model_ref=model_id, device=device)
    elif vectors.embedder == "clip":
        embedder = load_embedder(
            catalog, home, "clip", clip_model=vectors.version.split("|")[0], device=device
        )
    else:
        embedder = load_embedder(catalog, home, vectors.embedder, device=device)
    if embedder.version != vectors.version:
        raise CuratorError(
            f"the {vectors.embedder} vectors were made by {vectors.version}, which is no longer "
            f"at hand ({embedder.version} is); run curator embed to make new ones"
        )
    return embedder


def ensure_embedded(catalog: Catalog, home: Path, *, device: str = "cpu") -> VectorSet:
    """The newest set, with the active images added since it was made embedded first."""
    vectors = newest_set(catalog, home)
    if vectors is None:
        raise NoVectors("finding similar pictures")
    return ensure_embedded_set(catalog, home, vectors, device)


def _nearest(vectors: VectorSet, query: np.ndarray, limit: int, skip: set[int]) -> list[Neighbour]:
    ids, _data = vectors.read()
    rows, sims = vectors.index().search_rows(query[None, :], limit + len(skip))
    found = [
        Neighbour(int(ids[r]), float(s))
        for r, s in zip(rows[0], sims[0], strict=True)
        if r >= 0 and int(ids[r]) not in skip
    ]
    return found[:limit]


def _catalog_image(catalog: Catalog, ref: str) -> tuple[int, bool]:
    """(the id of the image ``ref`` names, or of its group's representative; whether it is
    active or in a group)."""
    with catalog.reading() as session:
        try:
            image = find_image(session, ref=ref)
        except UnknownImage:
            if "/" in ref or Path(ref).suffix:  # meant as a file
                raise CuratorError(
                    f"no file {ref[:200]!r}, and no image with that id or sha256 in the catalog"
                ) from None
            raise UnknownImage(ref[:80]) from None
        return image.duplicate_of or image.id, image.status == ACTIVE or bool(image.duplicate_of)


def similar(
    catalog: Catalog, home: Path, ref: str, *, limit: int = 50, device: str = "cpu"
) -> tuple[int | None, list[Neighbour]]:
    """The ``limit`` pictures most like the image ``ref`` (an id, a sha256 prefix, or a file,
    in the catalog or not): (its catalog id or None, its neighbours, nearest first)."""
    path = Path(ref).expanduser()
    if not path.is_file():  # what was asked for is known before anything is embedded
        image_id, active = _catalog_image(catalog, ref)
    vectors = ensure_embedded(catalog, home, device=device)
    ids, data = vectors.read()
    if path.is_file():
        embedder = set_embedder(catalog, home, vectors, device)
        return None, _nearest(vectors, _file_vector(embedder, path), limit, set())
    where = np.flatnonzero(np.asarray(ids) == image_id)
    if len(where) == 0 and active:  # the run at work on the set has not reached it
        raise CuratorError(
            f"image {image_id} has no vector yet: a curator embed at work on the vectors "
            "embeds it; ask again when it has ended"
        )
    if len(where) == 0:
        raise CuratorError(f"image {image_id} is not an active image, so it has no vector")
    query = np.asarray(data[int(where[0])], dtype=np.float32)
    return image_id, _nearest(vectors, query, limit, {image_id})


def _file_vector(embedder: Embedder, path: Path) -> np.ndarray:
    from classifier.embed import embed_paths
    from curator.ingest.imaging import describe_failure

    [result] = next(embed_paths(embedder, [str(path)], workers=0, describe=describe_failure))
    if result.vector is None:
        raise CuratorError(f"cannot read {path}: {result.error}")
    return result.vector


def text_search(
    catalog: Catalog,
    home: Path,
    text: str,
    *,
    limit: int = 50,
    device: str = "cpu",
    keep: list[Embedder] | None = None,
) -> list[Neighbour]:
    """The ``limit`` pictures nearest the words ``text`` (CLIP vectors only); the embedder
    loaded is appended to ``keep``, if given."""
    if not text.strip():
        raise CuratorError("say what to look for, such as curator search 'a single person'")
    vectors, embedder = _clip_set(catalog, home, device)
    if keep is not None:
        keep.append(embedder)
    return _nearest(vectors, embedder.words([text[:300]])[0], limit, set())


def ensure_embedded_set(catalog: Catalog, home: Path, vectors: VectorSet, device: str) -> VectorSet:
    """``vectors`` with the active images it lacks embedded first."""
    with catalog.reading() as session:
        held = embedded_ids(session, embedding_id=vectors.id)
        missing = any(i not in held for i, _p in active_paths(session))
    if missing:
        # While a curator embed is at work on the set, it embeds them: the answer comes
        # from the rows it has recorded so far.
        with suppress(SetBusy):
            embedder = set_embedder(catalog, home, vectors, device)
            embed_catalog(catalog, home, embedder, workers=0, chosen=False)
        vectors = newest_set(catalog, home, vectors.embedder) or vectors
    return vectors


def _clip_set(catalog: Catalog, home: Path, device: str) -> tuple[VectorSet, Embedder]:
    """The newest CLIP set, with the active images it lacks embedded, and its embedder (words
    are embedded only by CLIP: NoTextEmbedder without such a set)."""
    vectors = newest_set(catalog, home, "clip")
    if vectors is None:
        newest = newest_set(catalog, home)
        raise NoTextEmbedder(newest.embedder if newest else None)
    vectors = ensure_embedded_set(catalog, home, vectors, device)
    return vectors, set_embedder(catalog, home, vectors, device)


class Finder:
    """Similar pictures and text searches for a long-lived caller (the review page): the
    CLIP model that embeds the words stays loaded between searches, and one answer is
    computed at a time."""

    def __init__(self, catalog: Catalog, home: Path) -> None:
        import threading

        self.catalog, self.home = catalog, home
        self.lock = threading.Lock()
        self.words: tuple[str, Embedder] | None = None

    def similar(self, image_id: int, limit: int) -> list[int]:
        with self.lock:
            _id, found = similar(self.catalog, self.home, str(image_id), limit=limit)
            return [n.id for n in found]

    def search(self, text: str, limit: int) -> list[int]:
        with self.lock:
            vectors = newest_set(self.catalog, self.home, "clip")
            if vectors is None or self.words is None or self.words[0] != vectors.version:
                kept: list[Embedder] = []
                found = text_search(self.catalog, self.home, text, limit=limit, keep=kept)
                if kept:
                    self.words = (kept[0].version, kept[0])
                return [n.id for n in found]
            vectors = ensure_embedded_set(self.catalog, self.home, vectors, "cpu")
            query = self.words[1].words([text[:300]])[0]
            return [n.id for n in _nearest(vectors, query, limit, set())]


#: Who a zero-shot label is recorded for.
ZERO_SHOT_AUTHOR = "clip zero-shot"


def zero_shot(catalog: Catalog, home: Path, *, device: str = "cpu") -> dict[str, Any]:
    """A weak label of origin ``model`` for every active picture no person labeled: the class
    whose words (`PROMPT`) its CLIP vector is nearest. A rerun writes only what changed (a
    picture whose zero-shot label is already that class gets no new event). Returns
    {"prelabeled": {class: pictures}, "in_effect": how many of them it is the label of,
    "beneath": {origin: how many have a stronger weak label, which it leaves as it is}}."""
    from db.labels import RANK, add_label_events, current_labels, latest_labels
    from db.settings import get_classes
    from db.vectors import unreviewed_rows

    vectors, embedder = _clip_set(catalog, home, device)
    with catalog.reading() as session:
        classes = get_classes(session)
        rows = unreviewed_rows(session, embedding_id=vectors.id)
    words = embedder.words([PROMPT.format(c) for c in classes])  # (K, D)
    _ids, data = vectors.read()
    chosen: dict[str, list[int]] = {c: [] for c in classes}
    for start in range(0, len(rows), 4096):
        part = rows[start : start + 4096]
        sims = np.asarray(data[[r for _i, r in part]], dtype=np.float32) @ words.T
        for (image_id, _row), best in zip(part, sims.argmax(axis=1), strict=True):
            chosen[classes[int(best)]].append(image_id)
    beneath: dict[str, int] = {}
    with catalog.writing() as session:
        every = [i for ids in chosen.values() for i in ids]
        before = latest_labels(session, image_ids=every, origin="model")
        for label, ids in chosen.items():
            fresh = [i for i in ids if before.get(i) != label]
            add_label_events(
                session, image_ids=fresh, label=label, origin="model", author=ZERO_SHOT_AUTHOR
            )
        for current in current_labels(session, image_ids=every).values():
            if RANK[current.origin] > RANK["model"]:
                beneath[current.origin] = beneath.get(current.origin, 0) + 1
    return {
        "prelabeled": {label: len(ids) for label, ids in chosen.items()},
        "in_effect": len(every) - sum(beneath.values()),
        "beneath": beneath,
    }
