"""A training report beside the checkpoint: report.html with its verdict (learned, or no
better than chance), PNG plots (loss and accuracy curves, confusion matrices, ROC curves, the
learning-rate range test's curve), the images of each split by class, and a gallery of the
test pictures the model got wrong, all readable offline (every picture is a file beside the
report; nothing is fetched)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from classifier.chance import CHANCE
from classifier.data import Example
from classifier.images import to_rgb
from classifier.metrics import roc_curve

#: The gallery shows at most this many of the test pictures a model got wrong, the most
#: confident first (those say most about what it learned wrongly).
GALLERY_MAX = 60
#: The longer side of a gallery thumbnail, in pixels.
THUMB_PX = 160
#: The gallery's folder, beside report.html.
GALLERY = "mistakes"
#: Each split's ROC data: its test probabilities (one list per image) and true classes.
Curves = dict[str, dict[str, list[list[float]] | list[int]]]


def pyplot() -> ModuleType:
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


def plot_lr_range(lr_range: dict[str, Any], path: Path) -> None:
    """The range test's smoothed loss against the rate (log scale), the chosen rate marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.plot(lr_range["lrs"], lr_range["losses"], color="C0")
    for rate, style, name in (
        (lr_range["steep"], ":", "steepest descent"),
        (lr_range["minimum"], "--", "a tenth of the lowest"),
    ):
        ax.axvline(rate, linestyle=style, color="grey", label=name)
    ax.axvline(lr_range["chosen"], color="C3", label=f"chosen: {lr_range['chosen']:.1e}")
    ax.set(xscale="log", title="learning-rate range test", xlabel="learning rate",
           ylabel="smoothed train loss")  # fmt: skip
    ax.legend(fontsize=8)
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


def plot_roc(curves: Curves, classes: list[str], path: Path) -> None:
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


@dataclass(frozen=True)
class Mistake:
    """A test picture the model got wrong."""

    image_id: int
    path: str
    truth: str
    predicted: str
    confidence: float  # the probability it gave its (wrong) class


def mistakes_of(
    examples: Sequence[Example], probs: Sequence[Sequence[float]], classes: Sequence[str]
) -> list[Mistake]:
    """The examples whose most likely class is not their label, the most confident first.
    ``probs`` are the model's, in the order of ``examples`` (the test loader keeps it)."""
    if len(examples) != len(probs):  # not the same pictures: no gallery rather than a wrong one
        return []
    wrong = []
    for example, p in zip(examples, probs, strict=True):
        best = int(np.argmax(p))
        if best != example.label:
            wrong.append(
                Mistake(
                    image_id=example.image_id,
                    path=example.path,
                    truth=classes[example.label],
                    predicted=classes[best],
                    confidence=float(p[best]),
                )
            )
    return sorted(wrong, key=lambda m: (-m.confidence, m.image_id))


def write_thumbnail(source: str, target: Path) -> bool:
    """A small JPEG of a picture; False when its file cannot be read any more."""
    try:
        with Image.open(source) as img:
            img.draft("RGB", (THUMB_PX, THUMB_PX))
            small = to_rgb(ImageOps.exif_transpose(img))
            small.thumbnail((THUMB_PX, THUMB_PX))
            small.save(target, "JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        target.unlink(missing_ok=True)
        return False
    return True


def gallery_html(folder: Path, mistakes: list[Mistake], tested: int) -> str:
    """The gallery's section, its thumbnails written to ``folder/mistakes/``."""
    if not tested:
        return ""
    if not mistakes:
        return f"<h2>Test pictures it got wrong</h2><p>none of {tested}</p>"
    (folder / GALLERY).mkdir(exist_ok=True)
    shown = mistakes[:GALLERY_MAX]
    figures = []
    for m in shown:
        name = f"{GALLERY}/{m.image_id}.jpg"
        caption = (
            f"image {m.image_id}<br>true {html.escape(m.truth)}<br>predicted "
            f"{html.escape(m.predicted)} ({m.confidence:.1%})"
        )
        picture = (
            f'<img src="{name}" alt="{html.escape(f"image {m.image_id}", quote=True)}" '
            f'title="{html.escape(m.path, quote=True)}">'
            if write_thumbnail(m.path, folder / name)
            else '<div class="gone">file unreadable</div>'
        )
        figures.append(
            f'<figure data-image="{m.image_id}" data-true="{html.escape(m.truth, quote=True)}"'
            f' data-predicted="{html.escape(m.predicted, quote=True)}"'
            f' data-confidence="{m.confidence:.6f}">{picture}<figcaption>{caption}'
            "</figcaption></figure>"
        )
    more = f", the {len(shown)} most confident shown" if len(shown) < len(mistakes) else ""
    return (
        f"<h2>Test pictures it got wrong ({len(mistakes)} of {tested}{more})</h2>"
        f'<div class="gallery">{"".join(figures)}</div>'
    )


def images_html(counts: dict[str, dict[str, int]], classes: list[str], left_out: int) -> str:
    """The images each split held, by class, as a table."""
    splits = list(counts)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in splits)
    body = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(f"<td>{counts[s].get(c, 0)}</td>" for s in splits)
        + f"<td>{sum(counts[s].get(c, 0) for s in splits)}</td></tr>"
        for c in classes
    )
    totals = [sum(counts[s].values()) for s in splits]
    total_row = "".join(f"<th>{n}</th>" for n in totals) + f"<th>{sum(totals)}</th>"
    note = f"<p>left out: {left_out} (file missing or unreadable)</p>" if left_out else ""
    return (
        f'<h2>Images</h2><table class="images"><tr><th>class</th>{head}<th>all</th></tr>'
        f"{body}<tr><th>all</th>{total_row}</tr></table>{note}"
    )


def _row(name: str, m: dict[str, Any]) -> str:
    def fmt(v: float | None) -> str:
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
    curves: Curves,
    facts: dict[str, Any],
    counts: dict[str, dict[str, int]] | None = None,
    left_out: int = 0,
    mistakes: list[Mistake] | None = None,
    verdict: dict[str, Any] | None = None,
    lr_range: dict[str, Any] | None = None,
) -> Path:
    """Write the plots, the gallery's thumbnails and report.html into ``folder``; return the
    report's path. ``counts``: images per split and class; ``mistakes``: the test pictures
    the model got wrong (`mistakes_of`); ``verdict``: a model at chance is said so first;
    ``lr_range``: the range test's curve, plotted."""
    plot_curves(history, folder / "curves.png")
    if lr_range:
        plot_lr_range(lr_range, folder / "lr-range.png")
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
        for name in (
            "curves.png",
            "lr-range.png",
            "confusion-val.png",
            "confusion-test.png",
            "roc.png",
        )
        if (folder / name).exists() and (name != "lr-range.png" or lr_range)
    )
    banner = (
        '<p class="chance">This model is no better than chance on val: it learned nothing '
        "that shows there, and it is never the default model for scoring (see the verdict and "
        "what to try: the warning curator train gave).</p>"
        if (verdict or {}).get("verdict") == CHANCE
        else ""
    )
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 10px;
text-align:left}}img{{margin:6px;max-width:100%}}.images td+td{{text-align:right}}
.gallery{{display:flex;flex-wrap:wrap}}figure{{margin:6px;width:{THUMB_PX + 12}px;font-size:12px}}
figure img{{margin:0}}.gone{{width:{THUMB_PX}px;height:{THUMB_PX // 2}px;background:#eee}}
.chance{{background:#fde2e1;border:1px solid #c0392b;padding:8px 12px}}</style>
<h1>{html.escape(title)}</h1>
{banner}
<table>{fact_rows}</table>
<h2>Metrics (the best epoch; test is evaluated once, here)</h2>
<table><tr><th>split</th><th>images</th><th>accuracy</th><th>precision</th><th>recall</th>
<th>F1</th><th>ROC AUC</th><th>ECE</th><th>loss</th></tr>{rows}</table>
<div>{images}</div>
{images_html(counts, classes, left_out) if counts else ""}
{gallery_html(folder, mistakes or [], int(metrics.get("test", {}).get("n") or 0))}
"""
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
