"""Why the model decided: Grad-CAM, and the state of activation of the last layer.

Grad-CAM (Selvaraju et al.): the gradient of a class's logit with respect to the feature maps
of the last convolutional block, averaged over space, weighs those maps; their positive sum,
upsampled bilinearly to the picture and scaled to 0-1, shows where the evidence for that class
lies. Computed in fp32 (gradients of bf16 activations are too coarse to read).

The state of activation is the reference's plot: each neuron feeding the last layer placed at
(its weight to class A, its weight to class B), coloured by how strongly it fires for this
picture: the neurons that decide are the bright ones far from the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from classifier import images
from classifier.data import normalize_batch
from classifier.model import DeepConnection

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Explanation:
    classes: list[str]
    probs: list[float]
    #: One map per class, (S, S) in 0-1, over the fitted square the model saw.
    cams: list[np.ndarray]
    #: The hidden activations feeding the last layer (after its ReLU and batch norm).
    hidden: np.ndarray
    #: The last layer's weights, (classes, hidden).
    weights: np.ndarray
    picture: Image.Image  # the fitted square the model saw
    original: Image.Image  # the picture as given (upright RGB), at most SHOWN px a side
    fit: str
    #: The part of the square that is picture, not padding: (left, top, right, bottom).
    box: tuple[int, int, int, int]

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))


def explain(model: DeepConnection, picture: Image.Image, size: int, fit: str) -> Explanation:
    """Grad-CAM for every class, and the head's activations, for one picture (fp32, CPU or
    wherever the model is)."""
    model.eval()
    device = next(model.parameters()).device
    fitted = images.fit(images.to_rgb(picture), size, fit)
    x = normalize_batch(v2.functional.pil_to_tensor(fitted)[None], device).contiguous()
    hidden: list[torch.Tensor] = []
    hook = model.head.hidden.register_forward_hook(lambda _m, _i, out: hidden.append(out))
    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            features = model.forward_features(x.float())  # (1, C, h, w): the last block
            features.retain_grad()
            logits = model.forward_head(features)  # (1, K)
            cams: list[np.ndarray] = []
            for k in range(logits.shape[1]):
                features.grad = None
                logits[0, k].backward(retain_graph=k + 1 < logits.shape[1])
                assert features.grad is not None
                weights = features.grad.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
                cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # (1, 1, h, w)
                cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
                cam = cam[0, 0].detach()
                top = float(cam.max())
                cams.append((cam / top if top > 0 else cam).cpu().numpy())
    finally:
        hook.remove()
    probs = torch.softmax(logits.detach().float(), dim=1)[0].cpu().tolist()
    return Explanation(
        classes=list(model.config.classes),
        probs=probs,
        cams=cams,
        hidden=hidden[0][0].detach().float().cpu().numpy(),
        weights=model.head.classifier.weight.detach().float().cpu().numpy(),
        picture=fitted,
        original=_shown(images.to_rgb(picture)),
        fit=fit,
        box=content_box(picture.size, size, fit),
    )


#: The longest side of the pictures under the heat maps.
SHOWN = 640


def _shown(picture: Image.Image) -> Image.Image:
    copy = picture.copy()
    copy.thumbnail((SHOWN, SHOWN), Image.Resampling.LANCZOS)
    return copy


def content_box(original: tuple[int, int], size: int, fit: str) -> tuple[int, int, int, int]:
    """Where a picture of ``original`` size lies in its fitted square (all of it unless padded)."""
    if fit != "pad":
        return (0, 0, size, size)
    w, h = original
    scale = size / max(w, h)
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (size - rw) // 2, (size - rh) // 2
    return (left, top, left + rw, top + rh)


def jet(values: np.ndarray) -> np.ndarray:
    """0-1 values to jet RGB (uint8), as matplotlib draws it."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


def overlay(picture: Image.Image, cam: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The heat map in jet over the picture, at ``alpha``."""
    heat = Image.fromarray(jet(cam)).resize(picture.size, Image.Resampling.BILINEAR)
    return Image.blend(picture.convert("RGB"), heat, alpha)


def heat_over_original(result: Explanation, k: int) -> Image.Image:
    """Class k's map over the picture as given: the padding cut off, the map stretched back
    to the picture (for ``crop``, over the square the model saw)."""
    if result.fit == "crop":
        return overlay(result.picture, result.cams[k])
    left, top, right, bottom = result.box
    cam = result.cams[k][top:bottom, left:right]
    return overlay(result.original, cam)


#: Figure colours: ``light`` for reports and files, ``dark`` for the review page (its
#: background, so the picture sits on the page without a white frame).
THEMES = {
    "light": {"face": "white", "text": "black"},
    "dark": {"face": "#16181d", "text": "#e8e9ec"},
}


def gradcam_figure(
    result: Explanation, k: int, title: str | None = None, *, theme: str = "light"
) -> Image.Image:
    """One class's Grad-CAM over the picture, titled with the prediction, with its colour
    scale; the figure takes the picture's proportions, so no margin is left around it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colours = THEMES[theme]
    picture = heat_over_original(result, k)
    best = result.predicted
    aspect = picture.height / max(1, picture.width)
    fig, ax = plt.subplots(figsize=(5.6, 5.0 * aspect + 0.9), dpi=100)
    fig.patch.set_facecolor(colours["face"])
    ax.imshow(picture)
    ax.set_axis_off()
    ax.set_title(
        title
        or (
            f"predicted {result.classes[best]} ({result.probs[best] * 100:.1f} %)\n"
            f"Grad-CAM for {result.classes[k]}"
        ),
        fontsize=11,
        color=colours["text"],
    )
    scale = fig.colorbar(
        ScalarMappable(norm=Normalize(0, 1), cmap="jet"), ax=ax, fraction=0.046, pad=0.02
    )
    scale.set_label("how much the area counted (relative)", color=colours["text"], fontsize=9)
    scale.ax.tick_params(colors=colours["text"], labelsize=8)
    scale.outline.set_edgecolor(colours["text"])
    image = _to_image(fig, tight=True)
    plt.close(fig)
    return image


def activation_figure(result: Explanation) -> Image.Image:
    """The state of activation: neurons at (weight to class a, weight to class b), coloured by
    activation; a and b are the predicted class and the runner-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(result.probs)[::-1]
    a, b = int(order[0]), int(order[1])
    fig, ax = plt.subplots(figsize=(5.6, 5), dpi=100)
    points = ax.scatter(
        result.weights[a],
        result.weights[b],
        c=result.hidden,
        cmap="viridis",
        s=28,
        edgecolors="black",
        linewidths=0.3,
    )
    low = float(min(result.weights[a].min(), result.weights[b].min()))
    high = float(max(result.weights[a].max(), result.weights[b].max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"weight to {result.classes[a]}")
    ax.set_ylabel(f"weight to {result.classes[b]}")
    ax.set_title(
        f"state of activation: {len(result.hidden)} neurons\npredicted {result.classes[a]} "
        f"({result.probs[a] * 100:.1f} %)",
        fontsize=11,
    )
    fig.colorbar(points, ax=ax, label="activation")
    fig.tight_layout()
    image = _to_image(fig)
    plt.close(fig)
    return image


def _to_image(fig: Figure, *, tight: bool = False) -> Image.Image:
    import io

    buffer = io.BytesIO()
    extra: dict[str, Any] = {"bbox_inches": "tight", "pad_inches": 0.05} if tight else {}
    fig.savefig(
        buffer,
        format="png",
        facecolor=fig.get_facecolor(),
        **extra,
    )
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
