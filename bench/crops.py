"""Crop-robust near copies: do cropped, cropped-and-rescaled and bannered copies find their
photo through its window hashes and the pixel check, and does any distinct photo?

    python bench/crops.py

Every photo of bench/_photos.py (scikit-image's and Matplotlib's, and their quadrants) goes
through curator's own pipeline (`curator.ingest.imaging.analyze`): a whole-frame pHash, the
pHashes of its windows (`curator.ingest.windows.WINDOWS`, made from the thumbnail, as
``curator dedup`` makes them) and the thumbnail. Copies: each photo cut to keep 90, 85, 80
and 75 % of each side (a 10, 15, 20, 25 % crop) at a random place in the frame; a 20 % crop
then halved; the photo with a banner of text added under it.

A pair is joined as ``curator dedup`` joins it: by whole-frame pHash within the plain
threshold, or when one's hash (or its mirror) lies within the window radius of one of the
other's windows and, where a correlation is given, the fit on the thumbnails
(`curator.ingest.crops.fit`) reaches it. Printed, for each setting: the share of copies
joined to their photo, wrong joins among the distinct photos and between copies and other
photos, and the time `analyze` takes with and without the properties, in the same run.
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
from curator.ingest.crops import fit, grey_square
from curator.ingest.windows import unpack_window_records, windows_of


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


#: (window radius, least correlation or None for no verification) tried.
SETTINGS = ((10, None), (10, 0.95), (12, 0.95), (14, 0.95), (12, 0.97), (14, 0.97), (16, 0.97))
Pic = tuple[int, int, np.ndarray, np.ndarray]  # phash, mirror, window records, grey square


def hashes(img: Image.Image) -> Pic:
    a = imaging.analyze(encode(img))
    return (
        a.phash,
        a.phash_mirror,
        unpack_window_records(windows_of(a.thumbnail)),
        grey_square(a.thumbnail),
    )


#: The loosest window radius tried: fits are only computed within it.
LOOSEST = 16


def _one_way(part: Pic, container: Pic) -> tuple[int, float]:
    """Smallest window distance of part's hash (or mirror) to container's windows, and the
    verified fit at that window (0 when beyond `LOOSEST`)."""
    if not len(container[2]):
        return 64, 0.0
    windows = container[2]["hash"].astype(np.uint64)
    found = []
    for mirrored, h in enumerate((part[0], part[1])):
        d = np.bitwise_count(windows ^ np.uint64(h))
        k = int(d.argmin())
        found.append((int(d[k]), mirrored, k))
    best, mirrored, k = min(found)
    if best > LOOSEST:
        return best, 0.0
    square = part[3][:, ::-1] if mirrored else part[3]
    return best, fit(container[3], square, int(container[2]["index"][k]))


def verdicts(a: Pic, b: Pic) -> list[bool]:
    """Whether curator dedup joins the two, under each of `SETTINGS`: plain pHash, or a
    window candidate within the radius that is verified (None: not verified)."""
    if min((a[0] ^ b[0]).bit_count(), (a[1] ^ b[0]).bit_count()) <= DEFAULT_THRESHOLD:
        return [True] * len(SETTINGS)
    ways = [_one_way(a, b), _one_way(b, a)]
    return [any(d <= r and (c is None or f >= c) for d, f in ways) for r, c in SETTINGS]


def cost(pictures: list[Image.Image]) -> tuple[float, float]:
    blobs = [encode(p) for p in pictures]
    timings = []
    for with_props in (True, False, True, False):
        saved = imaging.measure
        if not with_props:
            imaging.measure = lambda *args, **kwargs: None  # type: ignore[assignment]
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
    names = [f"w<={r}" + (f",r>={c}" if c else "") for r, c in SETTINGS]
    kinds: dict[str, list[list[bool]]] = {}
    wrong_copies = [0] * len(SETTINGS)
    for i, (_, img) in enumerate(pics):
        for kind, copy in copies(img, rng).items():
            h = hashes(copy)
            kinds.setdefault(kind, []).append(verdicts(h, originals[i]))
            for j, o in enumerate(originals):
                if j != i:
                    for k, v in enumerate(verdicts(h, o)):
                        wrong_copies[k] += v
    wrong = [0] * len(SETTINGS)
    plain_wrong = 0
    for i in range(len(pics)):
        for j in range(i + 1, len(pics)):
            a, b = originals[i], originals[j]
            plain_wrong += min((a[0] ^ b[0]).bit_count(), (a[1] ^ b[0]).bit_count()) <= 10
            for k, v in enumerate(verdicts(a, b)):
                wrong[k] += v
    pairs = len(pics) * (len(pics) - 1) // 2
    print(f"{len(pics)} photos, {pairs} distinct pairs; pHash threshold {DEFAULT_THRESHOLD}")
    print(f"\n{'copy':<17}" + "".join(f"{n:>14}" for n in names))
    for kind, rows in kinds.items():
        cells = "".join(f"{sum(r[k] for r in rows) / len(rows):>14.2f}" for k in range(len(names)))
        print(f"{kind:<17}{cells}")
    print(
        f"{'wrong: photos':<17}"
        + "".join(f"{w:>14}" for w in wrong)
        + f"   (pHash alone: {plain_wrong})"
    )
    print(f"{'wrong: copies':<17}" + "".join(f"{w:>14}" for w in wrong_copies))
    full, bare = cost([img for _, img in pics[:40]])
    print(
        f"\nanalyze per photo: {full * 1000:.2f} ms with properties, {bare * 1000:.2f} ms "
        f"without ({(full / bare - 1) * 100:+.0f} %)"
    )


if __name__ == "__main__":
    main()
