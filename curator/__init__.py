"""curator: build image classification data sets, and the models trained on them."""

__version__ = "0.1.0"
