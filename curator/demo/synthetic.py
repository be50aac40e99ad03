"""Generated pictures of couples with known truth, for the demo, tests and benchmarks.

Each picture shows two people whose faces are happy (smiles, raised brows) or unhappy (frowns,
slanted brows) over a cluttered background, with varied size, position, colours, blur, JPEG
quality and aspect ratio. `make_collection` adds what real crawls bring: exact duplicates,
near duplicates (resized, recompressed, cropped, brightened, mirrored), broken files and
off-topic images. Everything is seeded: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

CLASSES = ("happy", "unhappy")
SKIN = [(255, 224, 189), (234, 192, 134), (198, 134, 66), (141, 85, 36), (241, 194, 125)]


def _colour(rng: random.Random, low: int = 0, high: int = 255) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A smooth random field of colour (as varied as the backdrops of photos), plus clutter."""
    w, h = size
    cells = Image.new("RGB", (rng.randint(2, 7), rng.randint(2, 7)))
    cells.putdata([_colour(rng, 0, 255) for _ in range(cells.width * cells.height)])
    img = cells.resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 12)):  # clutter
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        x1, y1 = x0 + rng.randint(w // 20, w // 3), y0 + rng.randint(h // 20, h // 3)
        shape = rng.choice(["rectangle", "ellipse", "line"])
        fill = _colour(rng, 20, 240)
        if shape == "rectangle":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif shape == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.line([x0, y0, x1, y1], fill=fill, width=rng.randint(2, 8))
    return img


def _person(
    draw: ImageDraw.ImageDraw, rng: random.Random, cx: float, cy: float, r: float, happy: bool
) -> None:
    """A head of radius r centred at (cx, cy), a body below it, and a happy face (open smile,
    smiling eyes, raised brows) or an unhappy one (a frown, round eyes, brows slanted down)."""
    shirt = _colour(rng, 10, 245)
    draw.rounded_rectangle(
        [cx - 1.3 * r, cy + 0.9 * r, cx + 1.3 * r, cy + 4.0 * r], radius=r * 0.5, fill=shirt
    )
    skin = rng.choice(SKIN)
    draw.ellipse([cx - r, cy - 1.15 * r, cx + r, cy + 1.15 * r], fill=skin)
    hair = _colour(rng, 0, 120)
    draw.chord([cx - r, cy - 1.2 * r, cx + r, cy + 0.2 * r], 180, 360, fill=hair)
    dark = (25, 20, 20)
    eye_y, eye_dx, eye_r = cy - 0.15 * r, 0.38 * r, max(1.5, 0.13 * r)
    line = max(2, round(r * 0.12))
    for side in (-1, 1):
        ex = cx + side * eye_dx
        if happy:  # closed, smiling eyes: arcs bowed upward
            draw.arc(
                [ex - 1.6 * eye_r, eye_y - eye_r, ex + 1.6 * eye_r, eye_y + 1.8 * eye_r],
                200,
                340,
                fill=dark,
                width=line,
            )
            inner, outer = eye_y - 0.42 * r, eye_y - 0.46 * r
        else:
            draw.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=dark)
            inner, outer = eye_y - 0.22 * r, eye_y - 0.48 * r  # brows slanted to the nose
        draw.line([ex - side * 0.25 * r, inner, ex + side * 0.25 * r, outer], fill=hair, width=line)
    mouth_w, mouth_y = 0.55 * r * rng.uniform(0.9, 1.1), cy + 0.42 * r
    depth = 0.32 * r * rng.uniform(0.85, 1.15)
    if happy:  # an open smile: a filled half disc, teeth along its top
        box = [cx - mouth_w, mouth_y - depth, cx + mouth_w, mouth_y + depth]
        draw.chord(box, 0, 180, fill=(130, 25, 35))
        draw.rectangle(
            [cx - 0.75 * mouth_w, mouth_y, cx + 0.75 * mouth_w, mouth_y + 0.22 * depth],
            fill=(245, 245, 240),
        )
    else:  # a thick frown, sometimes a tear
        box = [cx - mouth_w, mouth_y, cx + mouth_w, mouth_y + 2 * depth]
        draw.arc(box, 200, 340, fill=(130, 25, 35), width=max(3, round(r * 0.2)))
        if rng.random() < 0.5:
            tx = cx + rng.choice((-1, 1)) * eye_dx
            draw.ellipse(
                [tx - 0.08 * r, eye_y + 0.2 * r, tx + 0.08 * r, eye_y + 0.45 * r],
                fill=(120, 180, 255),
            )


def draw_couple(rng: random.Random, happy: bool, size: tuple[int, int]) -> Image.Image:
    """One picture of a couple, both happy or both unhappy."""
    w, h = size
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    r = min(w, h) * rng.uniform(0.16, 0.25)
    gap = r * rng.uniform(2.1, 2.8)
    cx = w / 2 + rng.uniform(-0.2, 0.2) * w
    cy = h * rng.uniform(0.25, 0.5)
    for side in (-1, 1):  # two people of their own sizes and heights
        own = r * rng.uniform(0.85, 1.15)
        _person(draw, rng, cx + side * gap / 2, cy + rng.uniform(-0.4, 0.4) * r, own, happy)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return img


def draw_off_topic(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A picture with no people: a landscape of stripes and a sun."""
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    w, h = size
    horizon = h * rng.uniform(0.4, 0.7)
    draw.rectangle([0, horizon, w, h], fill=_colour(rng, 20, 160))
    sun = min(w, h) * rng.uniform(0.05, 0.12)
    sx, sy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.35) * h
    draw.ellipse([sx - sun, sy - sun, sx + sun, sy + sun], fill=(250, 220, 60))
    return img


def random_size(rng: random.Random, base: int) -> tuple[int, int]:
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 3 / 4, 2 / 3])
    long_side = int(base * rng.uniform(0.8, 1.25))
    if aspect >= 1:
        return long_side, max(32, int(long_side / aspect))
    return max(32, int(long_side * aspect)), long_side


def jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def near_copy(rng: random.Random, img: Image.Image) -> tuple[Image.Image, str]:
    """A transformed copy of the kind crawls bring back, and the name of the change."""
    kind = rng.choice(["resize", "recompress", "crop", "brighten", "mirror"])
    w, h = img.size
    if kind == "resize":
        s = rng.uniform(0.5, 0.8)
        return img.resize(
            (max(32, int(w * s)), max(32, int(h * s))), Image.Resampling.BICUBIC
        ), kind
    if kind == "crop":
        dx, dy = int(w * 0.03), int(h * 0.03)
        return img.crop((dx, dy, w - dx, h - dy)), kind
    if kind == "brighten":
        return ImageEnhance.Brightness(img).enhance(rng.choice([0.85, 1.15])), kind
    if kind == "mirror":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), kind
    return img.copy(), kind  # recompressed below at another quality


@dataclass
class Item:
    """One generated file and what is true of it."""

    file: str
    truth: str | None  # the real class; None for broken and off-topic files
    query: str  # which search would have found it: "happy" or "unhappy"
    kind: str  # original, exact-duplicate, near-<change>, broken, off-topic
    source: str | None = None  # the original it copies, for duplicates


def make_collection(
    out: Path,
    *,
    per_class: int = 40,
    seed: int = 0,
    base_size: int = 320,
    noise: float = 0.1,
    duplicates: float = 0.1,
    near: float = 0.15,
    broken: int = 3,
    off_topic: float = 0.05,
) -> list[Item]:
    """Write ``out/<query>/*.jpg`` as two crawls for "happy" and "unhappy" would, with truth.

    A fraction ``noise`` of each query's pictures truly belong to the other class (the query's
    weak label is wrong for them). Writes ``out/truth.json`` and returns the items.
    """
    rng = random.Random(seed)
    items: list[Item] = []
    originals: list[tuple[Image.Image, Item, bytes]] = []
    for query in CLASSES:
        folder = out / query
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            truth = query if rng.random() >= noise else _other(query)
            img = draw_couple(rng, truth == "happy", random_size(rng, base_size))
            data = jpeg_bytes(img, rng.randint(70, 95))
            item = Item(
                file=f"{query}/{query}-{i:04d}.jpg", truth=truth, query=query, kind="original"
            )
            (out / item.file).write_bytes(data)
            items.append(item)
            originals.append((img, item, data))
        for i in range(max(0, round(per_class * off_topic))):
            img = draw_off_topic(rng, random_size(rng, base_size))
            item = Item(
                file=f"{query}/{query}-x{i:03d}.jpg", truth=None, query=query, kind="off-topic"
            )
            (out / item.file).write_bytes(jpeg_bytes(img, 85))
            items.append(item)
    for n, (_img, original, data) in enumerate(
        rng.sample(originals, round(len(originals) * duplicates))
    ):
        item = Item(
            file=f"{original.query}/copy-{n:04d}.jpg",
            truth=original.truth,
            query=original.query,
            kind="exact-duplicate",
            source=original.file,
        )
        (out / item.file).write_bytes(data)
        items.append(item)
    for n, (img, original, _data) in enumerate(rng.sample(originals, round(len(originals) * near))):
        copy, change = near_copy(rng, img)
        item = Item(
            file=f"{original.query}/near-{n:04d}.jpg",
            truth=original.truth,
            query=original.query,
            kind=f"near-{change}",
            source=original.file,
        )
        (out / item.file).write_bytes(jpeg_bytes(copy, rng.randint(60, 90)))
        items.append(item)
    for n in range(broken):
        query = CLASSES[n % 2]
        img, _item, data = originals[n]
        kind, payload = [
            ("broken-truncated", data[: len(data) // 2]),
            ("broken-html", b"<!DOCTYPE html><html><body>Not found</body></html>"),
            ("broken-empty", b""),
        ][n % 3]
        item = Item(file=f"{query}/broken-{n:03d}.jpg", truth=None, query=query, kind=kind)
        (out / item.file).write_bytes(payload)
        items.append(item)
    (out / "truth.json").write_text(json.dumps([asdict(i) for i in items], indent=1))
    return items


def clean_collection(out: Path, *, per_class: int, seed: int, base_size: int) -> list[Item]:
    """Pictures with nothing a crawl brings: no wrong labels, copies, broken or off-topic
    files (held-out test sets, folders of new photos)."""
    return make_collection(
        out,
        per_class=per_class,
        seed=seed,
        base_size=base_size,
        noise=0.0,
        duplicates=0.0,
        near=0.0,
        broken=0,
        off_topic=0.0,
    )


def _other(label: str) -> str:
    return CLASSES[1 - CLASSES.index(label)]


def load_truth(folder: Path) -> list[Item]:
    return [Item(**row) for row in json.loads((folder / "truth.json").read_text())]
