"""Decode, validate, hash and thumbnail images: pure functions on bytes.

There is one decode pipeline, used for every hash curator computes (import, crawl, scoring):

    header check (format, pixel count) -> JPEG draft decode to the thumbnail's scale
    -> full decode of the whole stream (a truncated file fails here) -> EXIF orientation
    -> RGB (alpha over white, 16-bit scaled, CMYK converted) -> thumbnail (256-320 px)
    -> 32 x 32 grey -> pHash of those pixels and of their mirror image.

Mixing pipelines (draft decoding for some files, full-size decoding for others) moves hashes by
a few bits, so the pipeline has a version, `HASH_VERSION`, stored beside every hash.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from classifier.images import to_rgb
from curator.defaults import LIMITS
from curator.errors import InvalidImage
from curator.ingest.properties import Properties, measure

HASH_VERSION = "phash64-v1"
THUMB_SIZE = 256
#: A decoded image up to this much larger than the thumbnail box is kept as the thumbnail:
#: JPEG draft decoding usually lands there, and resizing again would cost more than decoding.
THUMB_SLACK = 1.25
THUMB_QUALITY = 85

#: Formats curator accepts (Pillow's names, with the extension files are stored under);
#: anything else is refused before its decoder runs. MPO (multi-picture JPEG from cameras)
#: is opened through Pillow's JPEG plugin.
FORMATS: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}

_OPENERS = [name for name in FORMATS if name != "MPO"]

# Our own pixel limit is checked before decoding; Pillow's warning would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow warns about corrupt metadata of hostile files; the verdict is ours to give.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class Limits:
    """What an input may be: bytes, decoded pixels, and the shorter side in pixels."""

    max_bytes: int = LIMITS["max_bytes"]
    max_pixels: int = LIMITS["max_pixels"]
    min_side: int = LIMITS["min_side"]
    #: Issue types refused at the door, each with its threshold (`curator.ingest.health`).
    reject_issues: tuple[tuple[str, float], ...] = LIMITS["reject_issues"]


@dataclass(frozen=True)
class Analysis:
    """Everything the catalog records about one valid image."""

    sha256: str
    phash: int  # unsigned 64-bit
    phash_mirror: int  # unsigned 64-bit
    width: int  # after EXIF orientation
    height: int
    format: str
    ext: str
    bytes: int
    frames: int
    thumbnail: builtins.bytes  # JPEG, 256 to 320 pixels on its longer side
    #: What the picture looks like (sharpness, brightness...), from the same thumbnail.
    properties: Properties | None = None


def describe_non_image(head: bytes) -> str:
    """A few words on what a file that is not an image looks like."""
    text = head[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "an HTML page, not an image"
    if text.startswith(b"<?xml") or b"<svg" in text:
        return "XML or SVG, not a raster image"
    if text.startswith((b"{", b"[")):
        return "JSON text, not an image"
    sample = head[:2048]
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        controls = len(sample)
    if controls > len(sample) // 50:
        return "an unknown binary format, not an image"
    return "text, not an image"


def _open(data: bytes, limits: Limits) -> Image.Image:
    if not data:
        raise InvalidImage("empty", "zero-byte file")
    if len(data) > limits.max_bytes:
        raise InvalidImage(
            "too-large", f"{len(data):,} bytes, more than the limit of {limits.max_bytes:,}"
        )
    try:
        img = Image.open(io.BytesIO(data), formats=_OPENERS)
    except UnidentifiedImageError:
        raise InvalidImage("not-an-image", describe_non_image(data)) from None
    except Image.DecompressionBombError as exc:
        raise InvalidImage("too-many-pixels", str(exc)) from None
    except Exception as exc:  # a malformed header: any decoder error is this file's fault
        raise InvalidImage("decode-error", f"unreadable header: {exc}") from None
    width, height = img.size
    if width * height > limits.max_pixels:
        raise InvalidImage(
            "too-many-pixels",
            f"{width} x {height} pixels, more than the limit of {limits.max_pixels:,}",
        )
    if min(width, height) < limits.min_side:
        raise InvalidImage(
            "too-small", f"{width} x {height} pixels, a side under {limits.min_side}"
        )
    return img


def _decode(img: Image.Image) -> Image.Image:
    """Decode the whole stream at the smallest scale that still fills a thumbnail."""
    if img.format in ("JPEG", "MPO"):
        scale = min(THUMB_SIZE / img.width, THUMB_SIZE / img.height, 1.0)
        target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img.draft("RGB" if img.mode in ("RGB", "YCbCr") else img.mode, target)
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise InvalidImage("too-many-pixels", str(exc)) from None
    except OSError as exc:
        if "truncated" in str(exc):
            raise InvalidImage("truncated", f"the file ends early ({exc})") from None
        raise InvalidImage("decode-error", str(exc)) from None
    except Exception as exc:  # SyntaxError, ValueError, EOFError, struct.error...
        raise InvalidImage("decode-error", f"{type(exc).__name__}: {exc}") from None
    return img


def _orient(img: Image.Image) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation; also say whether it swapped width and height."""
    try:
        orientation = img.getexif().get(0x0112, 1)
        return ImageOps.exif_transpose(img), orientation in (5, 6, 7, 8)
    except Exception:  # corrupt EXIF: keep the pixels as stored
        return img, False


@functools.cache
def dct_rows() -> np.ndarray:
    """The first 8 rows of the unnormalised 32-point DCT-II matrix (as scipy.fftpack.dct)."""
    n = np.arange(32)
    k = np.arange(8)[:, None]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / 64.0)


def _bits64(block: np.ndarray) -> int:
    return int.from_bytes(np.packbits(block > np.median(block)).tobytes(), "big")


def perceptual_hashes(thumb: Image.Image, grey: Image.Image | None = None) -> tuple[int, int]:
    """pHash of the pixels and of their mirror image, from one DCT.

    Bit for bit the hash of ``imagehash.phash`` (the tests check this against imagehash):
    32 x 32 grey (Lanczos), 2-D DCT-II, the 8 x 8 lowest frequencies, each bit set where the
    coefficient exceeds their median. Mirroring a picture negates the odd horizontal
    frequencies of its DCT, so the mirror's hash follows from the same block: a flipped copy
    then matches with a plain Hamming distance. ``grey``: the thumbnail in grey, where the
    caller has it.
    """
    grey = grey if grey is not None else thumb.convert("L")
    rows = dct_rows()
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    block = rows @ small @ rows.T  # (8, 8)
    mirrored = block * np.where(np.arange(8) % 2, -1.0, 1.0)
    return _bits64(block), _bits64(mirrored)


def make_thumbnail(rgb: Image.Image) -> Image.Image:
    """Fit in the thumbnail box: integer box reduction to within twice the size, then
    bilinear (fast, and free of aliasing at that ratio)."""
    if max(rgb.width, rgb.height) <= THUMB_SIZE * THUMB_SLACK:
        return rgb
    scale = min(THUMB_SIZE / rgb.width, THUMB_SIZE / rgb.height)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def encode_jpeg(img: Image.Image, quality: int = THUMB_QUALITY) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def warm_up() -> None:
    """Run the pipeline once, before worker processes are forked, so each starts warm."""
    analyze(encode_jpeg(Image.new("RGB", (64, 64), (128, 64, 32))))


def analyze(data: bytes, limits: Limits | None = None) -> Analysis:
    """Validate one image file's bytes completely and compute what the catalog stores.

    Raises `InvalidImage` with a reason code (``empty``, ``not-an-image``, ``truncated``,
    ``too-many-pixels``, ...) for anything that is not a usable image.
    """
    limits = limits or Limits()
    img = _open(data, limits)
    fmt = img.format or "unknown"
    try:  # counting frames reads the whole file: a broken later frame must not be fatal
        frames = int(getattr(img, "n_frames", 1) or 1)
        img.seek(0)
    except Exception:
        frames = 1
    width, height = img.size
    decoded, swapped = _orient(_decode(img))
    if swapped:
        width, height = height, width
    try:
        thumb = make_thumbnail(to_rgb(decoded))
    except Exception as exc:  # an exotic mode Pillow cannot convert
        raise InvalidImage("decode-error", f"cannot convert mode {img.mode}: {exc}") from None
    grey = thumb.convert("L")
    phash, mirror = perceptual_hashes(thumb, grey)
    properties = measure(thumb, width=width, height=height, grey=grey)
    if limits.reject_issues:
        from curator.ingest.health import refuse_issues

        refuse_issues(properties, width, height, limits.reject_issues)
    return Analysis(
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash,
        phash_mirror=mirror,
        width=width,
        height=height,
        format=fmt,
        ext=FORMATS.get(fmt, "bin"),
        bytes=len(data),
        frames=frames,
        thumbnail=encode_jpeg(thumb),
        properties=properties,
    )


def describe_failure(path: str, exc: BaseException) -> str:
    """Why a file given to score or explain could not be decoded, in a few words."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as err:
            return f"unreadable: {err.strerror or err}"
        return "zero-byte file" if not head else describe_non_image(head)
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return "truncated or damaged image"
    return f"cannot decode: {type(exc).__name__}: {exc}"
