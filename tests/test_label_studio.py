"""Label Studio both ways: curator export --format label-studio, then the project's JSON export
read back by curator label --from-label-studio.

Label Studio's SDK pins an older NumPy and brings OpenCV and NLTK, so it is not installed; the
tasks are checked as Label Studio checks an import, against the label config beside them
(every region names a tag of the config, every choice is one of its Choice values), and the
export read back has the shape of Label Studio's JSON export (annotations with ``result``,
``completed_by``, ``was_cancelled``, ``updated_at``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from curator.config import load_settings
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


@pytest.fixture
def exported(cli, home, tmp_path) -> Path:
    for i in range(4):
        f.jpeg(tmp_path / "in" / "happy" / f"{i}.jpg", f.texture(i))
        f.jpeg(tmp_path / "in" / "unhappy" / f"{i}.jpg", f.texture(40 + i))
    f.jpeg(tmp_path / "in" / "none.jpg", f.texture(90))
    for label in ("happy", "unhappy"):
        assert cli("import", tmp_path / "in" / label, "--label", label).exit_code == 0
    assert cli("import", tmp_path / "in" / "none.jpg").exit_code == 0
    assert cli("label", "1", "--as", "unhappy", "--author", "ann").exit_code == 0
    out = tmp_path / "ls"
    result = cli("export", out, "--format", "label-studio")
    assert result.exit_code == 0, result.output
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={out}" in result.stdout
    return out


def check_tasks_against_config(out: Path) -> list[dict]:
    """What Label Studio checks of imported tasks, against the project's label config."""
    config = ET.fromstring((out / "label_config.xml").read_text())
    tags = {el.get("name"): el for el in config.iter() if el.get("name")}
    choices = {c.get("value") for c in config.iter("Choice")}
    image_tag = next(config.iter("Image"))
    field = image_tag.get("value").lstrip("$")
    tasks = json.loads((out / "tasks.json").read_text())
    for task in tasks:
        url = urlparse(task["data"][field])
        assert url.path == "/data/local-files/"
        assert (out / parse_qs(url.query)["d"][0]).is_file()  # served from the document root
        for kind in ("annotations", "predictions"):
            for item in task.get(kind, []):
                for region in item["result"]:
                    assert tags[region["from_name"]].tag == "Choices"
                    assert tags[region["from_name"]].get("toName") == region["to_name"]
                    assert tags[region["to_name"]].tag == "Image"
                    assert region["type"] == "choices"
                    assert set(region["value"]["choices"]) <= choices
    return tasks


def human(home):
    return rows(
        "SELECT image_id, label, author FROM label_events WHERE origin='human' ORDER BY id",
        load_settings(home=home).db_url,
    )


def as_label_studio_exports(tasks: list[dict], decisions: dict[int, tuple[str, object]]) -> list:
    """The tasks as Label Studio's JSON export gives them back, with these decisions (task
    position -> (choice, completed_by)) made in it."""
    exported = []
    for n, task in enumerate(tasks):
        annotations = [
            {**a, "id": 100 + n, "completed_by": 1, "was_cancelled": False,
             "created_at": "2026-05-01T10:00:00.000000Z", "updated_at": "2026-05-01T10:00:00Z"}
            for a in task.get("annotations", [])
        ]  # fmt: skip
        if n in decisions:
            choice, who = decisions[n]
            region = {"id": "x1", "type": "choices", "value": {"choices": [choice]},
                      "origin": "manual", "to_name": "image", "from_name": "label"}  # fmt: skip
            annotations.append(
                {"id": 200 + n, "result": [region], "completed_by": who, "was_cancelled": False,
                 "ground_truth": False, "created_at": "2026-05-02T09:00:00.000000Z",
                 "updated_at": "2026-05-02T09:00:00.000000Z", "lead_time": 2.5}
            )  # fmt: skip
        exported.append({"id": 1 + n, "data": task["data"], "annotations": annotations,
                         "predictions": [], "meta": {}, "inner_id": 1 + n})  # fmt: skip
    return exported


def test_the_tasks_fit_their_label_config_with_people_s_labels_as_annotations(cli, exported):
    tasks = check_tasks_against_config(exported)
    assert len(tasks) == 9  # every active image, the unlabeled one too
    by_id = {t["data"]["curator_id"]: t for t in tasks}
    assert by_id[1]["annotations"][0]["result"][0]["value"]["choices"] == ["unhappy"]
    assert "annotations" not in by_id[2]  # a folder's label: a pre-annotation to confirm
    assert by_id[2]["predictions"][0]["result"][0]["value"]["choices"] == ["happy"]
    unlabeled = [t for t in tasks if t["data"]["curator_label"] is None]
    assert len(unlabeled) == 1 and "predictions" not in unlabeled[0]


def test_annotations_come_back_as_their_annotators_decisions(cli, home, exported, tmp_path):
    tasks = json.loads((exported / "tasks.json").read_text())
    position = {t["data"]["curator_id"]: n for n, t in enumerate(tasks)}
    made = {
        position[2]: ("unhappy", {"id": 3, "email": "bea@example.org", "first_name": "Bea"}),
        position[9]: ("reject", 7),
    }
    back = tmp_path / "project-1.json"
    back.write_text(json.dumps(as_label_studio_exports(tasks, made)))
    result = cli("label", "--from-label-studio", back, "--json")
    assert result.exit_code == 0, result.output
    assert sorted(human(home)) == [
        (1, "unhappy", "ann"),  # exported as an annotation and unchanged: not recorded again
        (2, "unhappy", "bea@example.org"),
        (9, "reject", "label-studio user 7"),
    ]
    again = cli("label", "--from-label-studio", back)
    assert again.exit_code == 0 and "nothing was recorded" in again.stdout
    assert len(human(home)) == 3  # read again: nothing new


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("class", "task {n} (id {id}): 'ecstatic' is not one of this catalog's classes"),
        ("image", "task {n} (id {id}): no image with id or sha256 'ab"),
        ("two", "task {n} (id {id}): more than one choice"),
    ],
)
def test_a_bad_task_is_named_and_nothing_is_recorded(cli, home, exported, tmp_path, change, words):
    tasks = json.loads((exported / "tasks.json").read_text())
    exports = as_label_studio_exports(tasks, {0: ("happy", 1), 3: ("unhappy", 1)})
    region = exports[3]["annotations"][-1]["result"][0]
    if change == "class":
        region["value"]["choices"] = ["ecstatic"]
    elif change == "image":
        exports[3]["data"]["curator_sha256"] = "ab" * 32
    else:
        region["value"]["choices"] = ["happy", "unhappy"]
    back = tmp_path / "export.json"
    back.write_text(json.dumps(exports))
    before = human(home)
    result = cli("label", "--from-label-studio", back)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {words.format(n=4, id=4)}"), result.stderr
    assert result.stderr.rstrip().endswith("nothing was recorded")
    assert human(home) == before


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('[{"data": {"image": "x"}, ', "is not JSON"),
        ('{"tasks": []}', "is not a Label Studio JSON export"),
        ('[{"image": "/data/x.jpg", "label": "happy", "annotator": 1}]', "JSON-MIN export"),
        ('["just a string"]', "task 1: not a task"),
    ],
)
def test_a_file_that_is_no_label_studio_export_records_nothing(
    cli, home, exported, tmp_path, content, words
):
    back = tmp_path / "export.json"
    back.write_text(content)
    before = human(home)
    result = cli("label", "--from-label-studio", back)
    assert result.exit_code == 1 and words in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) <= 2
    assert human(home) == before
    assert "no such file" in cli("label", "--from-label-studio", tmp_path / "gone.json").stderr
