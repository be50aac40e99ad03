"""What `curator embed --embedder clip` costs on this machine's CPU, in images a second.

    python bench/clip_speed.py [--images 256] [--batch 32] [--workers 2]

Real CLIP weights cannot always be downloaded where this runs, so the model is open_clip's
ViT-B-32 (the default `--clip-model` architecture) with random weights, written once to
.bench/clip-vit-b-32-random/ and loaded through curator's own folder loader: the same
layers and the same arithmetic as the released weights, so the same speed. The pictures are
`--images` JPEGs of 640 x 480 made from scikit-image's photographs.

Prints images a second for:

* curator's embed path (`classifier.embed.embed_paths`: decode, resize and crop to 224,
  normalise, the image tower, in batches, with `--workers` decoding processes);
* bare: the image tower alone on tensors already made, the same batches;
* for scale, torchvision's ResNet-50 (the `imagenet` embedder's network) on the same tensors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402
from _photos import photos as photographs  # noqa: E402

from classifier.embed import clip_embedder, embed_paths  # noqa: E402

BENCH = ROOT / ".bench"


def random_vit_b_32(folder: Path) -> Path:
    """open_clip's ViT-B-32, random weights, as its local-dir loader reads a folder."""
    import open_clip
    from safetensors.torch import save_file

    if (folder / "open_clip_model.safetensors").exists():
        return folder
    config = open_clip.get_model_config("ViT-B-32")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    torch.manual_seed(0)
    state = open_clip.CLIP(**config).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    return folder


def per_second(n: int, run: object) -> float:
    began = time.perf_counter()
    run()  # type: ignore[operator]
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    embedder = clip_embedder(
        str(random_vit_b_32(BENCH / "clip-vit-b-32-random")), torch.device("cpu")
    )
    folder = Path(tempfile.mkdtemp(prefix="clip-speed-"))
    photos = [img for _name, img in photographs(gray=False, cut=False)]
    paths = []
    for i in range(args.images):
        path = folder / f"{i}.jpg"
        photos[i % len(photos)].convert("RGB").resize((640, 480)).save(path, quality=90)
        paths.append(str(path))
    batches = [
        torch.rand(min(args.batch, args.images - s), 3, embedder.size, embedder.size)
        for s in range(0, args.images, args.batch)
    ]
    resnet = torchvision.models.resnet50(weights=None).eval()
    list(embed_paths(embedder, paths[: args.batch], batch_size=args.batch, workers=0))  # warm

    def curator() -> None:
        for _batch in embed_paths(embedder, paths, batch_size=args.batch, workers=args.workers):
            pass

    def tower() -> None:
        with torch.inference_mode():
            for batch in batches:
                embedder.network(batch)

    def resnet50() -> None:
        with torch.inference_mode():
            for batch in batches:
                resnet(batch)

    ours, bare, other = (per_second(args.images, f) for f in (curator, tower, resnet50))
    print(f"{args.images} JPEGs of 640 x 480, batches of {args.batch}, "
          f"{args.workers} decoding workers, {torch.get_num_threads()} torch threads:")  # fmt: skip
    print(f"  curator embed, clip ViT-B-32     {ours:7.1f} images/s  ({ours / bare:.2f}x bare)")
    print(f"  bare: the image tower alone      {bare:7.1f} images/s")
    print(f"  ResNet-50 on the same tensors    {other:7.1f} images/s")


if __name__ == "__main__":
    main()
