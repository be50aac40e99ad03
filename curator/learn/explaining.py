"""``curator explain``: Grad-CAM overlays and the state-of-activation plot as PNG files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageOps

from classifier.explain import Explanation, activation_figure, explain, gradcam_figure
from curator.errors import CuratorError
from curator.ingest.imaging import describe_failure
from curator.learn.models import LoadedModel
from db.catalog import Catalog
from db.errors import CatalogError
from db.images import find_image


@dataclass
class Explained:
    source: str
    explanation: Explanation
    #: One Grad-CAM figure per class, in the classes' order, then the activation plot.
    files: list[Path]

    def as_dict(self, model_id: int) -> dict[str, Any]:
        """What `curator explain --json` prints."""
        e = self.explanation
        return {
            "source": self.source,
            "model": model_id,
            "predicted": e.classes[e.predicted],
            "probs": dict(zip(e.classes, e.probs, strict=True)),
            "files": [str(f) for f in self.files],
        }


def open_picture(path: Path) -> PILImage.Image:
    """A picture, decoded and upright, or a one-line reason why not."""
    try:
        with PILImage.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).copy()
    except Exception as exc:
        raise CuratorError(f"{path}: {describe_failure(str(path), exc)}") from None


def resolve(catalog: Catalog, home: Path, ref: str) -> tuple[str, Path]:
    """A file path as given, or a catalog image by id or sha256 prefix: (name, file)."""
    as_path = Path(ref)
    if as_path.is_file():
        return _safe_name(as_path.stem), as_path
    with catalog.reading() as session:
        try:
            image = find_image(session, ref=ref)
        except CatalogError as exc:
            if as_path.is_dir():
                raise CuratorError(f"{ref} is a folder; explain one picture at a time") from None
            raise CuratorError(f"{exc}, and there is no file of that name") from None
        file = home / image.path
    if not file.is_file():
        raise CuratorError(f"image {image.id}'s file is missing: {file}")
    return f"image-{image.id}", file


def _safe_name(stem: str) -> str:
    return re.sub(r"[^\w.-]+", "_", stem)[:80] or "picture"


def explain_picture(model: LoadedModel, picture: PILImage.Image) -> Explanation:
    return explain(model.network, picture, model.size, model.fit)


def write_explanation(model: LoadedModel, name: str, file: Path, out: Path) -> Explained:
    """Grad-CAM per class and the activation plot, written to ``out`` as PNG."""
    picture = open_picture(file)
    result = explain_picture(model, picture)
    files = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for k, cls in enumerate(result.classes):
            target = out / f"{name}.gradcam-{_safe_name(cls)}.png"
            gradcam_figure(result, k).save(target)
            files.append(target)
        target = out / f"{name}.activations.png"
        activation_figure(result).save(target)
        files.append(target)
    except OSError as exc:
        raise CuratorError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return Explained(source=str(file), explanation=result, files=files)
