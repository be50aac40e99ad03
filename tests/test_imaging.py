"""curator.ingest.imaging on real files of every awkward kind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from curator.errors import InvalidImage
from curator.ingest.imaging import HASH_VERSION, Limits, analyze
from tests.helpers import imagefiles as f


def reason_of(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(InvalidImage) as info:
        analyze(data, limits)
    assert info.value.detail  # every refusal says why, in words
    return info.value.reason


def test_a_plain_jpeg_is_measured_hashed_and_thumbnailed() -> None:
    data = f.jpeg_bytes(f.picture(1, (640, 480)))
    a = analyze(data)
    assert (a.width, a.height, a.format, a.ext, a.bytes) == (640, 480, "JPEG", "jpg", len(data))
    assert len(a.sha256) == 64 and 0 <= a.phash < 2**64 and 0 <= a.phash_mirror < 2**64
    thumb = Image.open(io.BytesIO(a.thumbnail))
    assert 256 <= max(thumb.size) <= 320 and thumb.format == "JPEG"
    assert HASH_VERSION.startswith("phash64")


def test_the_same_bytes_always_give_the_same_hashes() -> None:
    data = f.jpeg_bytes(f.picture(2))
    assert analyze(data) == analyze(data)


def test_zero_byte_file() -> None:
    assert reason_of(b"") == "empty"


def test_truncated_jpeg_is_caught_by_the_full_decode() -> None:
    data = f.jpeg_bytes(f.picture(3, (800, 600)))
    assert reason_of(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"<!DOCTYPE html><html><head><title>404</title></head></html>", "HTML"),
        (b"Just some text, not a picture at all.\n" * 20, "text"),
        (b'{"error": "rate limited"}', "JSON"),
    ],
)
def test_html_or_text_named_jpg(payload: bytes, words: str) -> None:
    with pytest.raises(InvalidImage) as info:
        analyze(payload)
    assert info.value.reason == "not-an-image" and words in info.value.detail


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = f.png_bomb(12_000, 12_000)  # 144 megapixels in a few hundred kilobytes
    assert len(bomb) < 1_000_000
    assert reason_of(bomb) == "too-many-pixels"


def test_huge_dimensions_in_a_tiny_file() -> None:
    assert reason_of(f.png_huge_header()) == "too-many-pixels"


def test_byte_and_side_limits() -> None:
    data = f.jpeg_bytes(f.picture(4))
    assert reason_of(data, Limits(max_bytes=1000)) == "too-large"
    assert reason_of(f.jpeg_bytes(f.picture(4, (40, 20)))) == "too-small"


def test_cmyk_jpeg(tmp_path: Path) -> None:
    a = analyze(f.cmyk_jpeg(tmp_path / "cmyk.jpg").read_bytes())
    assert a.format == "JPEG" and Image.open(io.BytesIO(a.thumbnail)).mode == "RGB"
    rgb = analyze(f.jpeg_bytes(f.picture(11)))
    assert bin(a.phash ^ rgb.phash).count("1") <= 6


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = f.png16(tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I;16")
    a = analyze(path.read_bytes())
    eight_bit = analyze(f.jpeg_bytes(f.picture(12).convert("L"), quality=95))
    assert bin(a.phash ^ eight_bit.phash).count("1") <= 6


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    a = analyze(f.palette_png_with_transparency(tmp_path / "p.png").read_bytes())
    assert a.format == "PNG" and (a.width, a.height) == (320, 240)


def test_animated_gif_uses_its_first_frame(tmp_path: Path) -> None:
    a = analyze(f.animated_gif(tmp_path / "anim.gif").read_bytes())
    assert a.format == "GIF" and a.frames == 3
    first = analyze(f.jpeg_bytes(f.picture(20), quality=95))
    assert bin(a.phash ^ first.phash).count("1") <= 8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = analyze(f.exif_rotated_jpeg(tmp_path / "rot.jpg").read_bytes())
    assert (a.width, a.height) == (200, 320)
    assert Image.open(io.BytesIO(a.thumbnail)).size[1] > Image.open(io.BytesIO(a.thumbnail)).size[0]


def test_a_long_strip_whose_thumbnail_is_a_pixel_high_is_measured() -> None:
    """The sharpness is taken on the thumbnail as decoded: a 10000 x 32 banner's is 256 x 1."""
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut()).resize((10000, 32))
    for img in (photo, photo.transpose(Image.Transpose.ROTATE_90)):
        out = io.BytesIO()
        img.save(out, "PNG")
        props = analyze(out.getvalue()).properties
        assert props is not None
        assert props.sharpness > 0 and props.aspect == 10000 / 32


def test_webp(tmp_path: Path) -> None:
    a = analyze(f.webp(tmp_path / "w.webp").read_bytes())
    assert (a.format, a.ext) == ("WEBP", "webp")


def test_a_mirrored_copy_matches_the_mirror_hash() -> None:
    img = f.picture(5, (400, 300))
    plain = analyze(f.jpeg_bytes(img))
    mirrored = analyze(f.jpeg_bytes(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert bin(plain.phash ^ mirrored.phash).count("1") > 12  # plain pHash misses it
    assert bin(plain.phash_mirror ^ mirrored.phash).count("1") <= 4  # the mirror hash does not


def test_unsupported_format_is_refused() -> None:
    out = io.BytesIO()
    f.picture(6).save(out, "PPM")
    assert reason_of(out.getvalue()) == "not-an-image"


def test_perceptual_hashes_are_bit_for_bit_imagehash() -> None:
    """curator computes pHash with one DCT for the plain and mirror hash; imagehash is the
    reference definition."""
    import imagehash

    from curator.ingest.imaging import perceptual_hashes

    def reference(img: Image.Image) -> int:
        grey = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
        bits = imagehash.phash(grey).hash.flatten()
        return int("".join("1" if b else "0" for b in bits), 2)

    for seed in range(150):
        img = f.picture(seed, (256, 192), happy=seed % 2 == 0) if seed % 3 else f.texture(seed)
        plain, mirror = perceptual_hashes(img)
        assert plain == reference(img)
        assert mirror == reference(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def _valid_files() -> dict[str, bytes]:
    out = {}
    img = f.picture(40, (200, 150))
    for fmt, params in (
        ("JPEG", {}),
        ("PNG", {}),
        ("WEBP", {}),
        ("BMP", {}),
        ("TIFF", {"save_all": True, "append_images": [f.picture(41, (200, 150))]}),
        ("GIF", {"save_all": True, "append_images": [f.picture(42, (200, 150))]}),
    ):
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        out[fmt] = buf.getvalue()
    return out


def test_damaged_files_of_every_format_are_refused_with_a_reason_never_a_crash() -> None:
    """Truncations and flipped bytes, seeded: analyze() returns or raises InvalidImage."""
    import random

    rng = random.Random(7)
    tried = 0
    for fmt, data in _valid_files().items():
        cuts = [len(data) * k // 40 for k in range(1, 40)]
        variants = [data[:cut] for cut in cuts]
        for _ in range(60):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            variants.append(bytes(damaged))
        for variant in variants:
            tried += 1
            try:
                analyze(variant)
            except InvalidImage as exc:
                assert exc.reason and exc.detail, fmt
    assert tried > 500


def test_the_properties_shortcuts_give_what_their_plain_definitions_give() -> None:
    """Percentiles, spread and entropy from a histogram, window spreads from sums, every
    window's pHash from two matrix products, the colour statistics from one product: each
    against the slow way, on real photographs."""
    import math

    import numpy as np
    import skimage.data

    from curator.ingest import properties as props
    from curator.ingest import windows as p
    from curator.ingest.imaging import dct_rows

    photo = Image.fromarray(skimage.data.camera())
    small = photo.resize((97, 61))
    values = np.asarray(small, dtype=np.int64).ravel()
    percentiles, variance, entropy, graphic = props._grey_statistics(small)
    assert np.allclose(percentiles, np.percentile(values / 255.0, (5, 50, 95)))
    assert variance == pytest.approx(values.var())
    counts = np.bincount(values, minlength=256)
    shares = counts / values.size
    assert entropy == pytest.approx(-sum(q * math.log2(q) for q in shares if q > 0))
    assert graphic == pytest.approx(sum(sorted(counts)[-8:]) / values.size)

    g = np.asarray(photo.resize((256, 192)), dtype=np.float64)
    full = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    sharp = props._sharpness(np.asarray(photo.resize((256, 192))), 1000.0)
    step = props.SHARPNESS_STEP
    assert sharp == pytest.approx(full[::step].var() / 1000.0, rel=1e-5)  # one row in 8
    assert sharp == pytest.approx(full.var() / 1000.0, rel=0.1)  # is about all of them

    colour = Image.fromarray(skimage.data.astronaut()).resize((64, 64))
    rgb = np.asarray(colour, dtype=np.float64).reshape(-1, 3)
    rg, yb = rgb[:, 0] - rgb[:, 1], (rgb[:, 0] + rgb[:, 1]) / 2 - rgb[:, 2]
    plain = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    assert props._colourfulness(colour) == pytest.approx(plain, rel=1e-5)

    square = photo.resize((p.WINDOW_SIZE, p.WINDOW_SIZE), Image.Resampling.BILINEAR)
    grey = np.asarray(square, dtype=np.float64)
    ys, xs = p.box_edges(p.WINDOW_SIZE, p.WINDOWS)
    plain_std = [grey[y[0] : y[-1], x[0] : x[-1]].std() for y, x in zip(ys, xs, strict=True)]
    assert np.allclose(p._window_std(grey), plain_std)

    records = p.unpack_window_records(p.window_hashes(square))
    assert 0 < len(records) <= len(p.WINDOWS)
    differ = 0  # a coefficient within float32's rounding of its median may flip a bit
    for index, got in zip(records["index"], records["hash"], strict=True):
        left, top, width, height = p.WINDOWS[index]
        cells = (
            p._cell_weights(p.WINDOW_SIZE, top, height)
            @ grey
            @ p._cell_weights(p.WINDOW_SIZE, left, width).T
        )
        block = (dct_rows() @ cells @ dct_rows().T).ravel()
        bits = np.packbits(block > np.median(block)).view(">u8")[0]
        differ += (int(got) ^ int(bits)).bit_count()
    assert differ <= 2
