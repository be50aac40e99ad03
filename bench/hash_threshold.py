"""Where should the near-duplicate threshold sit? Distances of copies versus distinct photos.

For each photo in a folder (scaled to about 1 MP, as web images are), makes the copies that
crawls bring back (re-encoded, resized, cropped, brightened, mirrored...), hashes everything
through curator's own pipeline (curator.ingest.imaging.analyze), and prints:

* per kind of copy: the largest and 95th-percentile Hamming distance to its original, and the
  share caught at each candidate threshold (the smaller of plain and mirror distance, as
  ``curator dedup`` matches either);
* over all pairs of distinct photos: the smallest distances and how many pairs each candidate
  threshold would wrongly join.

Photos: any folder of real photographs. The figures in docs/catalog.md came from the
photographs in Debian's wallpaper packages, each also cut into four quadrants (distinct
pictures that share a palette, the hardest negatives):

    apt-get download mate-backgrounds lomiri-wallpapers lomiri-wallpapers-16.04 \\
        lomiri-wallpapers-20.04 ukui-wallpapers
    for f in *.deb; do dpkg -x "$f" x; done
    python bench/hash_threshold.py --photos x/usr/share/backgrounds --quadrants

Also run with ``--synthetic N``: N generated couple pictures (curator.demo.synthetic), whose drawn
scenes resemble each other far more than photos do.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curator.demo.synthetic import draw_couple, random_size
from curator.ingest.imaging import analyze

CANDIDATES = (4, 6, 8, 10, 12, 14)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, fmt, quality=quality)
    return out.getvalue()


def scaled(img: Image.Image, long_side: int = 1200) -> Image.Image:
    scale = long_side / max(img.size)
    if scale >= 1:
        return img.convert("RGB")
    return img.convert("RGB").resize(
        (round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS
    )


def crop(img: Image.Image, share: float) -> Image.Image:
    dx, dy = int(img.width * share / 2), int(img.height * share / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def half(img: Image.Image, factor: float) -> Image.Image:
    return img.resize(
        (round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC
    )


COPIES = {
    "jpeg q95": lambda im: encode(im, quality=95),
    "jpeg q75": lambda im: encode(im, quality=75),
    "jpeg q50": lambda im: encode(im, quality=50),
    "webp q80": lambda im: encode(im, "WEBP", 80),
    "resize 50%": lambda im: encode(half(im, 0.5)),
    "resize 25%": lambda im: encode(half(im, 0.25)),
    "crop 5%": lambda im: encode(crop(im, 0.05)),
    "crop 10%": lambda im: encode(crop(im, 0.10)),
    "brightness -20%": lambda im: encode(ImageEnhance.Brightness(im).enhance(0.8)),
    "brightness +20%": lambda im: encode(ImageEnhance.Brightness(im).enhance(1.2)),
    "contrast +30%": lambda im: encode(ImageEnhance.Contrast(im).enhance(1.3)),
    "mirror": lambda im: encode(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "mirror + resize 50%": lambda im: encode(
        half(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.5)
    ),
}


def distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Plain distance, or the mirror's, whichever is smaller (as dedup matches)."""
    return min(bin(a[0] ^ b[0]).count("1"), bin(a[1] ^ b[0]).count("1"))


def hashes(data: bytes) -> tuple[int, int]:
    a = analyze(data)
    return a.phash, a.phash_mirror


def load_photos(folder: Path, quadrants: bool) -> list[Image.Image]:
    photos = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in PHOTO_SUFFIXES or not path.is_file():
            continue
        try:
            img = scaled(Image.open(path))
        except OSError:
            continue
        photos.append(img)
        if quadrants:
            w, h = img.size
            for box in (
                (0, 0, w // 2, h // 2),
                (w // 2, 0, w, h // 2),
                (0, h // 2, w // 2, h),
                (w // 2, h // 2, w, h),
            ):
                photos.append(scaled(img.crop(box).resize((w, h), Image.Resampling.LANCZOS)))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, help="a folder of photographs")
    parser.add_argument("--quadrants", action="store_true", help="also cut each photo in four")
    parser.add_argument("--synthetic", type=int, default=0, help="generated couple pictures")
    args = parser.parse_args()
    photos: list[Image.Image] = []
    if args.photos:
        photos += load_photos(args.photos, args.quadrants)
    rng = random.Random(0)
    photos += [draw_couple(rng, i % 2 == 0, random_size(rng, 480)) for i in range(args.synthetic)]
    if len(photos) < 2:
        sys.exit("need at least two pictures: pass --photos DIR and/or --synthetic N")
    originals = [hashes(encode(p)) for p in photos]
    print(f"{len(photos)} pictures, {len(photos) * (len(photos) - 1) // 2} distinct pairs\n")
    header = f"{'copy':<22}{'max':>5}{'p95':>6}" + "".join(
        f"{'<=' + str(t):>7}" for t in CANDIDATES
    )
    print(header)
    for name, make in COPIES.items():
        d = np.array([distance(hashes(make(p)), h) for p, h in zip(photos, originals, strict=True)])
        caught = "".join(f"{(d <= t).mean():>7.0%}" for t in CANDIDATES)
        print(f"{name:<22}{d.max():>5}{np.percentile(d, 95):>6.0f}{caught}")
    pair = np.array([distance(a, b) for a, b in combinations(originals, 2)])
    print(f"\ndistinct pairs: smallest distances {sorted(pair.tolist())[:8]}")
    print(
        f"{'wrongly joined pairs':<33}"
        + "".join(f"{int((pair <= t).sum()):>7}" for t in CANDIDATES)
    )


if __name__ == "__main__":
    main()
