"""Synthetic classroom frames: rows of drawn students, with each face's box, expression and mask.

The paper built SCFED by running MTCNN over high-resolution classroom frames (section
4.1). A scene here is such a frame, drawn with the face machinery of
``sfer.data.synthetic`` and known to the pixel:

* **Rows.** Students sit in ``len(per_row)`` rows, the front row at the bottom of the
  frame. Each row back is ``depth_ratio`` times smaller (perspective), higher in the
  frame and staggered by half a seat, so that the heads behind show between the heads
  in front; a desk runs in front of every row.
* **Distance.** The rows are painted back to front and the frame is blurred after each
  row, so a face ``r`` rows back ends up with ``r * row_blur_px`` pixels of blur in
  quadrature; fewer pixels on a far face do the rest.
* **Light.** A window on one side: brightness falls off across the room, and a soft
  vertical ramp darkens the ceiling or the floor.
* **Occluders.** With probability ``occlusion`` a student has a hand at the chin, a
  held book or pen (the single-face occluders), or an open laptop on the desk that
  hides the chin and mouth.
* **Faces.** Identity and expression come from the same draws as the training faces
  (``EXPRESSIONS``); roll and yaw are at the training nuisance ranges.

Every student records its ground-truth ``box`` (the head outline's bounding box), its
``square`` (the square that frames the face the way a training image does: a 112-pixel
training face is that square resized), its five landmarks in MTCNN's order and its
key-region mask. The same seed gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .synthetic import EXPRESSIONS, Pose, resolve_classes
from .synthetic.drawing import _COS24, _JAW, _SIN24, _paint, face_ops
from .synthetic.identity import _draw_identity, _rgb, _shade

SCENE_OCCLUDERS = ("none", "hand", "book", "pen", "laptop")


@dataclass(frozen=True)
class Student:
    """One drawn student: where the face is, what it shows, where its cue is drawn."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1: bounding box of the head outline
    square: tuple[float, float, float, float]  # the training framing: this square is a 112-pixel training face
    label: int
    expression: str
    row: int  # 0 is the front row
    landmarks: np.ndarray  # (5, 2) x, y: eyes, nose, mouth corners, the image's left one first (MTCNN's order)
    occluder: str  # one of SCENE_OCCLUDERS
    mask_origin: tuple[int, int]  # x, y of mask[0, 0] in the frame
    mask: np.ndarray  # (h, w) bool key-region mask over ``square`` (clipped to the frame)


@dataclass(frozen=True)
class Scene:
    """A classroom frame and its students, front row first, left to right within a row."""

    image: Image.Image
    students: list[Student]
    classes: list[str]
    seed: int

    def key_mask(self, k: int) -> np.ndarray:
        """Student ``k``'s key-region mask over the whole frame, (H, W) bool."""
        student = self.students[k]
        out = np.zeros((self.image.height, self.image.width), bool)
        x, y = student.mask_origin
        h, w = student.mask.shape
        out[y:y + h, x:x + w] = student.mask
        return out

    def counts(self) -> dict[str, int]:
        """How many students show each class, in class order."""
        return {name: sum(s.label == i for s in self.students) for i, name in enumerate(self.classes)}


def _face_landmarks(pose: Pose, identity, expression) -> np.ndarray:
    """The five points MTCNN reports, in pixels: eye centres, nose tip, mouth corners."""
    mouth_u = identity.mouth_half_width * expression.mouth_width
    corner_v = [identity.mouth_v - 0.12 * expression.mouth_curve + 0.12 * side * expression.mouth_skew
                for side in (1, -1)]  # the corner at -u (image left) and +u; see the mouth's mid-line
    u = np.array([-identity.eye_u, identity.eye_u, 0.0, -mouth_u, mouth_u])
    v = np.array([identity.eye_v, identity.eye_v, 0.22, corner_v[0], corner_v[1]])
    depth = np.array([0.0, 0.0, 0.2, 0.0, 0.0])
    shapes = [("line", u[k:k + 1], v[k:k + 1], depth[k], None, 1) for k in range(5)]
    return np.array([op[1] for op in pose.project(shapes)], dtype=np.float64)  # (5, 2)


def _wall(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, window_left: bool):
    """The back wall: a window on the lit side, a board, posters and a clock."""
    u = rng.random(32)
    grey = 175 + 50 * u[0]
    wall = _rgb(grey + 20 * (u[1] - 0.5), grey + 10 * (u[2] - 0.5), grey - 25 * u[3])
    draw.rectangle((0, 0, width, height), fill=wall)
    draw.rectangle((0, 0.55 * height, width, height), fill=_shade(wall, 0.8))  # wainscot
    wx0 = (0.03 + 0.05 * u[4]) * width if window_left else (0.72 + 0.05 * u[4]) * width
    wx1, wy0, wy1 = wx0 + (0.18 + 0.05 * u[5]) * width, 0.05 * height, (0.38 + 0.06 * u[6]) * height
    draw.rectangle((wx0, wy0, wx1, wy1), fill=(235, 235, 230))
    draw.rectangle((wx0 + 6, wy0 + 6, wx1 - 6, wy1 - 6), fill=_rgb(170 + 40 * u[7], 205 + 30 * u[7], 235))
    draw.line(((wx0 + wx1) / 2, wy0, (wx0 + wx1) / 2, wy1), fill=(235, 235, 230), width=5)
    board_x0 = 0.35 * width if window_left else 0.08 * width
    board = (40, 70 + 20 * int(u[8] > 0.5), 55)
    draw.rectangle((board_x0, 0.06 * height, board_x0 + 0.3 * width, 0.33 * height), fill=board)
    for k in range(3):  # posters
        px0, py0 = width * u[9 + k], height * (0.05 + 0.25 * u[12 + k])
        color = _rgb(*(60 + 190 * u[15 + 3 * k:18 + 3 * k]))
        draw.rectangle((px0, py0, px0 + width * (0.04 + 0.04 * u[24 + k]), py0 + height * (0.06 + 0.06 * u[27 + k])),
                       fill=color)
    cx, cy, r = board_x0 + width * (0.36 + 0.06 * u[30]), 0.04 * height + 0.03 * width, 0.025 * width
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(245, 245, 245), outline=(40, 40, 40), width=3)
    return wall


def _lighting(width: int, height: int, window_left: bool, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 1) multiplicative field: bright by the window, dim across the room."""
    u = rng.random(3)
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None]
    across = (0.25 + 0.25 * u[0]) * (-x if window_left else x)
    return (0.95 + 0.15 * u[1]) * (1.0 + across) * (1.0 + (0.1 * u[2] - 0.05) * y)


def classroom_scene(seed: int = 0, width: int = 1280, height: int = 720, per_row: Sequence[int] = (4, 5, 6),
                    classes: str | Sequence[str] = "scfed", occlusion: float = 0.3, row_blur_px: float = 0.7,
                    depth_ratio: float = 0.72, noise_sigma: float = 3.0) -> Scene:
    """One synthetic classroom frame with ``sum(per_row)`` students (``per_row[0]`` in front).

    Args:
        seed: non-negative int; the same seed gives the same bytes.
        width, height: frame size in pixels (at least 320 x 240). Face sizes follow the height.
        per_row: students in each row, front row first (1 to 12 per row, 1 to 6 rows).
        classes: as for ``SyntheticClassroomFaces``; labels are balanced over the room.
        occlusion: probability that a student's face is partly hidden.
        row_blur_px: the blur added by each row back (Gaussian sigma, pixels).
        depth_ratio: how much smaller each row back is.
        noise_sigma: sensor noise (of 255).
    """
    if seed < 0 or width < 320 or height < 240:
        raise ValueError(f"need seed >= 0 and a frame of at least 320 x 240; got seed {seed}, {width} x {height}")
    per_row = [int(n) for n in per_row]
    if not 1 <= len(per_row) <= 6 or not all(1 <= n <= 12 for n in per_row):
        raise ValueError(f"per_row must hold 1 to 6 rows of 1 to 12 students, got {per_row}")
    if not 0.0 <= occlusion <= 1.0 or not 0.3 <= depth_ratio <= 1.0 or row_blur_px < 0 or noise_sigma < 0:
        raise ValueError("need 0 <= occlusion <= 1, 0.3 <= depth_ratio <= 1, row_blur_px >= 0, noise_sigma >= 0")
    names = resolve_classes(classes)
    rng = np.random.default_rng([seed, 1309])
    window_left = bool(rng.random() < 0.5)
    total = sum(per_row)
    labels = rng.permutation(np.arange(total) % len(names)).tolist()  # balanced over the room

    # Square sides (the training framing) and face-centre heights per row, front to back.
    sides = [0.24 * height * depth_ratio ** r for r in range(len(per_row))]
    centres = [0.68 * height]
    for r in range(1, len(per_row)):
        centres.append(centres[-1] - 0.4 * sides[r - 1] - 0.2 * sides[r])

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    _wall(draw, rng, width, height, window_left)
    first_seat = np.cumsum([0] + per_row).tolist()  # seat k of row r: first_seat[r] + j
    students: list[Student] = []
    blur_done = row_blur_px * (len(per_row) - 1)
    for r in reversed(range(len(per_row))):  # back to front: nearer rows cover farther ones
        side, n = sides[r], per_row[r]
        spacing = width / n
        stagger = 0.25 * spacing * (-1) ** r  # heads behind show between the heads in front
        for j in range(n):
            k = first_seat[r] + j
            cx = (j + 0.5) * spacing + stagger
            students.append(_draw_student(draw, np.random.default_rng([seed, 1309, k]), names[labels[k]], labels[k],
                                          r, cx, centres[r], side, spacing, occlusion, width, height))
        desk_top = centres[r] + 0.55 * side
        wood = _rgb(150 + 30 * rng.random(), 105 + 20 * rng.random(), 65)
        desk_bottom = height if r == 0 else desk_top + 0.9 * side  # the front panel hides the bodies
        draw.rectangle((0, desk_top, width, desk_bottom), fill=_shade(wood, 0.75))
        draw.rectangle((0, desk_top, width, desk_top + 0.3 * side), fill=wood)
        draw.rectangle((0, desk_top, width, desk_top + 0.05 * side), fill=_shade(wood, 1.15))
        # Blur what is painted so far, so that row r ends with r * row_blur_px in quadrature.
        blur_next = row_blur_px * max(r - 1, 0)
        sigma = math.sqrt(max(blur_done ** 2 - blur_next ** 2, 0.0)) if r > 0 else 0.0
        if sigma > 0:
            image = image.filter(ImageFilter.GaussianBlur(sigma))
            draw = ImageDraw.Draw(image)
        blur_done = blur_next

    field = _lighting(width, height, window_left, rng)
    pixels = np.asarray(image, dtype=np.float32) * field
    if noise_sigma:
        pixels += noise_sigma * rng.standard_normal(pixels.shape, dtype=np.float32)
    frame = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    students.sort(key=lambda s: (s.row, s.box[0]))
    return Scene(frame, students, names, int(seed))


def _draw_student(draw: ImageDraw.ImageDraw, g: np.random.Generator, name: str, label: int, row: int,
                  seat_x: float, row_y: float, side: float, spacing: float, occlusion: float,
                  width: int, height: int) -> Student:
    """Paint one student (face, key parts, occluder) around a seat and return its ground truth.

    ``side`` is the row's training-square side; ``g`` the student's own random stream.
    """
    identity = _draw_identity(g)
    expression = EXPRESSIONS[name].draw(g)
    u = g.random(10).tolist()
    occluder_draws = g.random(8)
    scale = 1.0 + 0.06 * (2 * u[0] - 1)
    cx = min(max(seat_x + 0.12 * spacing * (2 * u[1] - 1), 0.6 * side), width - 0.6 * side)
    cy = row_y + 0.05 * side * (2 * u[2] - 1)
    pose = Pose(cx=cx, cy=cy, rx=side * identity.face_width * scale, ry=side * identity.face_height * scale,
                roll=math.radians(8.0 * (2 * u[3] - 1)), yaw=math.radians(10.0 * (2 * u[4] - 1)))
    occluder = "none" if u[5] >= occlusion else SCENE_OCCLUDERS[1 + int(u[6] * 4)]
    face, key, held = face_ops(identity, expression, EXPRESSIONS[name].key_parts, pose, side / 112,
                               occluder if occluder != "laptop" else "none", occluder_draws)
    _paint(draw, face + key + held)
    if occluder == "laptop":  # an open lid on the desk, its top edge between the mouth and the chin
        top = cy + pose.ry * (0.35 + 0.4 * u[7])
        half = side * (0.3 + 0.1 * u[8])
        draw.rectangle((cx - half, top, cx + half, row_y + 0.75 * side), fill=_rgb(*(50 + 60 * occluder_draws[4:7])))
    outline = pose.project([("polygon", _COS24 * _JAW, _SIN24, None, None, 0)])[0][1]  # the head, in pixels
    xs, ys = outline[0::2], outline[1::2]
    square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    origin, mask = _square_mask(square, key, width, height)
    return Student((min(xs), min(ys), max(xs), max(ys)), square, label, name, row,
                   _face_landmarks(pose, identity, expression), occluder, origin, mask)


def _square_mask(square, key_ops, width: int, height: int) -> tuple[tuple[int, int], np.ndarray]:
    """The key parts rasterised over ``square`` clipped to the frame: (x, y) origin, (h, w) bool."""
    x0, y0 = max(0, int(math.floor(square[0]))), max(0, int(math.floor(square[1])))
    x1, y1 = min(width, int(math.ceil(square[2]))), min(height, int(math.ceil(square[3])))
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    shifted = [(kind, [c - (x0 if i % 2 == 0 else y0) for i, c in enumerate(xy)], color, w)
               for kind, xy, color, w in key_ops]
    _paint(ImageDraw.Draw(canvas), shifted, fill=255)
    return (x0, y0), np.asarray(canvas) > 0
