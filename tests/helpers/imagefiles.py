"""Real image files of every awkward kind, written to disk for the tests."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from curator.demo.synthetic import draw_couple


def picture(seed: int, size: tuple[int, int] = (320, 240), happy: bool = True) -> Image.Image:
    return draw_couple(random.Random(seed), happy, size)


def texture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A picture unlike any other: random colour blocks, smoothly enlarged."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize(size, Image.Resampling.BICUBIC)


def jpeg(path: Path, img: Image.Image, quality: int = 90, **params: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality, **params)
    return path


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of width x height zero pixels, streamed: a few hundred KB that
    decode to width * height bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def png_huge_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose header claims enormous dimensions."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    )


def cmyk_jpeg(path: Path) -> Path:
    img = picture(11).convert("CMYK")
    img.save(path, "JPEG", quality=90)
    return path


def png16(path: Path) -> Path:
    grey = np.asarray(picture(12).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path, "PNG")  # mode I;16
    return path


def palette_png_with_transparency(path: Path) -> Path:
    img = picture(13).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    img.info["transparency"] = 0
    img.save(path, "PNG", transparency=0)
    return path


def animated_gif(path: Path) -> Path:
    frames = [picture(20 + i).convert("P") for i in range(3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """A landscape 320 x 200 JPEG whose EXIF says: rotate 90 degrees (shown portrait)."""
    img = picture(14, (320, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def webp(path: Path) -> Path:
    picture(15).save(path, "WEBP", quality=80)
    return path
