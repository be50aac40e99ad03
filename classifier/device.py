"""Where a model runs, and in which precision: the devices of this machine, as ``--device``
takes them, checked before anything is registered or written."""

from __future__ import annotations

import platform

import torch

from classifier.errors import TrainingError

#: The kinds of device a model trains and scores on.
DEVICE_KINDS = ("cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """The devices of this machine, as --device takes them."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def pick_device(name: str) -> torch.device:
    """The device ``name`` (auto: a CUDA GPU when there is one), or a `TrainingError` that
    says which devices there are. Called before anything is registered or written, so that
    a device this machine lacks costs nothing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = f"the devices here: {', '.join(available_devices())}"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainingError(f"--device {name}: unknown device; {here}") from None
    if device.type not in DEVICE_KINDS:
        raise TrainingError(f"--device {name}: curator runs on {', '.join(DEVICE_KINDS)}; {here}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: this machine has no CUDA GPU; {here}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise TrainingError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            f"numbered from 0; {here}"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainingError(f"--device {name}: this machine has no Apple GPU (MPS); {here}")
    if device.type == "cpu" and device.index not in (None, 0):
        raise TrainingError(f"--device {name}: the CPU is one device, cpu; {here}")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: AVX-512 BF16 or AMX on x86 (oneDNN's own
    check also passes plain AVX-512, where bf16 runs converted, slower than fp32), BF16 on
    Arm as oneDNN judges it. Without it bf16 is emulated: on a 2-core AVX2 EPYC, a resnet18
    step at 80 px took 11 times as long under bf16 autocast as in fp32 (bench/precision.py)."""
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # another build of PyTorch: fp32 is always safe
        return False


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The precision autocast runs in with ``amp``: bf16 where the hardware has it, fp16 on
    a GPU without it (with a GradScaler), and none (fp32) on a CPU without it."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
