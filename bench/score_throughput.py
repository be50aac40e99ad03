"""Scoring speed: curator's whole pipeline against the bare forward pass, same run.

    python bench/score_throughput.py [--photos DIR] [--images 256] [--backbone resnet34]
                                     [--size 224] [--batch 32] [--workers 2] [--repeat 3]

1. Pipeline: `curator.learn.scoring.score_files`, what `curator score FOLDER --out FILE.csv` runs:
   JPEG files decoded, oriented and fitted in DataLoader worker processes, normalised and
   made channels-last in batches, the model's forward pass (bf16 autocast on a CPU that has
   it), a CSV row per file written and flushed per batch.
2. Bare: the same model, the same batch size, on tensors decoded before the clock starts:
   only the forward pass and the softmax.

Both use a DeepConnection with random weights (speed does not depend on them) at `--size`;
the photos are the import benchmark's 1152 x 864 JPEGs (made when missing). Prints images/s
of each (median of `--repeat` alternating runs) and their ratio; the goal is 0.85 or more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from classifier import images  # noqa: E402
from classifier.device import pick_device  # noqa: E402
from classifier.model import DeepConnection, ModelConfig  # noqa: E402
from classifier.score import Predictor  # noqa: E402
from curator.learn.models import LoadedModel  # noqa: E402
from curator.learn.outputs import RowWriter  # noqa: E402
from curator.learn.scoring import score_files  # noqa: E402


def photos(folder: Path | None, count: int) -> list[str]:
    if folder is None:
        sys.path.insert(0, str(ROOT / "bench"))
        from import_throughput import ensure_images

        folder = ensure_images(2000)
    return [str(p) for p in sorted(folder.glob("*.jpg"))[:count]]


def pipeline(model: LoadedModel, files: list[str], batch: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "out.csv", "w") as fh:
        writer = RowWriter(fh, "csv", model.classes, with_ids=False)
        began = time.perf_counter()
        counts = score_files(model, files, writer, batch_size=batch, workers=workers)
        seconds = time.perf_counter() - began
    assert counts["scored"] == len(files), counts
    return len(files) / seconds


def bare(predictor: Predictor, tensors: list[torch.Tensor], batch: int) -> float:
    began = time.perf_counter()
    for start in range(0, len(tensors), batch):
        x = torch.stack(tensors[start : start + batch])
        predictor.probabilities(predictor.prepare(x))
    return len(tensors) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=None, help="a folder of JPEGs")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--backbone", default="resnet34")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    files = photos(args.photos, args.images)
    device = pick_device(args.device)
    torch.manual_seed(0)
    network = DeepConnection(ModelConfig(backbone=args.backbone, image_size=args.size))
    predictor = Predictor(network, device)
    model = LoadedModel(
        id=0,
        classes=["happy", "unhappy"],
        size=args.size,
        fit="pad",
        train_ids=frozenset(),
        predictor=predictor,
        network=network,
        folder=Path("."),
    )
    tensors = [v2.functional.pil_to_tensor(images.load(f, args.size, "pad")) for f in files]
    bare(predictor, tensors[: args.batch], args.batch)  # warm-up: kernels, allocator
    runs: dict[str, list[float]] = {"pipeline": [], "bare": []}
    for _ in range(args.repeat):
        runs["bare"].append(bare(predictor, tensors, args.batch))
        runs["pipeline"].append(pipeline(model, files, args.batch, args.workers))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "device": str(device),
        "precision": str(predictor.dtype).replace("torch.", "") if predictor.dtype else "float32",
        "model": f"{args.backbone} at {args.size} px, batch {args.batch}",
        "images": len(files),
        "workers": args.workers,
        "cores": os.cpu_count(),
        "images_per_s": {k: round(v, 1) for k, v in medians.items()},
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "ratio": round(medians["pipeline"] / medians["bare"], 3),
    }
    print(json.dumps(result, indent=2))
    print(
        f"curator score: {medians['pipeline']:.1f} images/s, bare forward "
        f"{medians['bare']:.1f}/s: {result['ratio']:.2f} of it (goal 0.85)"
    )


if __name__ == "__main__":
    main()
