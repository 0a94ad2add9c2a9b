"""Checkpoints in, ready-to-explain models out; images in, model inputs and display pixels out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from sfer.engine.checkpoint import load_model  # noqa: F401  (the one loader, re-exported for the explainers)

# The embedded data and the shipped tiny checkpoints, next to the package in a source checkout.
SAMPLES = Path(__file__).resolve().parents[2] / "data_samples"
CHECKPOINTS = SAMPLES / "checkpoints"


def transform_for(model: nn.Module):
    """The model's ``eval_transform``, else the data module's default for its preset's image size."""
    transform = getattr(model, "eval_transform", None)
    if transform is None:
        from sfer.data import IMAGENET_MEAN, IMAGENET_STD, eval_transform

        transform = eval_transform(model.preset.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return transform


def class_names(model: nn.Module) -> list[str]:
    """The model's ``class_names`` (set by :func:`load_model`), else "0", "1", ..."""
    return list(getattr(model, "class_names", None) or map(str, range(model.num_classes)))


def class_indices(class_idx, batch_size: int, num_classes: int) -> list[int] | None:
    """``class_idx`` (one index for all images, one per image, or ``None``) as a validated list."""
    if class_idx is None:
        return None
    indices = [int(class_idx)] * batch_size if np.ndim(class_idx) == 0 else [int(i) for i in class_idx]
    if len(indices) != batch_size:
        raise ValueError(f"class_idx has {len(indices)} entries for {batch_size} images")
    bad = [i for i in indices if not 0 <= i < num_classes]
    if bad:
        raise ValueError(f"class index {bad[0]} out of range for a {num_classes}-class model")
    return indices


def to_batch(model: nn.Module, images) -> torch.Tensor:
    """A float (B, 3, H, W) batch on the model's device from a tensor, a PIL image or a list of them.

    Tensors are taken as already preprocessed; PIL images go through :func:`transform_for`.
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, Sequence) and not isinstance(images, torch.Tensor):
        transform = transform_for(model)
        images = torch.stack([im if isinstance(im, torch.Tensor) else transform(im.convert("RGB"))
                              for im in images])
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4):
        raise TypeError("images must be a (B, 3, H, W) or (3, H, W) tensor, a PIL image or a list of them")
    if images.dim() == 3:
        images = images[None]
    device = next(model.parameters()).device
    return images.to(device=device, dtype=torch.float32)


def to_rgb(image, size: tuple[int, int]) -> np.ndarray:
    """Display pixels (H, W, 3) uint8 at ``size`` (H, W) for a PIL image or a (3, H, W) tensor.

    A tensor is taken as normalised model input and min-max scaled for display.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB").resize(size[::-1], Image.BILINEAR))
    t = image.detach().float().cpu()
    t = t[0] if t.dim() == 4 else t
    if tuple(t.shape[-2:]) != tuple(size):
        t = torch.nn.functional.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]
    t = (t - t.min()) / (t.max() - t.min()).clamp(min=1e-8)
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@dataclass(frozen=True)
class Faces:
    """Generated faces with what the energy needs: PIL images, labels, key-region masks (N, H, W)."""

    images: list[Image.Image]
    labels: list[int]
    masks: np.ndarray
    classes: list[str]


def synthetic_faces(n: int, seed: int = 0, nuisance: float | None = None) -> Faces:
    """``n`` synthetic classroom faces of seed ``seed``, with their key-region masks.

    ``nuisance`` (0..1) defaults to the strength of the synthetic training recipe
    (``TrainConfig.nuisance``), the faces the shipped checkpoints were trained on, so
    that explanations are not confounded by a shift of the data.
    """
    from sfer.data import SyntheticClassroomFaces
    from sfer.engine.config import TrainConfig

    data = SyntheticClassroomFaces(n, seed=seed, nuisance=TrainConfig.nuisance if nuisance is None else nuisance)
    images, labels = zip(*(data[i] for i in range(n)))
    return Faces(list(images), list(labels), np.stack([data.mask(i) for i in range(n)]), list(data.classes))


def embedded_samples(per_class: int = 2) -> list[tuple[str, Image.Image]]:
    """(name, image) pairs: ``per_class`` faces of each class from the test split exported under
    ``data_samples/`` (found by its ``classes.txt``), else freshly generated synthetic faces."""
    exports = sorted(SAMPLES.glob("**/classes.txt")) if SAMPLES.is_dir() else []
    if exports:
        root = exports[0].parent
        out = []
        for name in root.joinpath("classes.txt").read_text(encoding="utf-8").split():
            for path in sorted((root / "test" / name).glob("*.png"))[:per_class]:
                out.append((f"{name}/{path.name}", Image.open(path).convert("RGB")))
        if out:
            return out
    faces = synthetic_faces(per_class * 6, seed=0)
    return [(f"synthetic {i} ({faces.classes[y]})", im) for i, (im, y) in enumerate(zip(faces.images, faces.labels))]
