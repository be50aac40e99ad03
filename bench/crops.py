"""Crop-robust near copies: do cropped, cropped-and-rescaled and bannered copies find their
photo through its window hashes, and does any distinct photo?

    python bench/crops.py

Every photo of bench/_photos.py (scikit-image's and Matplotlib's, and their quadrants) goes
through curator's own pipeline (`curator.ingest.imaging.analyze`): a whole-frame pHash and the
pHashes of its windows (`curator.ingest.properties.window_boxes`). Copies: each photo cut to
keep 90, 85, 80 and 75 % of each side (a 10, 15, 20, 25 % crop) at a random place in the
frame; a 20 % crop then halved; the photo with a banner of text added under it. A copy joins
its photo when its whole-frame hash (or its mirror) lies within the window threshold of one
of the photo's windows (or the photo's hash within it of one of the copy's: a banner copy
holds the photo), or within the plain threshold of the photo's hash.

Printed: recall per kind of copy at each candidate window threshold, wrong joins among the
distinct photos and between copies and other photos, and the time `analyze` takes with and
without the properties (the cost ingest pays), measured in the same run.
"""

from __future__ import annotations

import io
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import photos

import curator.ingest.imaging as imaging
from curator.defaults import DEFAULT_THRESHOLD
from curator.ingest.properties import unpack_windows

CANDIDATES = (4, 6, 8, 10)


def encode(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=88)
    return out.getvalue()


def crop(img: Image.Image, share: float, rng: random.Random) -> Image.Image:
    w, h = img.size
    kw, kh = round(w * (1 - share)), round(h * (1 - share))
    x, y = rng.randint(0, w - kw), rng.randint(0, h - kh)
    return img.crop((x, y, x + kw, y + kh))


def banner(img: Image.Image) -> Image.Image:
    w, h = img.size
    out = Image.new("RGB", (w, h + h // 7), "white")
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((8, h + 4), "www.example.com  BEST PHOTOS", fill="black")
    return out


def copies(img: Image.Image, rng: random.Random) -> dict[str, Image.Image]:
    out = {f"crop {round(s * 100)}%": crop(img, s, rng) for s in (0.10, 0.15, 0.20, 0.25)}
    small = crop(img, 0.20, rng)
    out["crop 20% + half"] = small.resize((small.width // 2, small.height // 2))
    out["banner"] = banner(img)
    return out


def hashes(img: Image.Image) -> tuple[int, int, np.ndarray]:
    a = imaging.analyze(encode(img))
    assert a.properties is not None
    return a.phash, a.phash_mirror, unpack_windows(a.properties.windows)


def distance(a: tuple[int, int, np.ndarray], b: tuple[int, int, np.ndarray]) -> tuple[int, int]:
    """(whole-frame distance, window distance) between two pictures, either way round."""
    whole = min((a[0] ^ b[0]).bit_count(), (a[1] ^ b[0]).bit_count())
    wins = []
    for x, y in ((a, b), (b, a)):
        for h in (x[0], x[1]):
            if len(y[2]):
                wins.append(int(np.bitwise_count(y[2] ^ np.uint64(h)).min()))
    return whole, min(wins, default=64)


def joined(d: tuple[int, int], window: int) -> bool:
    return d[0] <= DEFAULT_THRESHOLD or d[1] <= window


def cost(pictures: list[Image.Image]) -> tuple[float, float]:
    blobs = [encode(p) for p in pictures]
    timings = []
    for with_props in (True, False, True, False):
        saved = imaging.measure
        if not with_props:
            imaging.measure = lambda thumb, width, height: None  # type: ignore[assignment]
        start = time.perf_counter()
        for blob in blobs:
            imaging.analyze(blob)
        timings.append((with_props, time.perf_counter() - start))
        imaging.measure = saved
    full = min(t for w, t in timings if w) / len(blobs)
    bare = min(t for w, t in timings if not w) / len(blobs)
    return full, bare


def main() -> None:
    rng = random.Random(0)
    pics = photos()
    originals = [hashes(img) for _, img in pics]
    kinds: dict[str, list[tuple[int, int]]] = {}
    wrong_copies: dict[int, int] = dict.fromkeys(CANDIDATES, 0)
    for i, (_, img) in enumerate(pics):
        for kind, copy in copies(img, rng).items():
            h = hashes(copy)
            kinds.setdefault(kind, []).append(distance(h, originals[i]))
            others = [distance(h, o) for j, o in enumerate(originals) if j != i]
            for t in CANDIDATES:
                wrong_copies[t] += sum(joined(d, t) for d in others)
    pairs = [
        distance(originals[i], originals[j])
        for i in range(len(pics))
        for j in range(i + 1, len(pics))
    ]
    print(f"{len(pics)} photos, {len(pairs)} distinct pairs; plain threshold {DEFAULT_THRESHOLD}")
    print(
        f"\n{'copy':<18}{'pHash alone':>12}"
        + "".join(f"{'win<=' + str(t):>10}" for t in CANDIDATES)
    )
    for kind, ds in kinds.items():
        plain = sum(d[0] <= DEFAULT_THRESHOLD for d in ds) / len(ds)
        cells = "".join(f"{sum(joined(d, t) for d in ds) / len(ds):>10.2f}" for t in CANDIDATES)
        print(f"{kind:<18}{plain:>12.2f}{cells}")
    print(
        f"{'wrong: photos':<18}{sum(d[0] <= DEFAULT_THRESHOLD for d in pairs):>12}"
        + "".join(f"{sum(joined(d, t) for d in pairs):>10}" for t in CANDIDATES)
    )
    print(f"{'wrong: copies':<18}{'':>12}" + "".join(f"{wrong_copies[t]:>10}" for t in CANDIDATES))
    names = [(pics[i][0], pics[j][0]) for i in range(len(pics)) for j in range(i + 1, len(pics))]
    lows = sorted(zip((d[1] for d in pairs), names, strict=True))[:5]
    print(f"\nsmallest window distances between distinct photos: {lows}")
    full, bare = cost([img for _, img in pics[:40]])
    print(
        f"analyze per photo: {full * 1000:.2f} ms with properties, {bare * 1000:.2f} ms "
        f"without ({(full / bare - 1) * 100:+.0f} %)"
    )


if __name__ == "__main__":
    main()
