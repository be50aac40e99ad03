"""Which precision a CPU trains fastest in: bf16 autocast against fp32, same run.

    python bench/precision.py [--backbone resnet18] [--size 80] [--batch 32] [--rounds 5]

Times one training step of DeepConnection (forward, the 8 losses, backward, fused AdamW) on a
random batch, in fp32 and under bf16 autocast in turn, ``--rounds`` rounds of 3 steps each
after one warm-up step of each (so that drifting load meets both alike), and prints the median
of each, their ratio, and what `classifier.device.autocast_dtype` picks on this CPU: bf16 only
where the CPU computes it in hardware (`classifier.device.cpu_has_bf16`: AVX-512 BF16 or AMX
on x86, BF16 on Arm). Where it does not, bf16 is
emulated and many times slower than fp32. docs/training.md quotes the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from classifier.device import autocast_dtype, cpu_has_bf16  # noqa: E402
from classifier.lrfind import train_step  # noqa: E402
from classifier.model import DeepConnection, ModelConfig  # noqa: E402


def step_seconds(
    model: DeepConnection,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype | None,
    steps: int,
) -> float:
    """Seconds per training step, over ``steps`` steps (a uint8 batch, normalised and made
    channels-last by the step, as in training)."""
    cpu = torch.device("cpu")
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, None, x, y, cpu, dtype, True, model)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ModelConfig(backbone=args.backbone, image_size=args.size, classes=("a", "b"))
    model = DeepConnection(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    y = torch.randint(0, 2, (args.batch,))
    arms: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
    for dtype in arms.values():  # warm-up: first-call allocations and kernel choice
        step_seconds(model, optimizer, x, y, dtype, 1)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, dtype in arms.items():
            times[name].append(step_seconds(model, optimizer, x, y, dtype, 3))
    fp32, bf16 = (statistics.median(times[n]) for n in arms)
    picked = autocast_dtype(torch.device("cpu"), True)
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"{args.backbone} at {args.size} px, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, CPU capability {capability}"
    )
    print(f"  fp32                 {fp32:.3f} s a step")
    print(f"  bf16 autocast        {bf16:.3f} s a step")
    print(f"  bf16 / fp32: {bf16 / fp32:.2f}x the time")
    print(
        f"  bf16 in hardware: {'yes' if cpu_has_bf16() else 'no'}; curator's default (amp on) "
        f"trains in {'bf16' if picked is not None else 'fp32'} here"
    )


if __name__ == "__main__":
    main()
