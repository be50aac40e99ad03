"""The demo's report: what ``curator demo`` found and learned, as one HTML page readable
offline (report/index.html), with its figures beside it."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.demo.synthetic import CLASSES

if TYPE_CHECKING:
    from curator.demo.setup import DemoResult


SMALL = (
    "(small pictures and resnet18 so that it runs in minutes on two CPU cores; "
    "<code>curator demo --full</code> runs the paper's ResNet-34 at 512 px)"
)


def _plot_noise_found(noise: dict[str, Any], review: dict[str, Any], path: Path) -> str:
    """Wrong labels found against images looked at, down the disagree queue and in a random
    order; returns the figure's file name ("" when there is nothing to draw)."""
    from classifier.report import pyplot

    found = noise.get("found_along_queue") or []
    total = noise.get("wrong_weak_labels") or 0
    if not found or not total:
        return ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    looked = np.arange(1, len(found) + 1)
    ax.plot(looked, np.array(found) / total * 100, label="down the disagree queue")
    share = noise.get("wrong_in_ranking", total) / total * 100
    ax.plot(looked, looked / len(found) * share, ":", color="grey", label="in a random order")
    if review.get("from_disagree"):
        ax.axvline(review["from_disagree"], color="#c33", lw=1, label="where the reviewer stopped")
    ax.set(
        xlabel="images looked at",
        ylabel="wrong weak labels found (%)",
        ylim=(0, 100),
        title="label noise found by the disagree queue",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
img { max-width: 460px; margin: .3em; vertical-align: top; }
code, pre { background: #f4f4f4; } pre { padding: .6em; overflow-x: auto; }
"""

REAL_DATA = """<h2>The same on real data</h2>
<pre>curator crawl "happy couple" "smiling couple" --label happy --max 500
curator crawl "unhappy couple" "couple arguing" --label unhappy --max 500
curator dedup
curator train --include-weak                  # round 1, on the queries' labels: model 1
curator score                                 # the uncertain queue
curator score --folds auto                    # the disagree queues (out-of-sample)
curator review --queue weak-disagree          # then --queue uncertain
curator train --include-weak --weights ~/.local/share/curator/models/1/model.pt
curator score ~/new-photos --out predictions.csv
curator explain 42</pre>
"""

esc = html.escape


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f} %"


def write_demo_report(home: Path, result: DemoResult) -> Path:
    """report/index.html and its figures; returns the page's path."""
    out = home / "report"
    out.mkdir(parents=True, exist_ok=True)
    confusions = _plot_confusions(result, out)
    curve = _plot_noise_found(result.noise, result.review, out / "noise-found.png")
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>curator demo report</title>\n<style>{STYLE}</style></head><body>\n"
        + _intro(result)
        + _crawled(result)
        + _noise(result, curve)
        + _accuracy(result, confusions)
        + _gradcam(result)
        + REAL_DATA
        + "</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _plot_confusions(result: DemoResult, out: Path) -> str:
    from classifier.report import plot_confusion

    images = []
    for name, metrics in result.rounds.items():
        if "confusion" in metrics:
            file = f"confusion-{name.replace(' ', '')}.png"
            plot_confusion(
                metrics["confusion"], list(CLASSES), f"{name}: test split against the truth",
                out / file,
            )  # fmt: skip
            images.append(f'<img src="{file}" alt="confusion matrix, {esc(name)}">')
    return "".join(images)


def _intro(result: DemoResult) -> str:
    c = result.config
    times = ", ".join(f"{esc(k)} {v:.0f} s" for k, v in result.seconds.items() if k)
    return f"""<h1>curator demo</h1>
<p>The whole job on a generated web, offline: crawl, de-duplicate, train on weak labels, score,
review the queues, train again. Model: {esc(c["backbone"])} at {c["image_size"]} px
{SMALL if c["image_size"] < 512 else ""}. This machine: {esc(result.machine)}. Time: {times}.</p>
<ul>{"".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in result.recipes.items())}</ul>
"""


def _crawled(result: DemoResult) -> str:
    pl = result.planted
    rows = []
    for query, counts in result.crawl.items():
        reasons = counts.get("failed_by_reason") or {}
        failed = ", ".join(f"{esc(str(k))} {v}" for k, v in reasons.items())
        rows.append(
            f"<tr><td>{esc(query)}</td><td>{counts.get('added', 0)}</td>"
            f"<td>{counts.get('exact_duplicate', 0)}</td><td>{counts.get('near_duplicate', 0)}</td>"
            f"<td>{counts.get('failed', 0)}</td><td>{failed or '-'}</td></tr>"
        )
    return f"""
<h2>Crawled</h2>
<p>{pl.get("pictures", 0)} generated pictures behind a local search engine in Bing's
format, with {pl.get("exact", 0)} exact copies, {pl.get("near", 0)} near copies,
{pl.get("broken", 0)} broken files and {pl.get("off_topic", 0)} off-topic pictures
planted; {pl.get("wrong_labels", 0)} pictures sit under the wrong query.</p>
<table><tr><th>query</th><th>added</th><th>exact duplicates</th><th>near duplicates</th>
<th>rejected</th><th>why</th></tr>{"".join(rows)}</table>
<p>De-duplication over the whole catalog: {result.dedup.get("groups", 0)} near-duplicate groups
holding {result.dedup.get("in_groups", 0)} images.</p>
{_health(result)}"""


def _health(result: DemoResult) -> str:
    """The catalog's health, as curator check gives it."""
    health = result.health
    if not health:
        return ""
    cells = "".join(
        f"<tr><td>{esc(str(name))}</td><td>{count}</td></tr>"
        for name, count in health.get("counts", {}).items()
    )
    tangles = "".join(
        f"<li>{esc(str(f.get('class')))}: {esc(str(f.get('kind')))} "
        f"{esc(str(f.get('value', f.get('mean', ''))))}</li>"
        for f in health.get("entanglement", [])
    )
    return f"""
<h3>Health (curator check)</h3>
<table><tr><th>issue</th><th>images</th></tr>{cells}</table>
<p>{health.get("leaks", 0)} pairs of near copies across splits.</p>
{f"<p>Labels entangled with sources or looks:</p><ul>{tangles}</ul>" if tangles else ""}
"""


def _noise(result: DemoResult, curve: str) -> str:
    n, r, c = result.noise, result.review, result.config
    figure = f'<img src="{curve}" alt="wrong labels found down the disagree queue">'
    return f"""
<h2>Label noise, found by the queue</h2>
<p>{n.get("wrong_weak_labels", 0)} of {n.get("groups", 0)} groups carried a wrong weak label.
The first 10 % of the <code>disagree</code> queue ({n.get("top_10pct", 0)} images, ranked by
{c["folds"]}-fold cross-fitted predictions) held {n.get("wrong_in_top_10pct", 0)} of them:
{pct(n.get("recall_at_10pct"))} (a random order: about 10 %).</p>
{figure if curve else ""}
{_outliers(result.outliers)}
<p>The simulated reviewer looked at {r.get("looked_at", 0)} images ({r.get("from_disagree", 0)} from
the top of <code>disagree</code>, {r.get("from_outlier", 0)} from the top of <code>outlier</code>,
the rest from <code>uncertain</code>) and fixed
{r.get("wrong_labels_fixed", 0)} wrong labels; {r.get("wrong_labels_left", 0)} were left.</p>
"""


def _outliers(o: dict[str, Any]) -> str:
    if not o.get("off_topic"):
        return ""
    return f"""<p>The web held {o["off_topic"]} off-topic pictures (no people in them). The first
{o["looked_at"]} of the <code>outlier</code> queue (round 1's trunk, nearest-neighbour
distance) held {o["found"]} of them: {pct(o.get("share"))}; a random order of the same
{o["ranked"]} pictures held {o["random_found"]} ({pct(o.get("random_share"))}).</p>"""


def _accuracy(result: DemoResult, confusions: str) -> str:
    def auc(m: dict[str, Any]) -> str:
        return "-" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}"

    rows = "".join(
        f"<tr><td>{esc(name)} (model {m['model']})</td><td>{pct(m.get('accuracy'))}</td>"
        f"<td>{m.get('f1', 0):.3f}</td><td>{auc(m)}</td><td>{m.get('n', 0)}</td></tr>"
        for name, m in result.rounds.items()
    )
    photos = result.new_photos
    return f"""
<h2>Accuracy on the test split, against the truth</h2>
<table><tr><th>model</th><th>accuracy</th><th>F1</th><th>ROC AUC</th><th>images</th></tr>
{rows}</table>
{confusions}
<p>New photos scored in bulk by the round 2 model: {photos.get("scored", 0)} files,
accuracy {pct(photos.get("accuracy"))} (<code>{esc(str(photos.get("csv", "")))}</code>).</p>
"""


def _gradcam(result: DemoResult) -> str:
    cells = result.config["image_size"] // 32
    images = "".join(f'<img src="{esc(f)}" alt="Grad-CAM">' for f in result.explained)
    return f"""
<h2>Why the model decided: Grad-CAM</h2>
<p>The round 2 model's class activation on test pictures (red: what pushed it towards the
class it predicted). The map has one cell per 32 pixels of input, {cells} x {cells} here,
hence the soft blobs; at 512 px it has 16 x 16.</p>
{images}
"""
