"""Who the student is: proportions and colours, never a class cue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SKIN = ((255, 224, 196), (234, 192, 160), (205, 152, 116), (160, 110, 80), (110, 74, 52))
_HAIR = ((30, 24, 20), (70, 45, 30), (120, 80, 45), (190, 150, 90), (110, 110, 110))
_IRIS = ((60, 40, 25), (90, 60, 30), (60, 90, 120), (70, 100, 70))

Color = tuple[int, int, int]


def _rgb(r: float, g: float, b: float) -> Color:
    return min(255, max(0, round(r))), min(255, max(0, round(g))), min(255, max(0, round(b)))


def _shade(color: Color, factor: float) -> Color:
    return _rgb(factor * color[0], factor * color[1], factor * color[2])


def _from_palette(palette, t: float) -> Color:
    """The colour a fraction ``t`` in [0, 1] along the palette, linearly between entries."""
    x = t * (len(palette) - 1)
    k = min(int(x), len(palette) - 2)
    return _rgb(*(a + (x - k) * (b - a) for a, b in zip(palette[k], palette[k + 1])))


@dataclass(frozen=True)
class Identity:
    """Who the student is: proportions and colours (never a class cue)."""

    face_width: float  # head half-width, as a fraction of the image side
    face_height: float
    eye_u: float  # eye centres at (+-eye_u, eye_v)
    eye_v: float
    brow_gap: float  # brow centre height above the eye centre
    brow_thickness: float
    mouth_v: float
    mouth_half_width: float
    fringe_v: float  # lower edge of the hair fringe
    skin: Color
    hair: Color
    iris: Color
    lips: Color
    shirt: Color
    wall: Color


def _draw_identity(rng: np.random.Generator) -> Identity:
    u = rng.random(18).tolist()
    skin = _from_palette(_SKIN, u[9])
    grey = 150 + 60 * u[12]
    return Identity(
        face_width=0.31 + 0.04 * u[0],
        face_height=0.39 + 0.04 * u[1],
        eye_u=0.36 + 0.07 * u[2],
        eye_v=-0.11 + 0.06 * u[3],
        brow_gap=0.215 + 0.03 * u[4],
        brow_thickness=0.05 + 0.025 * u[5],
        mouth_v=0.47 + 0.07 * u[6],
        mouth_half_width=0.28 + 0.08 * u[7],
        fringe_v=-0.70 + 0.12 * u[8],
        skin=skin,
        hair=_from_palette(_HAIR, u[10]),
        iris=_from_palette(_IRIS, u[11]),
        lips=_rgb(0.78 * skin[0] + 30, 0.55 * skin[1], 0.55 * skin[2]),
        shirt=_rgb(40 + 180 * u[13], 40 + 180 * u[14], 40 + 180 * u[15]),
        wall=_rgb(grey + 40 * (u[16] - 0.5), grey + 40 * (u[17] - 0.5), grey - 20),
    )
