"""Decoding pictures for a model: JPEG draft decoding, EXIF orientation, 8-bit RGB, and
fitting to a square without distorting the picture. Pillow and NumPy only (no torch), so
that curator's import workers can share `to_rgb` without loading torch."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

#: ImageNet statistics, in 0-255, as the trunk's pretrained weights expect.
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
FITS = ("pad", "crop", "stretch")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB: transparency over white, 16-bit and float scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def fit(img: Image.Image, size: int, how: str) -> Image.Image:
    """A size x size picture: ``pad`` keeps all of it (letterbox, ImageNet-mean grey),
    ``crop`` fills the square and cuts the overhang (centred), ``stretch`` distorts it as the
    reference recipe did."""
    if how == "stretch":
        return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    w, h = img.size
    scale = size / max(w, h) if how == "pad" else size / min(w, h)
    resized = img.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))),
        Image.Resampling.BILINEAR,
        reducing_gap=2.0,
    )
    if how == "crop":
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        return resized.crop((left, top, left + size, top + size))
    canvas = Image.new("RGB", (size, size), tuple(round(m) for m in MEAN))
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return canvas


def needed(original: tuple[int, int], size: int, how: str) -> tuple[int, int]:
    """The smallest decode of a picture that ``fit`` still only scales down: for ``pad`` the
    longer side must reach ``size``, for ``crop`` the shorter one, for ``stretch`` both."""
    w, h = original
    if how == "stretch":
        return (min(w, size), min(h, size))
    scale = min(1.0, size / (max(w, h) if how == "pad" else min(w, h)))
    return (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))


def load(path: str, size: int, how: str = "pad", draft: bool = True) -> Image.Image:
    """Open, decode (JPEG at the smallest DCT scale the fit needs), orient and fit."""
    with Image.open(path) as img:
        if draft and img.format in ("JPEG", "MPO"):
            img.draft("RGB", needed(img.size, size, how))
        img.load()
        oriented = ImageOps.exif_transpose(img)
        return fit(to_rgb(oriented), size, how)
