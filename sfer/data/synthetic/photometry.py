"""Photometry, on channel-planar float arrays (3, H, W): distance (resampling and blur),
uneven lighting and sensor noise."""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from .nuisances import Nuisances

@functools.lru_cache(maxsize=8)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], each (size, size)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return tuple(np.meshgrid(c, c))


@functools.lru_cache(maxsize=8)
def _noise_tile(size: int) -> np.ndarray:
    """A fixed (3, 2*size, 2*size) standard-normal tile; a sample's noise is a window of it.

    Drawing 3 x size^2 fresh normals per image would cost as much as drawing the face;
    a random window of a fixed tile (size^2 of them) is as good for training.
    """
    return np.random.default_rng(20240923).standard_normal((3, 2 * size, 2 * size), dtype=np.float32)


def _interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) linear interpolation with pixel centres aligned, edges clamped."""
    pos = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    lo = np.minimum(np.floor(pos).astype(int), size_in - 2)
    w = pos - lo
    m = np.zeros((size_out, size_in))
    m[np.arange(size_out), lo] = 1 - w
    m[np.arange(size_out), lo + 1] = w
    return m


def _area_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) area averaging: each output pixel is the mean of its footprint."""
    edges = np.arange(size_out + 1) * size_in / size_out
    x = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], x + 1) - np.maximum(edges[:-1, None], x), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=256)
def _distance_operators(size: int, low_side: int, blur_px: float) -> tuple[np.ndarray, np.ndarray]:
    """``down`` (low_side, size): Gaussian blur then area averaging; ``up`` (size, low_side):
    linear interpolation. Applied along both axes, they are what a far camera gives:
    fewer pixels on the face, softer edges. Rows sum to 1, so brightness is kept.
    """
    down = _area_matrix(low_side, size)
    if blur_px:
        x = np.arange(size)
        g = np.exp(-0.5 * ((x[:, None] - x[None, :]) / blur_px) ** 2)
        down = down @ (g / g.sum(axis=1, keepdims=True))
    return down.astype(np.float32), _interpolation_matrix(size, low_side).astype(np.float32)


def _photometry(image: Image.Image, nz: Nuisances, noise_offset: np.ndarray) -> Image.Image:
    """Distance, uneven lighting and sensor noise; back to a uint8 PIL image."""
    size = image.size[0]
    x = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")  # (3, H, W)
    low_side = int(round(size / nz.downsample))
    if low_side < size or nz.blur_px:
        down, up = _distance_operators(size, low_side, nz.blur_px)
        x = down @ x @ down.T  # (3, low_side, low_side): what a far camera records
        x = up @ x @ up.T  # (3, H, W)
    if nz.light_gradient or nz.brightness != 1.0:
        gx, gy = _grids(size)
        angle = math.radians(nz.light_angle_deg)
        ramp = (nz.light_hardness * math.cos(angle)) * gx + (nz.light_hardness * math.sin(angle)) * gy
        np.clip(ramp, -1.0, 1.0, out=ramp)
        x *= nz.brightness * nz.light_gradient * ramp + nz.brightness  # (H, W) field over every channel
    if nz.noise_sigma:
        oy, ox = noise_offset.tolist()
        x += nz.noise_sigma * _noise_tile(size)[:, oy:oy + size, ox:ox + size]
    planes = np.clip(x, 0, 255).astype(np.uint8)
    return Image.merge("RGB", [Image.fromarray(p) for p in planes])  # faster than a transposed copy
