"""A second style of drawn pictures, unlike the demo's couples, for bench/recipes.py: ink
sketches of a landscape on paper, under a sun ("sunny") or a cloud shedding rain ("rainy").

The couples are filled shapes in bright colours, faces telling the class; these are thin
strokes on a pale, grainy page, the class told by one small object in the sky among clutter
both classes share (birds, round things, hatching on the ground, houses and trees), in one
random ink colour per picture, so that neither colour nor the amount of ink gives it away.
Seeded: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("sunny", "rainy")


def _paper(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    tint = tuple(rng.randint(225, 250) for _ in range(3))
    img = Image.new("RGB", size, tint)
    grain = Image.effect_noise(size, rng.uniform(8, 20)).convert("RGB")
    return Image.blend(img, grain, 0.12)


def _ink(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(10, 120), rng.randint(10, 120), rng.randint(10, 140))


def _landscape(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, ink, line) -> None:
    """A wavy horizon, hatching on the ground, houses and trees: the same in both classes."""
    base = h * rng.uniform(0.55, 0.75)
    points = [(x, base + math.sin(x / w * rng.uniform(2, 7) + rng.random() * 6) * h * 0.05)
              for x in range(0, w + 8, 8)]  # fmt: skip
    draw.line(points, fill=ink, width=line)
    for _ in range(rng.randint(6, 16)):  # hatching: slanted strokes, as the rain's
        x, y = rng.uniform(0, w), rng.uniform(base + 4, h)
        dx = rng.uniform(-0.4, 0.4) * h * 0.08
        draw.line([(x, y), (x + dx, y + h * 0.06)], fill=ink, width=max(1, line - 1))
    for _ in range(rng.randint(1, 3)):
        x, s = rng.uniform(0.05, 0.85) * w, rng.uniform(0.08, 0.16) * w
        y = base - s * 0.2
        if rng.random() < 0.5:  # a house
            draw.rectangle([x, y - s, x + s, y], outline=ink, width=line)
            draw.line([(x, y - s), (x + s / 2, y - 1.6 * s), (x + s, y - s)], fill=ink, width=line)
        else:  # a tree: a round crown on a trunk, round like the sun
            draw.line([(x + s / 2, y), (x + s / 2, y - s)], fill=ink, width=line)
            draw.ellipse([x, y - 1.9 * s, x + s, y - 0.9 * s], outline=ink, width=line)


def _clutter(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, ink, line) -> None:
    """Birds and small circles in the sky, in both classes."""
    for _ in range(rng.randint(0, 4)):
        x, y, s = rng.uniform(0, w), rng.uniform(0, h * 0.45), rng.uniform(3, 8)
        draw.line([(x - s, y - s / 2), (x, y), (x + s, y - s / 2)], fill=ink, width=line)
    for _ in range(rng.randint(0, 2)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h * 0.5), rng.uniform(2, 6)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=ink, width=max(1, line - 1))


def _sun(draw: ImageDraw.ImageDraw, rng: random.Random, cx, cy, r, ink, line) -> None:
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=line)
    rays = rng.randint(7, 12)
    turn = rng.random() * math.tau
    for i in range(rays):
        a = turn + i * math.tau / rays
        inner, outer = r * 1.3, r * rng.uniform(1.7, 2.1)
        draw.line(
            [(cx + inner * math.cos(a), cy + inner * math.sin(a)),
             (cx + outer * math.cos(a), cy + outer * math.sin(a))],
            fill=ink, width=line,
        )  # fmt: skip


def _rain_cloud(draw: ImageDraw.ImageDraw, rng: random.Random, cx, cy, r, ink, line) -> None:
    bumps = rng.randint(3, 5)
    for i in range(bumps):
        bx = cx + (i - (bumps - 1) / 2) * r * 0.8
        br = r * rng.uniform(0.55, 0.8)
        draw.ellipse([bx - br, cy - br, bx + br, cy + br * 0.8], outline=ink, width=line)
    slant = rng.uniform(-0.4, 0.4)
    for _ in range(rng.randint(5, 9)):
        x, y = cx + rng.uniform(-1.4, 1.4) * r, cy + r * rng.uniform(1.0, 1.4)
        length = r * rng.uniform(0.6, 1.1)
        draw.line([(x, y), (x + slant * length, y + length)], fill=ink, width=line)


def draw_sketch(rng: random.Random, sunny: bool, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = _paper(rng, size)
    draw = ImageDraw.Draw(img)
    ink, line = _ink(rng), rng.randint(1, 3)
    _landscape(draw, rng, w, h, ink, line)
    _clutter(draw, rng, w, h, ink, line)
    r = min(w, h) * rng.uniform(0.07, 0.12)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.32) * h
    (_sun if sunny else _rain_cloud)(draw, rng, cx, cy, r, ink, line)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img


def make_sketches(out: Path, *, per_class: int, seed: int, base_size: int = 240) -> None:
    """``out/sunny/*.jpg`` and ``out/rainy/*.jpg``, of varied sizes and JPEG quality."""
    rng = random.Random(seed)
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
    for i in range(2 * per_class):
        label = CLASSES[i % 2]
        w = int(base_size * rng.uniform(0.85, 1.2))
        size = (w, int(w * rng.choice([0.75, 0.8, 1.0, 0.66])))
        picture = draw_sketch(rng, label == "sunny", size)
        data = io.BytesIO()
        picture.save(data, "JPEG", quality=rng.randint(70, 92))
        (out / label / f"{seed}-{i}.jpg").write_bytes(data.getvalue())
