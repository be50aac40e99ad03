"""The outlier queue on a generated web: how many of the web's off-topic pictures the first
twice-their-number of the queue hold, beside a random order (the demo's report,
bench/outliers.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


def off_topic_found(order: list[int], off_topic: set[int], *, seed: int = 0) -> dict[str, Any]:
    """Of ``off_topic`` (the pictures in the ranking that are off-topic), how many the first
    2 x their number of ``order`` hold, and of a seeded random order of the same images."""
    wanted = off_topic & set(order)
    look = 2 * len(wanted)
    found = len(set(order[:look]) & wanted)
    shuffled = list(np.random.default_rng(seed).permutation(np.array(order, dtype=np.int64)))
    by_chance = len({int(i) for i in shuffled[:look]} & wanted)
    share = found / len(wanted) if wanted else None
    return {
        "off_topic": len(wanted),
        "ranked": len(order),
        "looked_at": look,
        "found": found,
        "share": share,
        "random_found": by_chance,
        "random_share": by_chance / len(wanted) if wanted else None,
        # what a random order finds on average: the share of the queue looked at
        "expected_random_share": min(1.0, look / len(order)) if order else None,
    }
