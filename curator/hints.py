"""What to do next, added to the data layer's errors where curator speaks to people.

An error of db/ says what is wrong in the catalog and names no command: which command helps
is curator's to say. The command line (`curator.cli.common.handle_errors`) and the review
page (`curator.review.server`) add it to the message with `with_hint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.util import find_spec

from db.queues import (
    DefaultModelUnscored,
    NoIndependentPredictions,
    NoModelLearnedYet,
    NoPredictions,
    NoWordVectors,
)
from db.registry import NoModel, NoModelLearned, UnknownModel
from db.vectors import NoVectors


def clip_step() -> str:
    """What makes CLIP vectors: the embed, and where open_clip is missing, its install."""
    extra = "" if find_spec("open_clip") else " (pip install 'curator[clip]')"
    return f"run curator embed --embedder clip{extra}"


#: A hint is added to the error's message as written, its leading punctuation included.
Hints = Mapping[type, str]

#: What the command line adds, by the error's type.
COMMAND_LINE: Hints = {
    NoModel: ": run curator train first",
    NoModelLearned: (
        ": train again (curator train warned what to try), or name one with --model N"
    ),
    UnknownModel: "; see curator models",
    NoPredictions: ": train a model and run curator score",
    NoModelLearnedYet: ": train again (curator train warned what to try)",
    NoIndependentPredictions: ": run curator score --folds auto",
    DefaultModelUnscored: ": run curator score",
    NoVectors: ": run curator embed",
    NoWordVectors: f": {clip_step()}",
}

#: What the review page adds: the same, but that a model is needed there to explain.
REVIEW_PAGE: Hints = {**COMMAND_LINE, NoModel: ": run curator train to see explanations"}


def with_hint(exc: BaseException, hints: Hints = COMMAND_LINE) -> str:
    """The error's message, followed by the hint for its type (or the nearest of its base
    types that has one); the message alone where there is none."""
    for kind in type(exc).__mro__:
        hint = hints.get(kind)
        if hint is not None:
            return f"{exc}{hint}"
    return str(exc)
