"""Metrics of a classifier on one split: accuracy, precision, recall, F1, ROC AUC, the
confusion matrix and the expected calibration error. NumPy only."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates, one point per distinct score (highest first)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    tps, fps = np.cumsum(hits), np.cumsum(1.0 - hits)
    last = np.r_[np.flatnonzero(np.diff(scores[order])), len(order) - 1]  # of each score
    p, n = max(hits.sum(), 1.0), max(len(hits) - hits.sum(), 1.0)
    return np.r_[0.0, fps[last]] / n, np.r_[0.0, tps[last]] / p


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None if one class only."""
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(probs: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    """|accuracy - confidence| averaged over equal-width confidence bins, weighted by size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == target
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def classification_metrics(
    probs: np.ndarray, target: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """All the metrics of one split. ``probs`` is (N, K), ``target`` (N,) class indices."""
    k = len(classes)
    n = len(target)
    if n == 0:
        return {"n": 0}
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (target, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        auc = roc_auc(probs[:, i], target == i)
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "roc_auc": auc,
            "support": int(confusion[i, :].sum()),
        }
    aucs = [c["roc_auc"] for c in per_class.values() if c["roc_auc"] is not None]
    return {
        "n": int(n),
        "accuracy": float((predicted == target).mean()),
        "precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "f1": float(np.mean([c["f1"] for c in per_class.values()])),
        # Binary: the AUC of the second class's score; more classes: one-vs-rest, averaged.
        "roc_auc": (
            per_class[classes[1]]["roc_auc"] if k == 2 else (float(np.mean(aucs)) if aucs else None)
        ),
        "ece": expected_calibration_error(probs, target),
        "confusion": confusion.tolist(),
        "per_class": per_class,
    }
