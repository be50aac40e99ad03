"""Label Studio, both ways: tasks for its image classification template, and its annotations
back as people's label decisions.

Out: ``OUT/tasks.json`` (import it into a project), ``OUT/label_config.xml`` (the project's
labeling interface: one ``Choices`` of the catalog's classes and reject, for the image) and
``OUT/images/<sha256>.<ext>`` (hard links or copies of the originals), one task per active
image, labeled or not. Each task's image URL is one Label Studio serves from local files
(``/data/local-files/?d=<path under its document root>``; docs/exports.md says how to start
it). A person's label becomes the task's annotation; a weak label (a search query's, a
folder's) and the default model's prediction become pre-annotations (predictions), so that
they are shown for a person to confirm and never come back as a person's decision.

Back: `read_annotations` reads Label Studio's JSON export: each task's latest annotation that
was not skipped, its choice, who made it, and which image it is (the ``curator_sha256`` the
task carries, else the sha256 in its image's file name). An annotation that still says what
the task was exported with is left out as unchanged. Nothing is checked against the catalog
here; ``curator label --from-label-studio`` checks every row before it records any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from curator.errors import CuratorError
from curator.export import _place
from curator.formats.hub import _digest
from curator.formats.outdir import OutFolder
from curator.formats.records import Record, Selection
from db.settings import REJECT

FROM_NAME, TO_NAME = "label", "image"
_FILES = re.compile(r"images/[0-9a-f]{64}\.[a-z0-9]{1,8}|tasks\.json|label_config\.xml")
_SHA_IN_NAME = re.compile(r"([0-9a-f]{64})\.[A-Za-z0-9]{1,8}$")
#: The most of a file `read_annotations` reads: a Label Studio export of a million tasks.
MAX_EXPORT_BYTES = 2 * 1024**3


def label_config(classes: list[str]) -> str:
    """The labeling interface: Label Studio's image classification template, our classes."""
    choices = "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in [*classes, REJECT])
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n'
        f"{choices}"
        "  </Choices>\n"
        "</View>\n"
    )


def _choice(label: str, score: float | None = None) -> dict[str, Any]:
    region: dict[str, Any] = {
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "choices",
        "value": {"choices": [label]},
    }
    return region if score is None else {**region, "score": score}


def _task(record: Record, url: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "data": {
            "image": url,
            "curator_id": record.id,
            "curator_sha256": record.sha256,
            "curator_split": record.split,
            "curator_label": record.label,
            "curator_label_origin": record.label_origin,
        }
    }
    if record.label is not None and record.label_origin == "human":
        task["annotations"] = [{"result": [_choice(record.label)], "ground_truth": False}]
    predictions = []
    if record.label is not None and record.label_origin != "human":
        predictions.append(
            {
                "model_version": f"catalog {record.label_origin} label",
                "result": [_choice(record.label)],
            }
        )
    if record.prediction is not None:
        p = record.prediction
        predictions.append(
            {
                "model_version": f"curator model {p['model']}",
                "score": p["confidence"],
                "result": [_choice(p["label"], p["confidence"])],
            }
        )
    if predictions:
        task["predictions"] = predictions
    return task


def export_label_studio(
    chosen: Selection, *, out: Path, document_root: Path | None, link: bool, force: bool
) -> dict[str, Any]:
    """Write the tasks, the label config and the pictures; return the counts."""
    root = (document_root or out).resolve()
    base = out.resolve()
    if not base.is_relative_to(root):
        raise CuratorError(f"{out} is not inside the document root {root}")
    prefix = base.relative_to(root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    tasks = [
        _task(r, f"/data/local-files/?d={prefix}images/{r.sha256}{r.ext}") for r in chosen.records
    ]
    text = json.dumps(tasks, indent=1)
    config = label_config(chosen.classes)
    planned = {f"images/{r.sha256}{r.ext}": r.sha256 for r in chosen.records}
    planned |= {"tasks.json": _digest(text), "label_config.xml": _digest(config)}
    folder = OutFolder(out, fmt="label-studio", files=_FILES, folders=["images"], force=force)
    folder.open(planned)
    for record in chosen.records:
        rel = f"images/{record.sha256}{record.ext}"
        _place(record.path, out / rel, link)
        folder.state[rel] = record.sha256
    folder.write(
        "label_config.xml", planned["label_config.xml"], lambda fh: fh.write(config), binary=False
    )
    folder.write("tasks.json", planned["tasks.json"], lambda fh: fh.write(text), binary=False)
    removed = folder.close(planned)
    return {
        "tasks": len(tasks),
        "annotations": sum(1 for t in tasks if "annotations" in t),
        "predictions": sum(len(t.get("predictions", [])) for t in tasks),
        "removed": removed,
        "document_root": str(root),
    }


# -- back from Label Studio -------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One task's decision: where it is in the export, the image, the label, the author.
    ``problem`` says what is wrong with the task when it cannot be one."""

    where: str
    sha256: str | None
    label: str | None
    author: str | None
    problem: str | None = None


def _author(annotation: dict[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        name = who.get("email") or who.get("username") or who.get("id")
        return str(name) if name not in (None, "") else None
    if isinstance(who, int) and not isinstance(who, bool):
        return f"label-studio user {who}"
    return None


def _image_of(data: dict[str, Any]) -> str | None:
    sha = data.get("curator_sha256")
    if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha):
        return sha
    url = data.get("image")
    found = _SHA_IN_NAME.search(url) if isinstance(url, str) else None
    return found.group(1) if found else None


def _latest(annotations: list[object]) -> dict[str, Any] | None:
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    # ISO times sort as text; an annotation without one counts as the oldest.
    return max(enumerate(done), key=lambda p: (str(p[1].get("updated_at") or ""), p[0]))[1]


def _read_task(where: str, task: object) -> Annotation | None:
    """The task's decision, None when it has none (unlabeled, skipped, or unchanged)."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return Annotation(where, None, None, None, "not a task: it has no data")
    annotations = task.get("annotations") or []
    latest = _latest(annotations) if isinstance(annotations, list) else None
    if latest is None:
        return None
    chosen = [
        choice
        for region in latest.get("result") or []
        if isinstance(region, dict) and region.get("type") == "choices"
        for choice in (region.get("value") or {}).get("choices") or []
    ]
    if not chosen:
        return None
    data = task["data"]
    sha = _image_of(data)
    if len(chosen) > 1 or not isinstance(chosen[0], str):
        return Annotation(where, sha, None, None, f"more than one choice: {chosen[:5]}")
    label = chosen[0]
    if data.get("curator_label_origin") == "human" and data.get("curator_label") == label:
        return None  # what the task was exported with: no new decision
    if sha is None:
        return Annotation(where, None, label, None, "no curator image: no sha256 in its data")
    return Annotation(where, sha, label, _author(latest))


def read_annotations(path: Path) -> list[Annotation]:
    """Every decision of a Label Studio JSON export, in the file's order."""
    try:
        if path.stat().st_size > MAX_EXPORT_BYTES:
            raise CuratorError(f"{path} is larger than a Label Studio export curator reads")
        tasks = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CuratorError(f"no such file: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CuratorError(f"{path} is not JSON: {str(exc)[:200]}") from None
    if not isinstance(tasks, list):
        raise CuratorError(
            f"{path} is not a Label Studio JSON export (a list of tasks); export the project "
            "as JSON"
        )
    if tasks and isinstance(tasks[0], dict) and "data" not in tasks[0] and "image" in tasks[0]:
        raise CuratorError(f"{path} is a JSON-MIN export; export the project as JSON instead")
    found = []
    for n, task in enumerate(tasks, 1):
        task_id = task.get("id") if isinstance(task, dict) else None
        where = f"task {n}" + (f" (id {task_id})" if isinstance(task_id, int) else "")
        decision = _read_task(where, task)
        if decision is not None:
            found.append(decision)
    return found
