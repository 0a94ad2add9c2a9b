"""Classroom nuisances: how strong each one is, and the values drawn for one sample."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

@dataclass(frozen=True)
class NuisanceStrengths:
    """How strong each classroom nuisance is, from 0 (off) to 1 (the default level).

    At 1: a lighting gradient up to 0.45 and a brightness of 0.7..1.1; viewpoint up
    to 8 degrees of roll, 10 of yaw, 6 % of scale and 2 % of the image of shift;
    half the faces far away, with 1.75x to 2.8x fewer pixels per side and a 0.4 to
    0.8-pixel blur; an occluder (hand, book or pen) on 40 % of the faces; noise up to
    sigma 6 (of 255); up to 6 background objects at full contrast.
    """

    lighting: float = 1.0
    viewpoint: float = 1.0
    distance: float = 1.0
    occlusion: float = 1.0
    noise: float = 1.0
    clutter: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"nuisance strength {f.name}={value} is outside [0, 1]")

    @classmethod
    def only(cls, *kinds: str, strength: float = 1.0) -> NuisanceStrengths:
        """The named nuisances at ``strength``, every other one off."""
        return cls.coerce({**{f.name: 0.0 for f in fields(cls)}, **{k: strength for k in kinds}})

    @classmethod
    def coerce(cls, value: float | Mapping[str, float] | NuisanceStrengths) -> NuisanceStrengths:
        """A global strength (every nuisance at it), a dict (missing ones at 1) or an instance."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown nuisances {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
            return cls(**{k: float(v) for k, v in value.items()})
        return cls(**{f.name: float(value) for f in fields(cls)})


NUISANCE_KINDS = tuple(f.name for f in fields(NuisanceStrengths))
OCCLUDERS = ("none", "hand", "book", "pen")
_MAX_CLUTTER = 6


@dataclass(frozen=True)
class Nuisances:
    """The nuisance values drawn for one sample (what ``nuisances(i)`` reports)."""

    light_angle_deg: float  # where the light comes from
    light_gradient: float  # field = brightness * (1 + gradient * ramp), ramp in [-1, 1]
    light_hardness: float  # slope of the ramp: soft (1) .. hard shadow edge (4)
    brightness: float
    roll_deg: float
    yaw_deg: float
    scale: float
    shift_x: float  # fractions of the image side
    shift_y: float
    downsample: float  # the face is rendered with this many times fewer pixels per side
    blur_px: float  # Gaussian sigma in output pixels
    occluder: str  # one of OCCLUDERS
    noise_sigma: float  # of 255
    clutter_items: int


def _draw_nuisances(rng: np.random.Generator, s: NuisanceStrengths, size: int):
    """Nuisance values plus the raw draws that place the occluder, the clutter and the noise.

    Every draw happens whatever the strengths (they only scale the values), so a sample
    keeps its layout when a strength changes. Distance: half the students sit near the
    camera (no effect), the others far (1.75 to 2.8 times fewer pixels per side at strength
    1, and a blur); the low-resolution side is a multiple of 4 pixels and the blur a multiple of
    0.2 pixel, so that a few dozen cached resampling operators serve every sample.
    """
    u = rng.random(16).tolist()  # Python floats: numpy scalars would promote the float32 maths
    occluder_draws = rng.random(8)
    clutter_draws = rng.random((_MAX_CLUTTER, 9))
    noise_offset = rng.integers(0, size, size=2)
    far = s.distance * (u[9] >= 0.5)
    low_side = min(size, max(8, 4 * round(size / (1.0 + far * (0.75 + 2.0 * (u[9] - 0.5))) / 4)))
    occluder = "none" if u[11] >= 0.4 * s.occlusion else OCCLUDERS[1 + int(u[12] * 3)]
    values = Nuisances(
        light_angle_deg=360.0 * u[0],
        light_gradient=0.45 * s.lighting * u[1],
        light_hardness=1.0 + 3.0 * u[2],
        brightness=math.exp(s.lighting * (-0.36 + 0.45 * u[3])),  # 0.70 .. 1.09
        roll_deg=8.0 * s.viewpoint * (2 * u[4] - 1),
        yaw_deg=10.0 * s.viewpoint * (2 * u[5] - 1),
        scale=1.0 + 0.06 * s.viewpoint * (2 * u[6] - 1),
        shift_x=0.02 * s.viewpoint * (2 * u[7] - 1),
        shift_y=0.02 * s.viewpoint * (2 * u[8] - 1),
        downsample=size / low_side,
        blur_px=round(far * (0.3 + 0.6 * u[10]) * 5) / 5,
        occluder=occluder,
        noise_sigma=6.0 * s.noise * u[13],
        clutter_items=int(round(_MAX_CLUTTER * s.clutter * u[14])),
    )
    return values, occluder_draws, clutter_draws, noise_offset
