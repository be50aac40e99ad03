"""Training on several processes with DistributedDataParallel, as ``torchrun`` starts them.

Each process reads its place from the environment torchrun sets (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), joins the group (NCCL on CUDA GPUs, gloo on CPUs),
trains on its share of every epoch's batches, and DDP averages the gradients. Rank 0 alone
writes: the catalog, the checkpoints, the report.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.distributed as dist

from classifier.errors import TrainingError

T = TypeVar("T")

LAUNCH = "torchrun --standalone --nproc-per-node N -m curator train --distributed ..."


@dataclass(frozen=True)
class Group:
    """This process's place: rank ``rank`` of ``world`` (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Group()


def join(device: str = "auto", timeout_s: float = 600) -> Group:
    """Join the process group torchrun set up; one sentence if this is not under torchrun."""
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise TrainingError(f"--distributed runs under torchrun: {LAUNCH}") from None
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return Group(rank=rank, world=world, local_rank=local_rank)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_of(group: Group, name: str) -> str:
    """Each process on a machine takes its own GPU."""
    if group.active and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{group.local_rank % torch.cuda.device_count()}"
    return name


def share(group: Group, value: T | None) -> T:
    """Rank 0's ``value``, on every rank (the others pass None)."""
    if group.active:
        box = [value if group.main else None]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    return cast(T, value)  # rank 0's, which it never passes as None


def barrier(group: Group) -> None:
    if group.active:
        dist.barrier()


def wrap(model: torch.nn.Module, group: Group, device: torch.device) -> torch.nn.Module:
    """The model as the training loop calls it: in DistributedDataParallel when several
    processes train together (their gradients averaged at each step), else itself."""
    if not group.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def sync_buffers(model: torch.nn.Module, group: Group) -> None:
    """Rank 0's BatchNorm statistics on every rank (each updated its own on its share of the
    last batch), so that all ranks judge the val split with one model and stop together."""
    if group.active:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
