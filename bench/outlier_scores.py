"""Other outlier scores than the queue's, on the vectors bench/outliers.py kept: the share of
each web's off-topic pictures in the first twice-their-number, beside the queue's own score
(the mean cosine distance to the 10 nearest others) computed the same way in the same run.

    python bench/outliers.py --keep /tmp/webs0
    python bench/outlier_scores.py "/tmp/webs0/demo web" "/tmp/webs0/blob web"
    python bench/outlier_scores.py ~/.local/share/curator/demo    # after `make demo`

Scores: k nearest for other k; each of the `model` embedder's four stages alone (its vectors
are the four stages' unit vectors side by side, 1, 2, 4 and 8 parts of 15); the larger and
the mean of the four stages' ranks; a local outlier factor (a picture's distance over its
neighbours' own); a Gaussian's (Mahalanobis) distance from the pictures' mean, under their
covariance shrunk towards a multiple of the identity, of the whole vector and of each stage
(the score Lee et al. (2018) read from a classifier's layers). Exact search: the webs hold
some 400 to 700 pictures.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import numpy as np


def truth_of(base: Path) -> tuple[Path, dict[str, str | None]]:
    """(the catalog's home, {file name: class, None where off-topic}) of a web that
    bench/outliers.py kept, or of a `curator demo` home (its web's truth.json)."""
    if (base / "home").is_dir():
        return base / "home", json.loads((base / "truth.json").read_text())
    items = json.loads((base / "web" / "truth.json").read_text())
    return base, {Path(i["file"]).name: i["truth"] for i in items if i["kind"] != "broken"}


def load(base: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the newest set's vectors of the active pictures as float32, which are off-topic)."""
    home, truth = truth_of(base)
    db = sqlite3.connect(home / "catalog.db")
    [(folder, count)] = db.execute(
        "SELECT folder, count FROM embeddings ORDER BY updated_at DESC, id DESC LIMIT 1"
    ).fetchall()
    ids = np.load(home / folder / "ids.npy", mmap_mode="r")[:count]
    vectors = np.load(home / folder / "vectors.npy", mmap_mode="r")[:count].astype(np.float32)
    names = db.execute("SELECT image_id, locator FROM sources WHERE image_id IS NOT NULL")
    by_image = {i: truth.get(Path(locator).name, "?") for i, locator in names}
    active = {i for (i,) in db.execute("SELECT id FROM images WHERE status = 'active'")}
    keep = np.array([int(i) in active for i in ids])
    off = np.array([by_image.get(int(i), "?") is None for i in np.asarray(ids)[keep]])
    return vectors[keep], off


def nearest_sims(vectors: np.ndarray, k: int) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return -np.sort(-sims, axis=1)[:, :k]


def found(score: np.ndarray, off: np.ndarray) -> float:
    """The share of the off-topic pictures among the 2 x their number scored highest."""
    order = np.argsort(-score, kind="stable")
    return float(off[order[: 2 * off.sum()]].sum() / off.sum())


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def gaussian(x: np.ndarray, shrink: float) -> np.ndarray:
    """Squared Mahalanobis distance from the mean, the covariance shrunk by ``shrink``
    towards the identity times its mean variance."""
    x = x - x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    return np.einsum("ij,ij->i", x @ np.linalg.inv(cov), x)


def scores(vectors: np.ndarray) -> dict[str, np.ndarray]:
    top = nearest_sims(vectors, 200)
    out = {f"k={k} nearest": 1 - top[:, :k].mean(axis=1) for k in (5, 10, 20, 50, 100, 200)}
    dim = vectors.shape[1]
    if dim % 15 == 0:
        w = dim // 15
        stages = ((0, w), (w, 3 * w), (3 * w, 7 * w), (7 * w, 15 * w))
        ranks = []
        for n, (a, b) in enumerate(stages, 1):
            alone = 1 - nearest_sims(unit(vectors[:, a:b]), 10).mean(axis=1)
            out[f"stage {n} alone"] = alone
            ranks.append(np.argsort(np.argsort(alone)) / len(alone))
        out["larger stage rank"] = np.max(ranks, axis=0)
        out["mean stage rank"] = np.mean(ranks, axis=0)
        for shrink in (0.1, 0.5):
            out[f"gaussian, shrink {shrink}"] = gaussian(vectors, shrink)
            for n, (a, b) in enumerate(stages, 1):
                out[f"gaussian stage {n}, {shrink}"] = gaussian(vectors[:, a:b], shrink)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    own = out["k=10 nearest"]
    out["local outlier factor"] = own / own[neighbours].mean(axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "webs", nargs="+", type=Path, help="Web folders bench/outliers.py kept, or demo homes."
    )
    args = parser.parse_args()
    for web in args.webs:
        vectors, off = load(web)
        print(f"{web.name}: {len(off)} pictures, {int(off.sum())} off-topic")
        made = scores(vectors)
        queue = found(made["k=10 nearest"], off)
        for name, score in made.items():
            share = found(score, off)
            print(f"  {name:<22}{share * 100:>7.1f} %   {share / queue:>5.2f} x the queue's")


if __name__ == "__main__":
    main()
