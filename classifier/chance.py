"""Telling a model that learned from one at chance: on the val split, against always answering
its majority class. Plain arithmetic, without torch.

A run uses it three times: early stopping counts its patience only once val accuracy has left
chance (`Chance.left`), a third of the way through it warns when the run is not learning
(`stall_warning`), and at its end the model gets its verdict (`Chance.verdict`), which keeps a
model at chance from ever being the default one for scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from classifier.config import RECIPES, TrainConfig, format_lr

LEARNED = "learned"
CHANCE = "chance"

#: Standard errors of a guess that val accuracy must clear above the majority rate: on 60
#: val images of two even classes, 2 x 6.5 points (a guess passes it about one time in 40 on
#: one epoch). A model trained on labels drawn at random is checked against it by
#: tests/test_recipes.py, and by bench/recipes.py's ``shuffled`` arm.
STANDARD_ERRORS = 2.0
#: And at least this share of the majority's errors must be gone: a third, so 66.7 % on two
#: even classes. Without it, many val images make a bar of a point or two over the majority,
#: which a model that learned nothing passes by picking its epoch; the run of the report that
#: led here stopped early at 62 % val accuracy on 80 val images and then scored 51 % on
#: pictures it never saw.
ERROR_CUT = 1 / 3


@dataclass(frozen=True)
class Chance:
    """The majority-class rate of a val split, and the accuracy that shows learning."""

    n: int
    majority: float
    bar: float

    @classmethod
    def of(cls, counts: Sequence[int]) -> Chance:
        """From the val split's images per class. With very few val images the bar is a
        perfect score: nothing less tells a model from a guess."""
        n = sum(counts)
        if n == 0:
            return cls(0, 1.0, 1.0)
        p = max(counts) / n
        margin = max(STANDARD_ERRORS * math.sqrt(p * (1 - p) / n), ERROR_CUT * (1 - p))
        return cls(n, p, min(1.0, p + margin))

    def left(self, accuracy: float) -> bool:
        """Whether a val accuracy shows learning (a perfect score always does)."""
        return self.n > 0 and (accuracy >= self.bar - 1e-9 or accuracy >= 1.0 - 1e-9)

    def verdict(self, accuracy: float) -> str:
        return LEARNED if self.left(accuracy) else CHANCE

    def judge(self, accuracy: float) -> dict[str, Any]:
        """The verdict with what it rests on, as models store it."""
        return {"verdict": self.verdict(accuracy), "accuracy": accuracy, **asdict(self)}


def describe_verdict(judged: dict[str, Any]) -> str:
    """A verdict in words, for the report and curator train's last lines."""
    accuracy, majority = judged.get("accuracy", 0.0), judged.get("majority", 0.0)
    n, bar = judged.get("n", 0), judged.get("bar", 1.0)
    basis = (
        f"{percent(accuracy)} on {n} val images, against {percent(majority)} by always "
        f"answering the majority class (learning shows from {percent(bar)})"
    )
    if judged.get("verdict") == CHANCE:
        return f"no better than chance: {basis}; never the default model for scoring"
    return f"learned: {basis}"


def should_count_patience(accuracies: Sequence[float], chance: Chance) -> bool:
    """Early stopping counts epochs without a better val loss only once some epoch's val
    accuracy has left chance: before that, a run from scratch may be on the plateau it sits
    on before it learns, and stopping there keeps a model that learned nothing."""
    return any(chance.left(a) for a in accuracies)


def check_epoch(epochs: int) -> int:
    """The epoch after which a run that is not learning is warned about: a third of them."""
    return max(1, math.ceil(epochs / 3))


def stall_warning(
    *,
    epoch: int,
    epochs: int,
    accuracies: Sequence[float],
    train_losses: Sequence[float],
    chance: Chance,
    classes: int,
    cfg: TrainConfig,
) -> str | None:
    """What to say after `check_epoch` when val accuracy has not left chance, or the train
    loss is still a guess's and has not fallen; None when the run is learning."""
    left = should_count_patience(accuracies, chance)
    first, last = train_losses[0], train_losses[-1]
    guess = math.log(max(classes, 2))
    fell = len(train_losses) > 1 and last < 0.95 * first
    stuck = not fell and last >= 0.9 * guess
    if left and not stuck:
        return None
    if not left:
        state = (
            f"val accuracy is {percent(accuracies[-1])}, at chance (the majority class is "
            f"{percent(chance.majority)} of {chance.n} val images; learning shows from "
            f"{percent(chance.bar)})"
        )
    else:
        state = f"the train loss is still a guess's ({last:.3f}; a guess scores {guess:.3f})"
    if stuck or left:
        loss = (
            f"the train loss has not fallen ({first:.3f} -> {last:.3f})"
            if len(train_losses) > 1
            else f"the train loss is {last:.3f} (a guess scores {guess:.3f})"
        )
    elif last < 0.5 * guess:
        loss = (
            f"the train loss is down to {last:.3f}: it fits its training pictures without "
            "telling val apart yet (if that lasts, check the labels: curator review --queue "
            "disagree)"
        )
    else:
        loss = f"the train loss is {last:.3f} (a guess scores {guess:.3f})"
    return (
        f"after {epoch} of {epochs} epochs {state}, and {loss}: this run may not learn; "
        f"try {advice(cfg)}"
    )


def advice(cfg: TrainConfig) -> str:
    """What to try when a run does not learn, from what it was given."""
    tips = []
    if cfg.weights == "none":
        scratch = RECIPES["scratch"]
        differ = [
            f"{flag} {shown(getattr(scratch, field))}"
            for field, flag in (
                ("batch_size", "--batch-size"),
                ("lr", "--lr"),
                ("augment", "--augment"),
            )
            if getattr(cfg, field) != getattr(scratch, field)
            and not (field == "lr" and cfg.lr_auto)
        ]
        if differ:
            tips.append(f"the from-scratch recipe's {' '.join(differ)}")
    if not cfg.lr_auto:
        tips.append("--lr auto")
    tips.append(f"--epochs {cfg.epochs * 2}")
    if cfg.weights == "none":
        tips.append("--weights imagenet where it can be downloaded")
    return ", ".join(tips[:-1]) + f" or {tips[-1]}" if len(tips) > 1 else tips[0]


def shown(value: object) -> str:
    return format_lr(value) if isinstance(value, float) else str(value)


def percent(share: float) -> str:
    return f"{share * 100:.1f} %"
