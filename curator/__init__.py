"""curator: build image classification data sets, and the models trained on them."""

__version__ = "0.1.0"

import logging

# A library logs; whoever runs it decides where that goes (never stderr by accident).
logging.getLogger("curator").addHandler(logging.NullHandler())
