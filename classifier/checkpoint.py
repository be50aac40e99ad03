"""The model file and the checkpoints: one format, written whole or not at all, read without
running pickled code; and the weights a run starts from.

``model.pt`` (a finished model) holds ``format`` (`FORMAT`), the weights, the model's
``config`` (`classifier.config.ModelConfig`: its input contract, image size and fit
included), the ``training`` recipe, the ``machine`` it trained on (a record only), the
``classes``, the image ids of each split, the history, the metrics, where the weights
started, and versions. ``last.pt`` and
``previous.pt`` hold the state after the newest epoch and the one before, to resume from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from classifier.errors import TrainingError
from classifier.model import DeepConnection, ModelConfig, load_backbone_weights

#: What a model file says it is: the one version of the format.
FORMAT = "curator-deepconnection-1"

#: What a resumed run's starting weights are called when its checkpoint does not name them
#: (one written before checkpoints did).
RESUMED_WEIGHTS = "those of the interrupted run (not recorded in its checkpoint)"

#: The state after the newest epoch, then the one before it: a run resumes from the first of
#: these that loads.
CHECKPOINTS = ("last.pt", "previous.pt")


def save(path: Path, payload: dict[str, Any], *, previous: Path | None = None) -> None:
    """Write a file whole or not at all (on the disk before it takes the name); with
    `previous`, the file it replaces is kept there."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, temp)
        with open(temp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    try:
        if previous is not None and path.exists():
            os.replace(path, previous)
    finally:  # even when interrupted between the two: the new file always takes the name
        os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the renames, on the disk too
    finally:
        os.close(folder)


def find_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a resumed run starts from, if any (see `CHECKPOINTS`)."""
    return next((folder / n for n in CHECKPOINTS if (folder / n).exists()), None)


def usable_checkpoint(folder: Path) -> tuple[int | None, list[str]]:
    """The epoch after which the newest checkpoint in `folder` that loads was written, and a
    note for each damaged one, which is set aside as ``NAME.damaged`` (kept, never read again):
    a run then resumes from the epoch before, or, with none left, starts that model over."""
    notes: list[str] = []
    for name in CHECKPOINTS:
        path = folder / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not {"model", "epoch"} <= state.keys():
                raise ValueError("not a training checkpoint")
        except Exception as exc:
            aside = path.with_name(f"{name}.damaged")
            os.replace(path, aside)
            notes.append(
                f"the checkpoint {path} is damaged ({why(exc)}); set aside as {aside.name}"
            )
            continue
        return int(state["epoch"]), notes
    return None, notes


def why(exc: BaseException) -> str:
    """Why a model file did not load, in a few words (torch's own messages run to pages)."""
    text = str(exc).strip()
    if text.startswith("Weights only load failed"):
        return "not a file of tensors that can be read safely"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 120 else first[:117] + "..."


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, read without running any pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"the model file {path} is missing") from None
    except Exception as exc:
        raise TrainingError(f"the model file {path} is damaged ({why(exc)}); train again") from None


def starting_weights(
    backbone: str, weights: str, classes: tuple[str, ...] | list[str] | None = None
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The starting weights as a state dict (None: random), and where they came from. Called
    before anything is registered, so a missing file costs nothing. An earlier model's head
    comes along only when it was trained for the same ``classes``, in the same order."""
    if weights == "none":
        return None, "random initialisation"
    if weights == "imagenet":
        return _imagenet(backbone)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TrainingError(f"--weights {weights}: no such file (or use imagenet, none)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"--weights {weights} is damaged or not a PyTorch state dict ({why(exc)})"
        ) from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        model, source = state["model"], f"curator model {path}"  # fine-tuning it
        if classes is not None and list(state.get("classes", [])) != list(classes):
            model = {k: v for k, v in model.items() if not k.startswith("head.")}
            source += f" (its trunk: it was trained for {', '.join(state.get('classes', []))})"
        return model, source
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise TrainingError(f"--weights {weights} is not a PyTorch state dict")
    return state, str(path)


def is_model_file(path: Path) -> bool:
    """Whether ``path`` is a curator model file (what --weights fine-tunes), rather than a
    state dict of other weights; a file that cannot be read is neither (`starting_weights`
    then says why)."""
    path = path.expanduser()
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(state, dict) and state.get("format") == FORMAT


def _imagenet(backbone: str) -> tuple[dict[str, torch.Tensor], str]:
    import torchvision

    enum = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1
    try:
        state = enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, a proxy, a full disk...
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        file = Path(enum.url).name
        raise TrainingError(
            f"cannot get the ImageNet weights of {backbone} ({type(exc).__name__}: "
            f"{str(exc)[:120]}); download {enum.url} into {hub}/{file}, or pass "
            "--weights PATH to a local copy, or --weights none to start from scratch"
        ) from None
    return state, f"ImageNet ({Path(enum.url).name})"


def apply_weights(model: DeepConnection, state: dict[str, torch.Tensor] | None, source: str) -> str:
    if state is None:
        return source
    try:
        count = load_backbone_weights(model, state)
    except ValueError as exc:
        raise TrainingError(f"--weights {source}: {exc}") from None
    return f"{source} ({count} tensors)"


def load_model(path: Path, device: str = "cpu") -> tuple[DeepConnection, dict[str, Any]]:
    """A trained model (in eval mode) and its checkpoint's metadata."""
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise TrainingError(f"{path} is not a curator model file")
    # A model stored before the fit joined its config kept it with the training settings.
    config = ModelConfig.from_dict(state["config"], fit=state.get("training", {}).get("fit"))
    model = DeepConnection(config)
    model.load_state_dict(state["model"])
    model.eval().to(device)
    return model, state
