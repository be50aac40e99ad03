"""Real photographs (scikit-image's samples) and the degraded copies a crawl brings back."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


def photo(name: str, long_side: int = 320) -> Image.Image:
    import skimage.data

    img = Image.fromarray(np.asarray(getattr(skimage.data, name)(), dtype=np.uint8))
    return ImageOps.contain(img.convert("RGB"), (long_side, long_side))


ISSUE_NAMES = ("blurry", "dark", "bright", "low-information", "grayscale", "odd-aspect", "small")


def quarters(name: str) -> list[Image.Image]:
    """The four quarters of a photo shown at 640 pixels: distinct pictures of 320."""
    img = photo(name, 640)
    w, h = img.size
    boxes = ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h))
    return [img.crop(box) for box in (*boxes, (w // 2, h // 2, w, h))]


def degraded(img: Image.Image) -> dict[str, Image.Image]:
    """One copy per issue type, clearly showing it."""
    w, h = img.size
    letterboxed = Image.new("RGB", (3 * h, h), "black")
    letterboxed.paste(img, ((3 * h - w) // 2, 0))
    return {
        "blurry": img.filter(ImageFilter.GaussianBlur(w * 0.01)),
        "dark": ImageEnhance.Brightness(img).enhance(0.12),
        "bright": Image.blend(img, Image.new("RGB", img.size, "white"), 0.75),
        "low-information": ImageEnhance.Contrast(img).enhance(0.03),
        "grayscale": ImageEnhance.Color(img).enhance(0.0),
        "odd-aspect": letterboxed,
        "small": ImageOps.contain(img, (64, 64)),
    }


def cropped(img: Image.Image, share: float, seed: int = 0) -> Image.Image:
    """``img`` keeping 1 - share of each side, somewhere in the frame."""
    rng = random.Random(seed)
    w, h = img.size
    kw, kh = round(w * (1 - share)), round(h * (1 - share))
    x, y = rng.randint(0, w - kw), rng.randint(0, h - kh)
    return img.crop((x, y, x + kw, y + kh))


def photo_and_crop(folder: Path) -> Path:
    """A folder holding a real photo and a copy of it cut by 20 % of each side."""
    folder.mkdir()
    astronaut = photo("astronaut", 400)
    astronaut.save(folder / "astronaut.jpg", quality=92)
    cropped(astronaut, 0.2, seed=3).save(folder / "crop20.jpg", quality=92)
    return folder


def with_banner(img: Image.Image) -> Image.Image:
    w, h = img.size
    out = Image.new("RGB", (w, h + h // 7), "white")
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((8, h + 4), "www.example.com  BEST PHOTOS", fill="black")
    return out
