"""The learning-rate range test (Smith, "Cyclical learning rates for training neural
networks", 2017; fastai's ``lr_find``): a short sweep before training, the rate growing
exponentially from `START` to `END` over `STEPS` optimizer steps, the loss of each step
smoothed; the run then trains at the rate `RULE` picks from that curve.

The sweep trains the model itself and puts its weights (and buffers) back afterwards, with
torch's random state as it was: a run with ``--lr auto`` trains as the same run given the rate
it found would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from classifier.data import at_epoch, normalize_batch
from classifier.distributed import SINGLE, Group, share
from classifier.errors import TrainingError
from classifier.model import DeepConnection

START, END, STEPS = 1e-6, 1.0, 100
#: The loss is smoothed as fastai does (an exponential average, bias-corrected), and the sweep
#: stops once it is this many times its lowest: the rate is past any use by then.
SMOOTHING, DIVERGED = 0.98, 4.0
#: Which rate the curve gives: "steep" (where the smoothed loss falls fastest against the log
#: of the rate) or "minimum" (a tenth of the rate at its lowest). Chosen by bench/recipes.py.
RULE = "minimum"
#: The sweep's batches come from epochs numbered from here, so that its augmentation is not
#: the training epochs' (which are numbered from 1).
SWEEP_EPOCHS = 1_000_000
#: Batches of the train split a sweep needs, at least: with fewer it goes over the same few
#: pictures again and again, and its curve says more about them than about the rate.
MIN_BATCHES = 4


@dataclass
class LrRange:
    """The sweep: each step's rate and smoothed loss, and the rates each rule gives."""

    lrs: list[float]
    losses: list[float]
    steep: float
    minimum: float
    rule: str
    chosen: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_sweep(train_images: int, batch_size: int) -> None:
    """Refuse a sweep on too few pictures, in one sentence, before anything is registered."""
    need = MIN_BATCHES * batch_size
    if train_images < need:
        raise TrainingError(
            f"--lr auto needs at least {need} training pictures ({MIN_BATCHES} batches of "
            f"--batch-size {batch_size}) for its range test, and the train split has "
            f"{train_images}: give a rate (--lr 2e-3, say), a smaller --batch-size, or label "
            "more"
        )


def find_rate(
    model: DeepConnection,
    loader: DataLoader,
    optimizer_for: Callable[[], torch.optim.Optimizer],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    group: Group = SINGLE,
    on_step: Callable[[int, int, float], None] = lambda _i, _n, _l: None,
) -> dict[str, Any]:
    """The range test, on rank 0's share of the batches; every rank gets its curve (as a
    dict, as checkpoints and model files keep it)."""
    found: LrRange | None = None
    if group.main:
        found = range_test(
            model,
            loader,
            optimizer_for(),
            device=device,
            dtype=dtype,
            channels_last=channels_last,
            on_step=on_step,
        )
    return share(group, found.as_dict() if found is not None else None)


def range_test(
    model: DeepConnection,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    on_step: Callable[[int, int, float], None] = lambda _i, _n, _l: None,
) -> LrRange:
    """Sweep the rate on ``model`` with a fresh ``optimizer``; return the curve and the rate.
    The model's weights and buffers, and torch's random state, are as they were after."""
    kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [device] if device.type == "cuda" else []
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    lrs: list[float] = []
    losses: list[float] = []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            average, best = 0.0, math.inf
            for step, (x, y) in enumerate(_batches(loader), 1):
                lr = START * (END / START) ** ((step - 1) / (STEPS - 1))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = train_step(model, optimizer, scaler, x, y, device, dtype, channels_last)
                average = SMOOTHING * average + (1 - SMOOTHING) * loss
                smoothed = average / (1 - SMOOTHING**step)
                on_step(step, STEPS, smoothed)
                if not math.isfinite(smoothed):
                    break
                lrs.append(lr)
                losses.append(smoothed)
                best = min(best, smoothed)
                if step >= STEPS or (step > 10 and smoothed > DIVERGED * best):
                    break
    finally:
        model.load_state_dict(kept)
    return suggest(lrs, losses)


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The train loader's batches, pass after pass (each an epoch of its own numbering)."""
    for sweep in range(STEPS):
        yield from at_epoch(loader, SWEEP_EPOCHS + sweep)


def train_step(
    model: DeepConnection,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One optimiser step on a batch (under autocast when ``dtype`` is given, scaled when
    ``scaler`` is); returns its loss. The sweep here and each epoch of training take it alike;
    ``forward`` is the model as DistributedDataParallel wraps it, when it does."""
    x, y = normalize_batch(x, device, channels_last), y.to(device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = model.loss((forward or model)(x), y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def suggest(lrs: list[float], losses: list[float], rule: str = RULE) -> LrRange:
    """The rates a curve gives. Its first tenth (the average still settling) and its last few
    steps (where it diverges) are left out, as fastai does."""
    if len(lrs) < 10:
        raise TrainingError(
            f"the range test diverged after {len(lrs)} steps, at a rate of "
            f"{lrs[-1] if lrs else START:.1e}: give a rate with --lr instead"
        )
    skip_start, skip_end = max(1, len(lrs) // 10), min(5, len(lrs) // 5)
    window = range(skip_start, len(lrs) - skip_end)
    logs = [math.log10(r) for r in lrs]
    slope = {
        i: (losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1])
        for i in window
        if 0 < i < len(lrs) - 1
    }
    steep = lrs[min(slope, key=lambda i: slope[i])] if slope else lrs[len(lrs) // 2]
    lowest = min(window, key=lambda i: losses[i])
    minimum = lrs[lowest] / 10
    chosen = steep if rule == "steep" else minimum
    return LrRange(lrs, losses, steep, minimum, rule, chosen)
