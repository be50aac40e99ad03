"""Real photographs available offline: scikit-image's sample photos and Matplotlib's, each
also cut into four quadrants (distinct pictures that share a palette, the hardest negatives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Colour photographs of skimage.data (the stereo pair's right half left out: it is the
#: same scene as the left).
COLOUR = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
)
GRAY = ("camera", "moon", "coins", "page", "grass", "gravel", "brick", "text", "clock")


def _skimage(name: str) -> Image.Image | None:
    import skimage.data

    try:
        pixels = getattr(skimage.data, name)()
    except Exception:  # a sample this version of scikit-image lacks
        return None
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8))


def matplotlib_photos() -> list[Image.Image]:
    import matplotlib

    found = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [Image.open(found).convert("RGB")] if found.is_file() else []


def quadrants(img: Image.Image, *, enlarge: bool = True) -> list[Image.Image]:
    """The four quarters of a picture; with ``enlarge``, each resized to the whole's size
    (as large as the photo, but softer: not for judging sharpness)."""
    w, h = img.size
    boxes = (
        (0, 0, w // 2, h // 2),
        (w // 2, 0, w, h // 2),
        (0, h // 2, w // 2, h),
        (w // 2, h // 2, w, h),
    )
    if not enlarge:
        return [img.crop(box) for box in boxes]
    return [img.crop(box).resize((w, h), Image.Resampling.LANCZOS) for box in boxes]


def photos(
    *, gray: bool = True, cut: bool = True, enlarge: bool = True, min_side: int = 0
) -> list[tuple[str, Image.Image]]:
    """(name, picture) of every photo, colour first; with ``cut``, their quadrants too
    (enlarged to the photo's size, or as they are); none with a shorter side under
    ``min_side``."""
    names = [n for n in COLOUR if n != "colorwheel"] + (list(GRAY) if gray else [])
    out = []
    for name in names:
        img = _skimage(name)
        if img is not None:
            out.append((name, img.convert("RGB")))
    out += [("grace_hopper", img) for img in matplotlib_photos()]
    if cut:
        out += [
            (f"{n}-q{i}", q)
            for n, img in list(out)
            for i, q in enumerate(quadrants(img, enlarge=enlarge))
        ]
    return [(n, img) for n, img in out if min(img.size) >= min_side]


def is_gray(img: Image.Image) -> bool:
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool(np.abs(a - a[..., :1]).max() <= 2)
