"""Image transforms of the paper's section 4.3: PIL image in, normalised (3, S, S) tensor out.

Training: resize to S x S, random horizontal flip, normalise, random erasing (Zhong
et al., the paper's reference 43, with torchvision's defaults: p = 0.5, 2-33 % of the
area). Evaluation: resize and normalise only, so that it is deterministic.

Faces are resized to a square, not cropped: face crops are close to square already
(FER2013 48x48, RAF-DB aligned 100x100, the synthetic faces), and a centre crop
could cut off the brows or the mouth that carry the expression.

On CUDA the engine splits the same steps in two (:func:`uint8_transform` in the loader's
workers, :class:`GpuPreprocess` on the device), so that workers ship small uint8 images
and the float work runs where the model does. The CPU keeps the PIL transforms above,
draw for draw, so a seeded CPU run trains the same weights as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import default_collate
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

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


def uint8_transform(flip: bool = False) -> T.Compose:
    """The loader's half of the input pipeline on CUDA: RGB -> random horizontal flip -> (3, H, W) uint8.

    The image keeps its own size and its 8 bits: a FER2013 face (48x48) is 7 kB, where
    the PIL pipeline ships it as a 224x224 float tensor of 600 kB. The flip is exact on
    uint8 and commutes with the resize that follows on the device.
    :func:`collate_uint8` batches; :class:`GpuPreprocess` does the rest.
    """
    return T.Compose([ToRGB(), *([T.RandomHorizontalFlip()] if flip else []), T.PILToTensor()])


def collate_uint8(batch: list[tuple[torch.Tensor, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn`` for :func:`uint8_transform`'s images: ``(B, 3, h, w) uint8, (B,) labels``.

    A batch whose images share one size (FER2013, RAF-DB, the synthetic faces: every
    batch) is stacked as it is, and the device resizes it. A batch of mixed sizes
    (AffectNet, most image-folder trees) cannot be stacked, so its images are resized
    to ``size`` x ``size`` here, in the worker, on uint8 (antialiased, as PIL does);
    the device's resize is then a no-op. Use with ``functools.partial(collate_uint8, size=S)``.
    """
    images, labels = zip(*batch)
    if len({image.shape for image in images}) > 1:
        images = [TF.resize(image, [size, size], antialias=True) for image in images]
    return torch.stack(images), default_collate(list(labels))


class GpuPreprocess(nn.Module):
    """The device's half of the input pipeline on CUDA: uint8 batch in, the model's input out.

    ``(B, 3, h, w) uint8 -> [0, 1] float -> resize to S x S -> normalise -> random erasing``:
    the same steps as :func:`train_transform` (``erase_p > 0``) or :func:`eval_transform`
    (``erase_p = 0``), on a whole batch where it lives. Any device works (the tests run
    it on the CPU); the engine uses it on CUDA only, where it takes the float work off
    the loader's workers. The CPU keeps the PIL transforms.

    Versus the PIL transforms, for the same image and draws: without a resize the output
    is bit-identical; with one, PIL resizes in 8-bit fixed point and rounds to uint8,
    this resizes in float (antialiased bilinear, the same filter), so a pixel differs by
    at most one grey level (1/255 before normalisation) and by about 0.3/255 on average.

    Erasing is torchvision's ``RandomErasing`` (the paper's reference 43, its defaults:
    one rectangle of 2-33 % of the area, aspect ratio 0.3-3.3, the first of 10 tries that
    fits, filled with 0) drawn for every image of the batch at once, without a loop or
    a host sync. Reproducibility: its draws come from ``generator`` (on the images'
    device) or else from that device's default generator: on CUDA the one
    ``torch.manual_seed`` seeds and ``last.pt`` saves, so a seeded run draws the same
    rectangles. They are not the PIL transform's rectangles: that one draws from the
    worker's CPU generator, one image at a time.
    """

    def __init__(self, image_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 erase_p: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= erase_p <= 1.0:
            raise ValueError(f"erase_p must be in [0, 1], got {erase_p!r}")
        self.image_size, self.erase_p, self.generator = image_size, erase_p, generator
        # buffers: moved to the device once, not copied from the host on every batch
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255)  # (B, 3, h, w) in [0, 1], as ToTensor
        size = [self.image_size, self.image_size]
        if list(x.shape[-2:]) != size:
            x = TF.resize(x, size, antialias=True)  # (B, 3, S, S)
        x = (x - self.mean) / self.std
        if self.erase_p > 0:
            x = x.masked_fill(self.erase_mask(x), 0.0)
        return x

    def erase_mask(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) bool: the rectangle to erase in each image, none in those not drawn."""
        B, _, H, W = x.shape
        u = torch.rand(B, 10, 4, device=x.device, generator=self.generator)  # per try: area, ratio, top, left
        area = H * W * (0.02 + (0.33 - 0.02) * u[..., 0])
        ratio = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * u[..., 1])
        h, w = (area * ratio).sqrt().round(), (area / ratio).sqrt().round()  # (B, 10)
        fits = (h < H) & (w < W)
        first = fits.int().argmax(1, keepdim=True)  # (B, 1) the first try that fits
        h, w, u = h.gather(1, first), w.gather(1, first), u[torch.arange(B, device=x.device), first[:, 0]]
        top, left = (u[:, 2:3] * (H - h + 1)).floor(), (u[:, 3:4] * (W - w + 1)).floor()  # (B, 1)
        drawn = torch.rand(B, 1, device=x.device, generator=self.generator) < self.erase_p
        erase = drawn & fits.any(1, keepdim=True)  # (B, 1) torchvision erases nothing when no try fits
        rows = torch.arange(H, device=x.device).view(1, H, 1)
        cols = torch.arange(W, device=x.device).view(1, 1, W)
        inside = (rows >= top[..., None]) & (rows < (top + h)[..., None]) & \
                 (cols >= left[..., None]) & (cols < (left + w)[..., None])  # (B, H, W)
        return (inside & erase[..., None])[:, None]
