"""A training report beside the checkpoint: report.html with PNG plots (loss and accuracy
curves, confusion matrices, ROC curves), readable offline."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from classifier.metrics import roc_curve


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], "o-", label="val")
    left.set(title="loss", xlabel="epoch")
    left.legend()
    right.plot(epochs, [h["val_accuracy"] for h in history], "o-", color="C1")
    right.set(title="val accuracy", xlabel="epoch", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], classes: list[str], title: str, path: Path) -> None:
    plt = pyplot()
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color)
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(curves: dict[str, dict[str, list[Any]]], classes: list[str], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    for name, data in curves.items():
        probs, target = np.array(data["probs"]), np.array(data["target"])
        if len(target) and len(set(target.tolist())) > 1:
            fpr, tpr = roc_curve(probs[:, 1], target == 1)
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(title=f"ROC ({classes[1]})", xlabel="false positive rate", ylabel="true positive rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(name: str, m: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    return (
        f"<tr><td>{name}</td><td>{m['n']}</td><td>{fmt(m.get('accuracy'))}</td>"
        f"<td>{fmt(m.get('precision'))}</td><td>{fmt(m.get('recall'))}</td>"
        f"<td>{fmt(m.get('f1'))}</td><td>{fmt(m.get('roc_auc'))}</td>"
        f"<td>{fmt(m.get('ece'))}</td><td>{fmt(m.get('loss'))}</td></tr>"
    )


def write_report(
    folder: Path,
    *,
    title: str,
    classes: list[str],
    history: list[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    curves: dict[str, dict[str, list[Any]]],
    facts: dict[str, Any],
) -> Path:
    """Write the plots and report.html into ``folder``; return the report's path."""
    plot_curves(history, folder / "curves.png")
    for split in metrics:
        if metrics[split].get("n"):
            plot_confusion(
                metrics[split]["confusion"],
                classes,
                f"{split} confusion",
                folder / f"confusion-{split}.png",
            )
    if len(classes) == 2:
        plot_roc(curves, classes, folder / "roc.png")
    rows = "".join(_row(split, m) for split, m in metrics.items() if m.get("n"))
    fact_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    images = "".join(
        f'<img src="{name}" alt="{name}">'
        for name in ("curves.png", "confusion-val.png", "confusion-test.png", "roc.png")
        if (folder / name).exists()
    )
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 10px;
text-align:left}}img{{margin:6px;max-width:100%}}</style>
<h1>{html.escape(title)}</h1>
<table>{fact_rows}</table>
<h2>Metrics (the best epoch; test is evaluated once, here)</h2>
<table><tr><th>split</th><th>images</th><th>accuracy</th><th>precision</th><th>recall</th>
<th>F1</th><th>ROC AUC</th><th>ECE</th><th>loss</th></tr>{rows}</table>
<div>{images}</div>
"""
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
