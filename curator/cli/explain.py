"""``curator explain``: why the model decided, as pictures."""

from __future__ import annotations

from pathlib import Path

import typer

from curator.cli.common import (
    device_option,
    fail,
    handle_errors,
    open_settings_catalog,
    pct,
    print_json,
    settings_of,
    stdout,
)
from curator.display import escape_controls


def explain_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="A picture file, or a catalog image id or sha256 prefix."),
    model_ref: int | None = typer.Option(
        None, "--model", help="Model id (default: the default model; see curator models)."
    ),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for the PNG files."),
    device: str = device_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Show why the model decided: Grad-CAM per class, and the state of activation.

    Writes NAME.gradcam-CLASS.png (where in the picture the evidence for each class lies, jet
    over the picture at 50 %) and NAME.activations.png (each neuron of the last hidden layer at
    its weights to the two likeliest classes, coloured by how strongly it fires).

    Example:

        curator explain 42
        curator explain photo.jpg --out explanations/
        curator explain 3fa9c1 --model 2
    """
    from curator.learn.explaining import resolve, write_explanation
    from curator.learn.models import load_registered

    settings = settings_of(ctx)
    catalog = open_settings_catalog(settings)
    if out.exists() and not out.is_dir():
        fail(f"{out} is a file; --out needs a folder")
    name, file = resolve(catalog, settings.home, ref)
    model = load_registered(catalog, settings.home, model_ref, device=device)
    done = write_explanation(model, name, file, out)
    e = done.explanation
    if as_json:
        print_json(done.as_dict(model.id))
        return
    stdout.print(
        f"{escape_controls(ref)}: {escape_controls(e.classes[e.predicted])} "
        f"({pct(e.probs[e.predicted])}) by model {model.id}"
    )
    for f in done.files:
        stdout.print(f"  {escape_controls(f)}")


def register(app: typer.Typer) -> None:
    app.command("explain")(handle_errors(explain_command))
