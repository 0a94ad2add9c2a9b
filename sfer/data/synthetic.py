"""Synthetic classroom faces whose expression is drawn, with a ground-truth key-region mask.

Real FER data sets cannot ship with the workbook (licences) nor be downloaded here,
and their explanations cannot be checked: nobody knows which pixels carry the label.
Here the label is *drawn*: each class moves a few facial parts (brows, eyes with
their lids and gaze, mouth, nose wrinkles) away from rest, and the sample's mask is
exactly the pixels of those parts. The other parts are drawn too, at rest, so that a
model must look at the right ones.

A sample is made in three steps, each from numbers drawn for ``(seed, index)``:

1. **Parameters.** Identity (skin, hair, proportions), expression (the class's
   ranges, see ``EXPRESSIONS``) and nuisances (``NuisanceStrengths``). Nuisances are
   drawn last and in a fixed number, so turning a nuisance up or down leaves the
   identity and the expression of every sample unchanged.
2. **Geometry.** Every part is a polygon or a polyline in *face coordinates*
   (u, v in [-1, 1] across and down the head). One projection maps them to pixels:
   yaw rotates the points about a vertical axis through the head (so the features
   slide and the far side compresses), then roll, scale and shift. Image and mask
   are drawn from the same projected points, so they cannot drift apart: no pixel
   warp is ever applied to one and not the other. The key parts are drawn after
   every other face part (only an occluder can cover them), so the mask is exactly
   where hiding them changes the image (``render(i, hide_key_parts=True)``).
3. **Photometry.** Distance (downsample, upsample and blur, folded into one
   separable linear operator), uneven lighting (a multiplicative gradient field)
   and sensor noise (a window of a fixed Gaussian noise tile), in numpy on
   channel-planar float arrays.

Drawing uses PIL's C rasteriser; with the numpy photometry this makes well over a
thousand 112x112 images per second on one core (``benchmarks/synth_rate.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

SCFED_CLASSES = ("happy", "dedicated", "neutral", "confused", "tired", "bored")
BASIC_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 order
KEY_PARTS = ("brows", "eyes", "nose", "mouth")


# --------------------------------------------------------------------------------------
# Expressions: which parameters each class moves, and so which parts carry its cue.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """The parameters of the drawn facial parts; the defaults are a face at rest.

    Vertical amounts are in face half-heights, horizontal ones in face half-widths.
    """

    brow_raise: float = 0.0  # both brows up (+) or down (-)
    brow_tilt: float = 0.0  # inner ends up (+: sad, fear) or down (-: anger, concentration)
    brow_knit: float = 0.0  # inner ends pulled toward the midline (and a little down)
    brow_asym: float = 0.0  # one brow up and the other down by this much (confusion)
    eye_open: float = 1.0  # upper-lid opening: 0 closed, 1 relaxed, 1.4 wide
    gaze_x: float = 0.0  # iris across the opening: -1 to the face's right .. 1 to its left
    gaze_y: float = 0.0  # -1 up .. 1 down
    mouth_curve: float = 0.0  # corners up (+, smile) or down (-, frown)
    mouth_open: float = 0.0  # lip gap: 0 closed .. 1 wide open
    mouth_width: float = 1.0  # relative to the identity's mouth width
    mouth_skew: float = 0.0  # one corner up, the other down
    nose_wrinkle: float = 0.0  # 0..1: how many wrinkle lines cross the nose bridge


@dataclass(frozen=True)
class Range:
    """Uniform on [low, high]; ``either_sign`` flips the sign with probability 1/2."""

    low: float
    high: float
    either_sign: bool = False


# A face at rest still varies a little: the same draw is every class's default.
REST = {
    "brow_raise": Range(-0.015, 0.025),
    "brow_tilt": Range(-0.02, 0.02),
    "brow_knit": Range(-0.01, 0.01),
    "brow_asym": Range(-0.008, 0.008),
    "eye_open": Range(0.9, 1.05),
    "gaze_x": Range(-0.35, 0.35),
    "gaze_y": Range(-0.2, 0.2),
    "mouth_curve": Range(-0.1, 0.12),
    "mouth_open": Range(0.0, 0.06),
    "mouth_width": Range(0.9, 1.08),
    "mouth_skew": Range(-0.02, 0.02),
    "nose_wrinkle": Range(0.0, 0.0),
}


@dataclass(frozen=True)
class ExpressionSpec:
    """A class: the parts that carry its cue and the ranges it draws them from."""

    key_parts: tuple[str, ...]
    ranges: Mapping[str, Range]

    def draw(self, rng: np.random.Generator) -> Expression:
        """One expression; the same number of draws for every class (fixed stream layout)."""
        u, flip = rng.random(len(REST)).tolist(), rng.random(len(REST)).tolist()
        values = {}
        for (name, rest), uk, fk in zip(REST.items(), u, flip):
            r = self.ranges.get(name, rest)
            value = r.low + (r.high - r.low) * uk
            values[name] = -value if (r.either_sign and fk < 0.5) else value
        return Expression(**values)


# Dedicated and neutral differ only by slightly lowered, knitted brows and a steady
# forward gaze (neutral's gaze wanders): the pair a CNN confuses, as in the paper.
EXPRESSIONS: dict[str, ExpressionSpec] = {
    "happy": ExpressionSpec(("mouth",), {
        "mouth_curve": Range(0.7, 1.3), "mouth_open": Range(0.25, 0.7), "mouth_width": Range(1.1, 1.3)}),
    "dedicated": ExpressionSpec(("brows", "eyes"), {
        "brow_raise": Range(-0.065, -0.025), "brow_knit": Range(0.02, 0.05), "brow_tilt": Range(-0.06, -0.02),
        "gaze_x": Range(-0.1, 0.1), "gaze_y": Range(-0.1, 0.05), "eye_open": Range(0.85, 1.0)}),
    "neutral": ExpressionSpec(("brows", "eyes", "mouth"), {}),
    "confused": ExpressionSpec(("brows", "mouth"), {
        "brow_asym": Range(0.05, 0.09, either_sign=True), "brow_knit": Range(0.02, 0.05),
        "mouth_skew": Range(0.07, 0.14, either_sign=True), "mouth_curve": Range(-0.25, 0.0)}),
    "tired": ExpressionSpec(("eyes",), {
        "eye_open": Range(0.08, 0.4), "gaze_y": Range(0.2, 0.6)}),
    "bored": ExpressionSpec(("eyes", "mouth"), {
        "gaze_x": Range(0.7, 1.0, either_sign=True), "gaze_y": Range(-0.6, 0.2), "eye_open": Range(0.6, 0.8),
        "mouth_curve": Range(-0.5, -0.2)}),
    "angry": ExpressionSpec(("brows", "mouth"), {
        "brow_raise": Range(-0.1, -0.06), "brow_knit": Range(0.05, 0.09), "brow_tilt": Range(-0.13, -0.07),
        "mouth_curve": Range(-0.4, -0.15), "mouth_width": Range(0.75, 0.9)}),
    "disgust": ExpressionSpec(("nose", "mouth"), {
        "nose_wrinkle": Range(0.6, 1.0), "mouth_curve": Range(-0.5, -0.2),
        "mouth_skew": Range(0.05, 0.1, either_sign=True), "mouth_open": Range(0.1, 0.3)}),
    "fear": ExpressionSpec(("brows", "eyes", "mouth"), {
        "brow_raise": Range(0.05, 0.09), "brow_tilt": Range(0.06, 0.12), "eye_open": Range(1.25, 1.45),
        "mouth_open": Range(0.3, 0.6), "mouth_width": Range(1.05, 1.2), "mouth_curve": Range(-0.3, -0.05)}),
    "sad": ExpressionSpec(("brows", "mouth"), {
        "brow_tilt": Range(0.08, 0.14), "brow_raise": Range(0.0, 0.03), "mouth_curve": Range(-0.9, -0.45)}),
    "surprise": ExpressionSpec(("brows", "eyes", "mouth"), {
        "brow_raise": Range(0.07, 0.11), "eye_open": Range(1.3, 1.5), "mouth_open": Range(0.6, 1.0),
        "mouth_width": Range(0.5, 0.7)}),
}


def resolve_classes(classes: str | Sequence[str]) -> list[str]:
    """``"scfed"``, ``"basic"`` or a list of names from ``EXPRESSIONS``, as a list of names."""
    if isinstance(classes, str):
        presets = {"scfed": SCFED_CLASSES, "basic": BASIC_CLASSES}
        if classes not in presets:
            raise ValueError(f"classes must be 'scfed', 'basic' or a list of names, got {classes!r}")
        return list(presets[classes])
    names = list(classes)
    unknown = [c for c in names if c not in EXPRESSIONS]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"classes must be at least two distinct names from {sorted(EXPRESSIONS)}, got {names}")
    return names


# --------------------------------------------------------------------------------------
# Nuisances.
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Identity and colours.
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Geometry: shapes in face coordinates, projected to pixels all at once.
# --------------------------------------------------------------------------------------

# A shape in face coordinates: (kind, u, v, depth, color, width); kind is "polygon" or
# "line" (width in pixels); depth is the part's protrusion above the face surface, or
# None for a silhouette (head outline, hair, body, occluders), which does not yaw.
Shape = tuple
# A drawing operation in pixels: (kind, [x0, y0, x1, y1, ...], color, width).
Op = tuple


def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


_COS12, _SIN12 = _circle(12)
_COS24, _SIN24 = _circle(24)
_T7 = np.linspace(-1.0, 1.0, 7)
_T9 = np.linspace(-1.0, 1.0, 9)
_INNER7 = (1 - _T7) / 2  # along a brow: 1 at the inner end, 0 at the outer end
_LIP_PROFILE = np.sqrt(1 - _T9 * _T9)  # lip thickness and gap vanish at the corners
_BULGE9 = 1 - _T9 * _T9  # lid height across the eye


@dataclass(frozen=True)
class Pose:
    """Face coordinates (u, v in [-1, 1] across and down the head) -> pixels.

    A point with a depth is first turned by the yaw about the head's vertical axis,
    using its height above that axis' plane (a flattened ellipsoid, plus the depth);
    then every point is rolled, scaled and shifted.
    """

    cx: float
    cy: float
    rx: float  # head half-width in pixels
    ry: float  # head half-height in pixels
    roll: float  # radians
    yaw: float

    @classmethod
    def of(cls, identity: Identity, nz: Nuisances, size: int) -> Pose:
        return cls(cx=size * (0.5 + nz.shift_x), cy=size * (0.5 + nz.shift_y),
                   rx=size * identity.face_width * nz.scale, ry=size * identity.face_height * nz.scale,
                   roll=math.radians(nz.roll_deg), yaw=math.radians(nz.yaw_deg))

    def project(self, shapes: list[Shape]) -> list[Op]:
        if not shapes:
            return []
        lengths = [len(sh[1]) for sh in shapes]
        u = np.concatenate([sh[1] for sh in shapes])
        v = np.concatenate([sh[2] for sh in shapes])
        depth = np.repeat([np.nan if sh[3] is None else sh[3] for sh in shapes], lengths)
        z = np.sqrt(np.maximum(1.0 - 0.8 * u * u - 0.3 * v * v, 0.05)) + depth
        u = np.where(np.isnan(depth), u, u * math.cos(self.yaw) + z * math.sin(self.yaw))
        x, y = self.rx * u, self.ry * v
        cos_r, sin_r = math.cos(self.roll), math.sin(self.roll)
        xy = np.empty((len(u), 2))
        xy[:, 0] = self.cx + cos_r * x - sin_r * y
        xy[:, 1] = self.cy + sin_r * x + cos_r * y
        flat = xy.ravel().tolist()
        ops, start = [], 0
        for sh, n in zip(shapes, lengths):
            ops.append((sh[0], flat[start:start + 2 * n], sh[4], sh[5]))
            start += 2 * n
        return ops


# Eye and brow outlines that do not depend on the sample (face coordinates, centred).
_EYE_HALF_W, _EYE_HALF_H = 0.19, 0.075  # lid opening half-width (u) and relaxed upper-lid height (v)
_SOCKET_U, _SOCKET_V = 1.35 * _EYE_HALF_W * _COS24, -0.02 + 0.16 * _SIN24
_OPENING_U = _EYE_HALF_W * np.concatenate([_T9, _T9[::-1]])  # along the upper lid, back along the lower
_LASH_U, _LASH_BULGE = _EYE_HALF_W * _T7, 1 - (_T7 / 1.05) ** 2
_BROW_U = 0.22 * _T7
_BROW_ARCH = 0.035 * (1 - _T7 * _T7)
_BROW_TAPER = 0.5 * (1.0 - 0.45 * (1 - _INNER7) ** 2)  # half-thickness, thinning to the outer end


def _eyes(idn: Identity, ex: Expression, iris_ru: float, iris_rv: float, px: float) -> list[Shape]:
    """Both eyes: orbital shading (the part's extent), the white, iris and pupil clipped to
    the lid opening, and the lash line.

    Both eyes share their shape (same lids, same gaze), so it is computed once, centred,
    and shifted to each eye. Clipping: each iris point is clamped between the lid curves
    at its position across the eye, exact vertically and close enough at the corners.
    """
    lift, drop = ex.eye_open * _EYE_HALF_H, 0.75 * _EYE_HALF_H
    ev = idn.eye_v
    gaze_u = ex.gaze_x * (_EYE_HALF_W - iris_ru) * 0.85
    gaze_v = ev + ex.gaze_y * _EYE_HALF_H * 0.5

    def disc(scale: float) -> tuple[np.ndarray, np.ndarray]:  # centred iris or pupil outline
        t = np.clip((gaze_u + scale * iris_ru * _COS12) / _EYE_HALF_W, -1.0, 1.0)
        bulge = 1 - t * t
        v = np.minimum(np.maximum(gaze_v + scale * iris_rv * _SIN12, ev - lift * bulge), ev + drop * bulge)
        return _EYE_HALF_W * t, v

    (iris_u, iris_v), (pupil_u, pupil_v) = disc(1.0), disc(0.45)
    socket_v = ev + _SOCKET_V
    opening_v = ev + np.concatenate([-lift * _BULGE9, drop * _BULGE9])
    lash_v = ev - 0.005 - lift * _LASH_BULGE
    lid, lash_width = _shade(idn.skin, 0.86), max(1, round(1.3 * px))
    shapes = []
    for eu in (idn.eye_u, -idn.eye_u):
        shapes += [
            ("polygon", eu + _SOCKET_U, socket_v, 0.0, lid, 0),
            ("polygon", eu + _OPENING_U, opening_v, 0.0, (245, 245, 240), 0),
            ("polygon", eu + iris_u, iris_v, 0.0, idn.iris, 0),
            ("polygon", eu + pupil_u, pupil_v, 0.0, (15, 12, 10), 0),
            ("line", eu + _LASH_U, lash_v, 0.0, (35, 25, 20), lash_width),
        ]
    return shapes


def _brows(idn: Identity, ex: Expression) -> list[Shape]:
    """Both brows: bands tapering from the inner end to the outer end; mirror images
    except for ``brow_asym``, which raises the one at +u and lowers the other."""
    u = (idn.eye_u - 0.02) + _BROW_U - ex.brow_knit * _INNER7  # the brow at +u
    v = (idn.eye_v - idn.brow_gap - ex.brow_raise) - _BROW_ARCH + (0.5 * ex.brow_knit - ex.brow_tilt) * _INNER7
    half = idn.brow_thickness * _BROW_TAPER
    band_u = np.concatenate([u, u[::-1]])
    band_v = np.concatenate([v - half, (v + half)[::-1]])
    color = _shade(idn.hair, 0.6)  # brows are darker than the hair: they read on any skin
    return [("polygon", side * band_u, band_v - side * ex.brow_asym, 0.0, color, 0) for side in (1, -1)]


def _mouth(idn: Identity, ex: Expression, px: float) -> list[Shape]:
    """Lips around a mid-line whose corners rise with ``mouth_curve``; an open mouth shows a
    dark gap, and upper teeth when it also smiles."""
    u = idn.mouth_half_width * ex.mouth_width * _T9
    mid = idn.mouth_v - 0.12 * ex.mouth_curve * _T9 * _T9 - 0.12 * ex.mouth_skew * _T9
    gap = 0.16 * ex.mouth_open * _LIP_PROFILE
    top, bottom = mid - gap / 2, mid + gap / 2
    around = np.concatenate([u, u[::-1]])
    shapes = [("polygon", around, np.concatenate([top - 0.035 * _LIP_PROFILE, (bottom + 0.045 * _LIP_PROFILE)[::-1]]),
               0.0, idn.lips, 0)]
    if ex.mouth_open > 0.08:
        shapes.append(("polygon", around, np.concatenate([top, bottom[::-1]]), 0.0, (60, 20, 25), 0))
        if ex.mouth_curve > 0.3 and ex.mouth_open > 0.2:
            shapes.append(("polygon", np.concatenate([u[1:-1], u[-2:0:-1]]),
                           np.concatenate([top[1:-1], (top + 0.35 * gap)[-2:0:-1]]), 0.0, (235, 232, 220), 0))
    shapes.append(("line", u, mid, 0.0, _shade(idn.lips, 0.6), max(1, round(px))))
    return shapes


_BRIDGE_U, _BRIDGE_V = np.array([0.03, 0.05, 0.07]), np.array([-0.02, 0.1, 0.2])
_NOSTRIL_U, _NOSTRIL_V = np.array([-0.11, -0.06, 0.0, 0.06, 0.11]), np.array([0.2, 0.26, 0.27, 0.26, 0.2])
_WRINKLE_U = 0.11 * _T7


def _nose(idn: Identity, px: float) -> list[Shape]:
    """Bridge shading and nostril arc; they stand out of the face, so yaw moves them most."""
    color, width = _shade(idn.skin, 0.72), max(1, round(px))
    return [("line", _BRIDGE_U, _BRIDGE_V, 0.2, color, width), ("line", _NOSTRIL_U, _NOSTRIL_V, 0.2, color, width)]


def _wrinkles(idn: Identity, ex: Expression, px: float) -> list[Shape]:
    """Disgust's wrinkles: up to three short arcs across the nose bridge."""
    count = int(round(3 * ex.nose_wrinkle))
    sag = 0.02 * (_T7 * _T7)
    return [("line", _WRINKLE_U, v + sag, 0.1, _shade(idn.skin, 0.62), max(1, round(px)))
            for v in (-0.02, 0.04, 0.10)[:count]]


_JAW = 1.0 - 0.12 * np.clip(_SIN24, 0, None)  # the head narrows towards the chin
_HAIR_TOP = np.linspace(np.pi * 1.02, np.pi * 1.98, 12)
_FRINGE_U = np.linspace(0.98, -0.98, 7)


def _head(idn: Identity) -> list[Shape]:
    """Shoulders, neck, head and hair cap: silhouettes."""
    neck_skin = _shade(idn.skin, 0.85)
    return [
        ("polygon", 2.2 * _COS24, 1.95 + 0.75 * _SIN24, None, idn.shirt, 0),
        ("polygon", np.array([-0.42, 0.42, 0.48, -0.48]), np.array([0.6, 0.6, 1.6, 1.6]), None, neck_skin, 0),
        ("polygon", _COS24 * _JAW, _SIN24, None, idn.skin, 0),
        ("polygon", np.concatenate([1.07 * np.cos(_HAIR_TOP), _FRINGE_U]),
         np.concatenate([1.07 * np.sin(_HAIR_TOP), idn.fringe_v + 0.03 * np.cos(5 * _FRINGE_U)]), None, idn.hair, 0),
    ]


_BOX_U, _BOX_V = np.array([-1.0, 1.0, 1.0, -1.0]), np.array([-1.0, -1.0, 1.0, 1.0])


def _occluder(kind: str, draws: np.ndarray, skin: Color) -> list[Shape]:
    """A hand raised to the chin, a book or a pen in front of the lower face."""
    if kind == "none":
        return []
    angle = (draws[0] - 0.5) * 0.9  # radians from upright
    ca, sa = math.cos(angle), math.sin(angle)

    def box(cu, cv, half_u, half_v, color):  # a rectangle turned by ``angle``
        du, dv = half_u * _BOX_U, half_v * _BOX_V
        return ("polygon", cu + du * ca - dv * sa, cv + du * sa + dv * ca, None, color, 0)

    if kind == "hand":
        cu, cv, size = 1.4 * draws[1] - 0.7, 0.8 + 0.25 * draws[2], 0.8 + 0.4 * draws[3]
        color = _shade(skin, 0.93 + 0.1 * draws[4])
        shapes = [("polygon", cu + 0.3 * size * _COS24, cv + 0.24 * size * _SIN24, None, color, 0)]
        for k, offset in enumerate((-0.18, -0.06, 0.06, 0.18)):  # four fingers, the middle two longer
            length = size * (0.22 + 0.06 * (k in (1, 2)))
            shapes.append(box(cu + size * offset * ca + length * sa, cv - length * ca - 0.1 * size,
                              0.05 * size, length, color))
        return shapes
    color = _rgb(*(60 + 180 * draws[4:7]))
    if kind == "book":
        return [box(2.0 * draws[1] - 1.0, 0.75 + 0.35 * draws[2], 0.3 + 0.2 * draws[3], 0.2 + 0.1 * draws[2], color)]
    return [box(1.2 * draws[1] - 0.6, 0.55 + 0.4 * draws[2], 0.035, 0.45 + 0.2 * draws[3], color)]  # pen


def _clutter(draws: np.ndarray, count: int, strength: float, wall: Color, size: int) -> list[Op]:
    """Classroom background in pixels: boards, windows and desks (boxes), other students' heads.

    ``draws`` (items, 9): kind, x, y, width, height, unused, r, g, b, each in [0, 1).
    """
    d = draws[:count]
    wall = np.asarray(wall, np.float64)
    colors = np.rint(wall + strength * (255 * d[:, 6:9] - wall)).astype(int).tolist()
    x0, y0 = size * (1.2 * d[:, 1] - 0.1), size * (1.2 * d[:, 2] - 0.1)
    w, h = size * (0.15 + 0.5 * d[:, 3]), size * (0.1 + 0.5 * d[:, 4])
    boxes = np.stack([x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h], axis=1).tolist()
    heads = np.stack([x0[:, None] + w[:, None] / 3 * _COS12, y0[:, None] + h[:, None] / 2 * _SIN12],
                     axis=2).reshape(count, 24).tolist()
    return [("polygon", box if kind < 0.6 else head, tuple(color), 0)
            for kind, box, head, color in zip(d[:, 0].tolist(), boxes, heads, colors)]


def _paint(draw: ImageDraw.ImageDraw, ops: list[Op], fill=None) -> None:
    """Rasterise ``ops`` in order; ``fill`` overrides their colours (to draw a mask)."""
    for kind, xy, color, width in ops:
        if kind == "polygon":
            draw.polygon(xy, fill=color if fill is None else fill)
        else:
            draw.line(xy, fill=color if fill is None else fill, width=width)


# --------------------------------------------------------------------------------------
# Photometry, on channel-planar float arrays (3, H, W).
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# The data set.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    label: int
    identity: Identity
    expression: Expression
    nuisances: Nuisances
    occluder_draws: np.ndarray
    clutter_draws: np.ndarray
    noise_offset: np.ndarray


class SyntheticClassroomFaces(Dataset):
    """``n`` synthetic classroom faces; ``ds[i]`` is ``(image, label)``, ``ds.mask(i)`` its key region.

    Args:
        n: number of samples. Sample ``i`` has label ``i % len(classes)`` (balanced, and
            the same whatever ``n``) and is drawn from the random streams of ``(seed, i)``
            alone: the same seed gives the same bytes, in any access order.
        seed: non-negative int.
        transform: applied to the PIL image (e.g. ``train_transform()``); None gives PIL RGB.
        image_size: side in pixels (>= 32); 112 is what the model's backbone sees.
        classes: ``"scfed"`` (happy, dedicated, neutral, confused, tired, bored),
            ``"basic"`` (the seven FER2013 expressions) or a list of ``EXPRESSIONS`` names.
        nuisance: a global strength in [0, 1] for every nuisance, a dict of per-nuisance
            strengths (missing ones at 1) or a ``NuisanceStrengths``.
    """

    def __init__(self, n: int, seed: int = 0, transform=None, image_size: int = 112,
                 classes: str | Sequence[str] = "scfed",
                 nuisance: float | Mapping[str, float] | NuisanceStrengths = 1.0):
        if n < 0 or seed < 0 or image_size < 32:
            raise ValueError(f"need n >= 0, seed >= 0 and image_size >= 32; got {n}, {seed}, {image_size}")
        self.n, self.seed, self.transform, self.image_size = int(n), int(seed), transform, int(image_size)
        self.classes = resolve_classes(classes)
        self.strengths = NuisanceStrengths.coerce(nuisance)
        self.targets = [i % len(self.classes) for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"SyntheticClassroomFaces(n={self.n}, seed={self.seed}, image_size={self.image_size}, "
                f"classes={self.classes}, nuisance={self.strengths})")

    def __getitem__(self, i: int):
        image = self.render(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[self._index(i)]

    def key_parts(self, label: int) -> tuple[str, ...]:
        """The parts (of ``KEY_PARTS``) that carry class ``label``'s cue."""
        return EXPRESSIONS[self.classes[label]].key_parts

    def nuisances(self, i: int) -> dict:
        """The nuisance values drawn for sample ``i`` (see ``Nuisances``)."""
        return asdict(self._sample(i).nuisances)

    def expression(self, i: int) -> dict:
        """The expression parameters drawn for sample ``i`` (see ``Expression``)."""
        return asdict(self._sample(i).expression)

    def render(self, i: int, hide_key_parts: bool = False) -> Image.Image:
        """Sample ``i`` as a PIL RGB image, without ``transform``.

        ``hide_key_parts=True`` leaves out the parts that carry the class cue (skin
        shows instead) and changes nothing else: the pixels that differ from the full
        image are the mask's, less any that an occluder covers.
        """
        sample = self._sample(i)
        layers = self._layers(sample)
        image = Image.new("RGB", (self.image_size,) * 2, sample.identity.wall)
        draw = ImageDraw.Draw(image)
        _paint(draw, layers["background"])
        _paint(draw, layers["face"])
        if not hide_key_parts:
            _paint(draw, layers["key"])
        _paint(draw, layers["occluder"])
        return _photometry(image, sample.nuisances, sample.noise_offset)

    def mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) key-region mask of sample ``i``: the pixels of the parts that carry
        its class cue, including any that an occluder hides (the cue is still there)."""
        return self._rasterise(self._layers(self._sample(i))["key"])

    def occluder_mask(self, i: int) -> np.ndarray:
        """Boolean (H, W) mask of the occluder's pixels (all False when there is none)."""
        return self._rasterise(self._layers(self._sample(i))["occluder"])

    # -- internals ----------------------------------------------------------------------

    def _index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return i % self.n

    def _sample(self, i: int) -> _Sample:
        i = self._index(i)
        label = self.targets[i]
        # Identity and expression take a fixed number of draws whatever the class, and
        # the nuisances come after them: nuisance strengths never change the face.
        rng = np.random.default_rng([self.seed, i])
        identity = _draw_identity(rng)
        expression = EXPRESSIONS[self.classes[label]].draw(rng)
        nuisances, occluder_draws, clutter_draws, noise_offset = _draw_nuisances(rng, self.strengths, self.image_size)
        return _Sample(label, identity, expression, nuisances, occluder_draws, clutter_draws, noise_offset)

    def _layers(self, sample: _Sample) -> dict[str, list[Op]]:
        """Pixel drawing operations in painting order: background, face (all but the key
        parts), key parts, occluder."""
        idn, ex, nz, size = sample.identity, sample.expression, sample.nuisances, self.image_size
        pose = Pose.of(idn, nz, size)
        px = size / 112  # stroke widths and the iris are set for 112 pixels
        iris_ru, iris_rv = 3.2 * px / pose.rx, 3.2 * px / pose.ry
        parts = {
            "brows": _brows(idn, ex),
            "eyes": _eyes(idn, ex, iris_ru, iris_rv, px),
            "nose": _wrinkles(idn, ex, px),
            "mouth": _mouth(idn, ex, px),
        }
        key = EXPRESSIONS[self.classes[sample.label]].key_parts
        face = _head(idn) + _nose(idn, px) + [sh for part in KEY_PARTS if part not in key for sh in parts[part]]
        key_shapes = [sh for part in KEY_PARTS if part in key for sh in parts[part]]
        occluder = _occluder(nz.occluder, sample.occluder_draws, idn.skin)
        ops = pose.project(face + key_shapes + occluder)
        n_face, n_key = len(face), len(key_shapes)
        return {
            "background": _clutter(sample.clutter_draws, nz.clutter_items, self.strengths.clutter, idn.wall, size),
            "face": ops[:n_face],
            "key": ops[n_face:n_face + n_key],
            "occluder": ops[n_face + n_key:],
        }

    def _rasterise(self, ops: list[Op]) -> np.ndarray:
        canvas = Image.new("L", (self.image_size,) * 2, 0)
        _paint(ImageDraw.Draw(canvas), ops, fill=255)
        return np.asarray(canvas) > 0


def split_seed(seed: int, split: str) -> int:
    """The seed of one split, derived from ``seed``: distinct random streams per split."""
    index = ("train", "val", "test").index(split)
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synthetic_splits(num_train: int = 3000, num_val: int = 600, num_test: int = 600, seed: int = 0,
                     **kwargs) -> dict[str, SyntheticClassroomFaces]:
    """``{"train", "val", "test"}`` data sets with seeds derived by ``split_seed`` (no shared
    samples); ``kwargs`` go to every ``SyntheticClassroomFaces`` (set ``.transform`` per
    split afterwards, e.g. ``train_transform()`` for train only)."""
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    return {split: SyntheticClassroomFaces(n, seed=split_seed(seed, split), **kwargs) for split, n in sizes.items()}
