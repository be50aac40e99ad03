"""``curator demo``: the main job on an embedded default, on a machine without internet.

Today: generate a collection of couple pictures with known truth (duplicates, near copies and
broken files included), import it as two labeled folders, group near duplicates, and report.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curator.config import Settings, load_settings
from curator.dedup import DEFAULT_THRESHOLD, apply_plan, plan_dedup
from curator.errors import CuratorError
from curator.importer import import_paths
from curator.runs import tracked_run
from curator.stats import catalog_stats
from curator.synthetic import CLASSES, make_collection
from db.catalog import open_catalog

MARKER = ".curator-demo"


@dataclass
class DemoResult:
    home: Path
    sample: Path
    imports: dict[str, dict[str, Any]] = field(default_factory=dict)
    dedup: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    #: What was planted in the generated collection, against what the import found.
    planted: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)


def prepare_home(home: Path) -> None:
    """Start from an empty demo home; refuse to wipe a folder that is not one."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise CuratorError(f"{home} is not empty and is not a demo home; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by curator demo; safe to delete\n")


def run_demo(
    home: Path,
    *,
    per_class: int = 60,
    seed: int = 0,
    step: Callable[[str], None] = lambda _msg: None,
) -> DemoResult:
    prepare_home(home)
    settings: Settings = load_settings(home=home, db_url=f"sqlite:///{home / 'catalog.db'}")
    sample = home / "sample"
    step(f"generating {per_class} pictures per class, with copies and broken files")
    items = make_collection(sample, per_class=per_class, seed=seed)
    catalog = open_catalog(settings.db_url)
    result = DemoResult(home=home, sample=sample)
    for label in CLASSES:
        step(f"importing {sample / label} as {label!r}")
        result.imports[label] = import_paths(
            catalog,
            settings,
            [str(sample / label)],
            label=label,
            author="demo",
            threshold=DEFAULT_THRESHOLD,
        )
    kinds = Counter("exact" if i.kind == "exact-duplicate" else i.kind.split("-")[0] for i in items)
    result.planted = {"exact": kinds["exact"], "near": kinds["near"], "broken": kinds["broken"]}
    totals: Counter[str] = Counter()
    for counts in result.imports.values():
        totals.update({k: v for k, v in counts.items() if isinstance(v, int)})
    result.found = {
        "exact": totals["exact_duplicate"],
        "near": totals["near_duplicate"],
        "broken": totals["failed"],
    }
    step("grouping near duplicates")
    with catalog.reading() as session:
        plan = plan_dedup(session, threshold=DEFAULT_THRESHOLD)
    with tracked_run(catalog, kind="dedup", params={"threshold": DEFAULT_THRESHOLD}) as run:
        with catalog.writing() as session:
            apply_plan(session, plan=plan, image_ids=sorted(plan.changes), run_id=run.id)
        run.counts = plan.summary()
    result.dedup = plan.summary()
    with catalog.reading() as session:
        result.stats = catalog_stats(session)
    catalog.dispose()
    return result
