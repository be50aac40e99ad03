"""curator: build image classification data sets, and the models trained on them.

From Python (a notebook, a script), what the commands do:

    import curator

    catalog = curator.open("~/couples")
    catalog.import_paths(["~/Pictures/happy"], label="happy")
    catalog.images(split="train")                    # a DataFrame
    catalog.torch_dataset(split="train", size=224)  # (tensor, class index) for torch
    catalog.train(backbone="resnet18", image_size=128, weights="none")
    catalog.score()

See `curator.library` for every method.
"""

__version__ = "0.1.0"

import logging

from curator.library import Catalog, ImageRow, open

__all__ = ["Catalog", "ImageRow", "__version__", "open"]

# A library logs; whoever runs it decides where that goes (never stderr by accident).
logging.getLogger("curator").addHandler(logging.NullHandler())
