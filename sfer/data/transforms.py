"""Image transforms of the paper's section 4.3: PIL image in, normalised (3, S, S) tensor out.

Training: resize to S x S, random horizontal flip, normalise, random erasing (Zhong
et al., the paper's reference 43, with torchvision's defaults: p = 0.5, 2-33 % of the
area). Evaluation: resize and normalise only, so that it is deterministic.

Faces are resized to a square, not cropped: face crops are close to square already
(FER2013 48x48, RAF-DB aligned 100x100, the synthetic faces), and a centre crop
could cut off the brows or the mouth that carry the expression.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToRGB:
    """Any PIL image (grayscale, palette, RGBA, CMYK) as RGB. A class, not a lambda, so
    that DataLoader workers can pickle it."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def train_transform(image_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, flip: bool = True, erase_p: float = 0.5) -> T.Compose:
    """Resize -> random horizontal flip -> tensor -> normalise -> random erasing; (3, S, S).

    ``flip`` and ``erase_p`` (the probability of erasing one rectangle) are the two
    augmentations of the paper; a training config may turn them down.
    """
    if not 0.0 <= erase_p <= 1.0:
        raise ValueError(f"erase_p must be in [0, 1], got {erase_p!r}")
    steps = [ToRGB(), T.Resize((image_size, image_size), antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if erase_p > 0:
        steps.append(T.RandomErasing(p=erase_p))
    return T.Compose(steps)


def eval_transform(image_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """Resize -> tensor -> normalise; deterministic; (3, S, S)."""
    return T.Compose([
        ToRGB(),
        T.Resize((image_size, image_size), antialias=True),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
