"""Pictures a model learns in a few epochs, and the options that train one fast."""

from __future__ import annotations

import numpy as np
from PIL import Image

#: `curator train` options for a tiny, quick model: resnet18 at 48 px from scratch.
FAST = [
    "--backbone",
    "resnet18",
    "--image-size",
    "48",
    "--weights",
    "none",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--epochs",
    "3",
]


def blob_picture(seed: int, warm: bool, size=(96, 72)) -> Image.Image:
    """Two learnable kinds: warm (red-orange) or cold (blue-green) blobs on noise."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
    colour = np.array([230, 120, 40] if warm else [40, 120, 230], dtype=np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, size[0] - 30), rng.integers(0, size[1] - 30)
        arr[y : y + 30, x : x + 30] = colour
    return Image.fromarray(arr)
