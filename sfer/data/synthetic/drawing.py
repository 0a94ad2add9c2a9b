"""Face drawing: shapes in face coordinates, projected to pixels all at once, then rasterised."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from .expressions import KEY_PARTS, Expression
from .identity import Color, Identity, _rgb, _shade
from .nuisances import Nuisances

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


def face_ops(idn: Identity, ex: Expression, key_parts: tuple[str, ...], pose: Pose, px: float,
             occluder: str, occluder_draws: np.ndarray) -> tuple[list[Op], list[Op], list[Op]]:
    """One student's drawing operations in pixels, in painting order: the face (head, nose and
    the parts at rest), the key parts (those in ``key_parts``) and the occluder.

    ``px`` scales stroke widths and the iris, which are set for a 112-pixel image.
    """
    iris_ru, iris_rv = 3.2 * px / pose.rx, 3.2 * px / pose.ry
    parts = {
        "brows": _brows(idn, ex),
        "eyes": _eyes(idn, ex, iris_ru, iris_rv, px),
        "nose": _wrinkles(idn, ex, px),
        "mouth": _mouth(idn, ex, px),
    }
    face = _head(idn) + _nose(idn, px) + [sh for part in KEY_PARTS if part not in key_parts for sh in parts[part]]
    key_shapes = [sh for part in KEY_PARTS if part in key_parts for sh in parts[part]]
    ops = pose.project(face + key_shapes + _occluder(occluder, occluder_draws, idn.skin))
    n_face, n_key = len(face), len(key_shapes)
    return ops[:n_face], ops[n_face:n_face + n_key], ops[n_face + n_key:]


def _paint(draw: ImageDraw.ImageDraw, ops: list[Op], fill=None) -> None:
    """Rasterise ``ops`` in order; ``fill`` overrides their colours (to draw a mask)."""
    for kind, xy, color, width in ops:
        if kind == "polygon":
            draw.polygon(xy, fill=color if fill is None else fill)
        else:
            draw.line(xy, fill=color if fill is None else fill, width=width)
