"""A small randomly initialised open_clip model saved to a folder, as open_clip's local-dir
loader reads one: the embedder of the vector tests, with nothing downloaded."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_clip(folder: Path, *, vision_layers: int = 2, seed: int = 0) -> Path:
    """An open_clip model of a few million random weights (``vision_layers`` transformer
    layers in its image tower, drawn from ``seed``), written to ``folder``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": vision_layers, "width": 64, "patch_size": 8},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 1,
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    torch.manual_seed(seed)
    state = open_clip.CLIP(**config).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    return folder
