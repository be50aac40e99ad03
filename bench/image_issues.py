"""Where should each issue type's threshold sit? Real photos, their degraded copies, measured.

    python bench/image_issues.py

Photos: scikit-image's colour and gray sample photographs, Matplotlib's, each also cut into
quadrants (bench/_photos.py; as they are, not enlarged, at least 160 pixels a side), and
scikit-image's ``lfw_subset`` faces (25 pixels: real thumbnails, shown at 50). Every picture
goes through curator's own pipeline (`curator.ingest.imaging.analyze`) and its properties are
those the catalog stores.

* Clean: the photos, as JPEG at quality 95 and 70 and as PNG: never to be flagged.
* Degraded, each issue type at two strengths: blurred (Gaussian, 0.5 % and 1 % of the longer
  side), darkened (to 25 % and 12 % brightness), washed out (blended with white, 55 % and
  75 %), nearly blank (contrast to 8 % and 3 %), grayscale (saturation 0 and 10 %; the gray
  photos count as grayscale too), letterboxed to 3:1 and cut to a 4:1 strip, shrunk to 96 and
  48 pixels on the shorter side (and the lfw faces).

For each type: the threshold with the best F1 between its degraded copies and the clean
pictures (rounded to two significant digits), and the precision and recall at the default
`db.properties.ISSUES` holds; also how often the type flags the other degradations (a dark
copy is rightly low on information, too). docs/check.md has the table.
"""

from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import is_gray, photos

from curator.ingest.imaging import analyze
from db.properties import ISSUES


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 88) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def blur(img: Image.Image, share: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(max(img.size) * share))


def washed(img: Image.Image, share: float) -> Image.Image:
    return Image.blend(img, Image.new("RGB", img.size, "white"), share)


def letterbox(img: Image.Image, ratio: float) -> Image.Image:
    w = round(img.height * ratio)
    inner = ImageOps.contain(img, (w, img.height))
    out = Image.new("RGB", (w, img.height), "black")
    out.paste(inner, ((w - inner.width) // 2, 0))
    return out


def strip(img: Image.Image, ratio: float) -> Image.Image:
    h = max(32, round(img.width / ratio))
    top = (img.height - h) // 2
    return img.crop((0, top, img.width, top + h))


def shrink(img: Image.Image, side: int) -> Image.Image:
    scale = side / min(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))


DEGRADE = {
    "blurry": (lambda im: blur(im, 0.005), lambda im: blur(im, 0.01)),
    "dark": (
        lambda im: ImageEnhance.Brightness(im).enhance(0.25),
        lambda im: ImageEnhance.Brightness(im).enhance(0.12),
    ),
    "bright": (lambda im: washed(im, 0.55), lambda im: washed(im, 0.75)),
    "low-information": (
        lambda im: ImageEnhance.Contrast(im).enhance(0.08),
        lambda im: ImageEnhance.Contrast(im).enhance(0.03),
    ),
    "grayscale": (
        lambda im: ImageEnhance.Color(im).enhance(0.0),
        lambda im: ImageEnhance.Color(im).enhance(0.1),
    ),
    "odd-aspect": (lambda im: letterbox(im, 3.0), lambda im: strip(im, 4.0)),
    "small": (lambda im: shrink(im, 96), lambda im: shrink(im, 48)),
}


def values(blob: bytes) -> dict[str, float]:
    props = analyze(blob).properties
    assert props is not None
    return {name: float(getattr(props, rule.column)) for name, rule in ISSUES.items()}


def lfw_faces() -> list[Image.Image]:
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]
    return [
        Image.fromarray((f * 255).astype(np.uint8)).convert("RGB").resize((50, 50)) for f in faces
    ]


def best_threshold(name: str, pos: list[float], neg: list[float]) -> float:
    """The threshold of best F1, among midpoints between observed values rounded to two
    significant digits (a default a person can read and type)."""
    rule = ISSUES[name]
    points = sorted(set(pos) | set(neg))
    cuts = {float(f"{(a + b) / 2:.2g}") for a, b in itertools.pairwise(points)}
    best, best_f1 = rule.default, -1.0
    for cut in sorted(cuts):
        tp, fp = flagged(rule, pos, cut), flagged(rule, neg, cut)
        f1 = 2 * tp / (tp + fp + len(pos)) if tp else 0.0
        if f1 > best_f1:
            best, best_f1 = cut, f1
    return best


def flagged(rule: object, vals: list[float], t: float) -> int:
    below = rule.below  # type: ignore[attr-defined]
    return sum((v < t) if below else (v > t) for v in vals)


def main() -> None:
    pics = [img for _, img in photos(enlarge=False, min_side=160)]
    clean: list[dict[str, float]] = []
    gray_clean: list[dict[str, float]] = []
    for img in pics:
        target = gray_clean if is_gray(img) else clean
        for blob in (encode(img, quality=95), encode(img, quality=70), encode(img, "PNG")):
            target.append(values(blob))
    degraded: dict[str, list[dict[str, float]]] = {}
    colour = [img for img in pics if not is_gray(img)]
    for name, (mild, strong) in DEGRADE.items():
        source = colour if name == "grayscale" else pics
        degraded[name] = [values(encode(f(img))) for img in source for f in (mild, strong)]
    degraded["small"] += [values(encode(face)) for face in lfw_faces()]
    degraded["grayscale"] += gray_clean
    print(
        f"{len(clean) + len(gray_clean)} clean pictures ({len(pics)} photos and re-encodes); "
        f"degraded copies per type: {len(degraded['dark'])}\n"
    )
    head = f"{'issue':<16}{'column':<16}{'measured':>9}{'default':>9}{'precision':>10}{'recall':>8}"
    print(head + f"{'clean flagged':>15}  flags other degradations")
    for name, rule in ISSUES.items():
        neg_rows = clean if name == "grayscale" else clean + gray_clean
        pos = [v[name] for v in degraded[name]]
        neg = [v[name] for v in neg_rows]
        measured = best_threshold(name, pos, neg)
        t = rule.default
        tp, fp = flagged(rule, pos, t), flagged(rule, neg, t)
        precision = tp / (tp + fp) if tp + fp else 1.0
        cross = {
            other: flagged(rule, [v[name] for v in rows], t) / len(rows)
            for other, rows in degraded.items()
            if other != name
        }
        crossed = ", ".join(f"{o} {s:.0%}" for o, s in cross.items() if s >= 0.05) or "-"
        print(
            f"{name:<16}{rule.column:<16}{measured:>9g}{t:>9g}{precision:>10.2f}"
            f"{tp / len(pos):>8.2f}{fp:>9}/{len(neg):<5}  {crossed}"
        )


if __name__ == "__main__":
    main()
