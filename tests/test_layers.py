"""The data layer's borders, read from the sources: every query lives in db/, and db/ says
what is wrong in its errors without naming a command of curator's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from curator.cli import app

ROOT = Path(__file__).resolve().parent.parent

#: What curator/ may take from SQLAlchemy: the session it hands to db/, as a type.
ALLOWED_IMPORTS = {("sqlalchemy.orm", "Session")}
#: Methods that run a query on a session or a connection.
QUERY_METHODS = {"execute", "scalars", "scalar", "exec_driver_sql", "connection", "get_bind"}
#: Modules that query a database of their own, not the catalog: the thumbnails' SQLite file
#: beside the originals is a cache of blobs made by decoding, as the stored files are.
OWN_DATABASE = {"curator/ingest/thumbs.py"}


def query_building(source: str) -> list[str]:
    """What in a module's source imports SQLAlchemy's query building or runs a query."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("sqlalchemy")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [
                f"from {node.module} import {a.name}"
                for a in node.names
                if (node.module, a.name) not in ALLOWED_IMPORTS
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, owner = node.func.attr, node.func.value
            # session.get(Model, id) reads a row; a requests session's get is an attribute's.
            by_session = method == "get" and isinstance(owner, ast.Name) and owner.id == "session"
            if method in QUERY_METHODS or by_session:
                found.append(f"line {node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_the_check_sees_a_query():
    source = (
        "from sqlalchemy import select\n"
        "from sqlalchemy.orm import Session\n"
        "def f(session):\n"
        "    session.execute(select(1))\n"
        "    session.get(Image, 1)\n"
        "    self.session.get('https://example.org/')\n"
    )
    assert query_building(source) == [
        "from sqlalchemy import select",
        "line 4: session.execute(...)",
        "line 5: session.get(...)",
    ]


def test_no_module_of_curator_builds_a_query():
    found = {
        str(path.relative_to(ROOT)): problems
        for path in sorted((ROOT / "curator").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in OWN_DATABASE
        and (problems := query_building(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "queries belong in db/ as query functions"


def command_names() -> set[str]:
    return {c.name for c in app.registered_commands if c.name} | {
        g.name for g in app.registered_groups if g.name
    }


def strings_of(source: str) -> list[str]:
    """Every string a module writes, docstrings left out; an f-string with {} for each of
    its fields."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append(
                "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | inside_fstrings
        ):
            out.append(node.value)
    return out


def test_no_message_of_db_names_a_command():
    names = sorted(command_names())
    assert {"train", "score", "models", "queue"} <= set(names)
    command = re.compile(r"\bcurator (?:" + "|".join(map(re.escape, names)) + r")\b")
    found = [
        f"{path.name}: {text!r}"
        for path in sorted((ROOT / "db").rglob("*.py"))
        for text in strings_of(path.read_text(encoding="utf-8"))
        if command.search(text)
    ]
    assert found == [], "the command line adds the command to run (curator/hints.py)"
    assert command.search("no trained model yet: run curator train first")


def test_the_edges_add_the_command_to_the_data_layers_errors():
    from curator.hints import REVIEW_PAGE, with_hint
    from db.errors import UnknownImage
    from db.queues import DefaultModelUnscored, NoIndependentPredictions, NoPredictions
    from db.registry import NoModel, NoModelLearned, UnknownModel

    assert with_hint(NoModel()) == "no trained model yet: run curator train first"
    assert with_hint(NoModel(), REVIEW_PAGE) == (
        "no trained model yet: run curator train to see explanations"
    )
    assert with_hint(UnknownModel(9)) == "no model 9 in the catalog; see curator models"
    assert with_hint(NoModelLearned([4, 2]), REVIEW_PAGE) == (
        "no model that learned: the finished ones (4, 2) are no better than chance on val, so "
        "none is the default: train again (curator train warned what to try), or name one "
        "with --model N"
    )
    assert with_hint(NoPredictions("disagree")) == (
        "the 'disagree' queue ranks images by a model's predictions, and there are none "
        "yet: train a model and run curator score"
    )
    assert with_hint(NoIndependentPredictions("weak-disagree")) == (
        "the 'weak-disagree' queue needs predictions of models that did not train on the "
        "images, and every prediction so far comes from one that did: run "
        "curator score --folds auto"
    )
    assert with_hint(DefaultModelUnscored("uncertain", 3), REVIEW_PAGE) == (
        "the 'uncertain' queue ranks images by the predictions of model 3, which has "
        "scored none yet: run curator score"
    )
    assert with_hint(UnknownImage("12")) == str(UnknownImage("12"))
