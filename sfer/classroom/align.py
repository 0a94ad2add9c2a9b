"""Crops that give the model the framing it was trained on.

A training face (``sfer.data.synthetic``) is a 112-pixel square with the head centred:
half-width ``face_width`` = 0.31..0.35 and half-height ``face_height`` = 0.39..0.43 of
the side; eye centres at u = +-eye_u (0.36..0.43) and v = eye_v (-0.11..-0.05); the nose
tip, where MTCNN puts it, at v = 0.22; mouth corners at u = +-mouth_half_width *
mouth_width (0.28..0.36 times 0.90..1.08 at rest) and v = mouth_v (0.47..0.54), in face
half-widths and half-heights. ``TEMPLATE`` holds those five points for the mean identity,
in pixels of the 112-pixel square (``tests/test_classroom.py`` checks it against the
generator's own faces).

An MTCNN box is not that square: it is tighter, taller than wide and placed by a
regressor, so a naive crop of it shows the face larger, squashed and shifted. Aligning
maps the detected landmarks onto ``DETECTED_TEMPLATE`` with the weighted least-squares
similarity (rotation, uniform scale, shift; Umeyama 1991): with weights w_k and points
p_k (detected) and q_k (template) centred on their weighted means,

    a = sum w_k (p_k . q_k) / sum w_k |p_k|^2,    b = sum w_k (p_k x q_k) / sum w_k |p_k|^2    (1)

and the map is q = [[a, -b], [b, a]] p + t, t = mean_w(q) - [[a, -b], [b, a]] mean_w(p).

Two things made the aligned crop depart from the training framing (issue 19, docs/classroom.md):

* **MTCNN does not put its points where the generator draws them.** On training faces pasted
  into a frame, its eyes sit about 1 pixel higher, and its mouth corners 2 to 3 pixels lower,
  than the drawn ones: a face stretched vertically, which ``TEMPLATE`` then shrank by 3% and
  moved. ``DETECTED_TEMPLATE`` is where ``FaceDetector`` puts the points on training faces, in
  training pixels: aligning to it reproduces the framing on average.
* **The mouth corners move with the expression.** A smile lifts them by up to 6 pixels and
  widens them by up to 30%, while the training framing does not move: any weight on them lets a
  smile shift and shrink the crop, which the model, trained on framings within 1 pixel and 3%,
  reads as another class. ``LANDMARK_WEIGHTS`` gives them none: eyes 3 each, nose 1.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .detect import as_rgb

TRAINING_SIDE = 112
LANDMARK_WEIGHTS = np.array([3.0, 3.0, 1.0, 0.0, 0.0])  # eyes, nose, mouth corners
# (5, 2) x, y in the 112-pixel training square, in MTCNN's order (image-left eye first).
TEMPLATE = np.array([
    [56 - 0.395 * 0.33 * 112, 56 - 0.08 * 0.41 * 112],  # left eye: eye_u 0.395, eye_v -0.08
    [56 + 0.395 * 0.33 * 112, 56 - 0.08 * 0.41 * 112],  # right eye
    [56.0, 56 + 0.22 * 0.41 * 112],  # nose tip
    [56 - 0.317 * 0.33 * 112, 56 + 0.504 * 0.41 * 112],  # mouth corners: 0.32 * 0.99 across, 0.504 down
    [56 + 0.317 * 0.33 * 112, 56 + 0.504 * 0.41 * 112],
])
# (5, 2) where FaceDetector puts the five points on training faces, in the 112-pixel square: the mean
# over 556 faces (SyntheticClassroomFaces seed 8, nuisance 0.5, all classes) pasted at 72 to 164
# pixels on a plain wall; `python benchmarks/classroom.py --calibrate` measures it again.
DETECTED_TEMPLATE = np.array([
    [41.90, 51.15],  # left eye
    [70.20, 50.90],  # right eye
    [56.02, 66.50],  # nose tip
    [44.12, 80.69],  # mouth corners (weight 0: they move with the expression)
    [68.35, 80.27],
])


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The (2, 3) weighted least-squares similarity taking points ``src`` (K, 2) onto ``dst`` (K, 2), eq. (1).

    ``weights`` (K,) default to equal weights.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    src_mean, dst_mean = w @ src, w @ dst
    p, q = src - src_mean, dst - dst_mean
    norm = float(w @ (p * p).sum(1))
    if norm < 1e-12:
        raise ValueError("landmarks coincide: no similarity maps them")
    a = float(w @ (p * q).sum(1)) / norm
    b = float(w @ (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0])) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.concatenate([rot, (dst_mean - rot @ src_mean)[:, None]], axis=1)


def aligned_crop(frame: Image.Image, landmarks: np.ndarray, size: int = TRAINING_SIDE,
                 template: np.ndarray = DETECTED_TEMPLATE) -> Image.Image:
    """The face whose five ``landmarks`` (5, 2) are given, warped into the training framing, (size, size) RGB.

    ``template`` is where such landmarks sit on a training face: ``DETECTED_TEMPLATE`` for
    ``FaceDetector``'s, ``TEMPLATE`` for a scene's true ones. Small faces are upsampled bilinearly;
    a large face is warped at up to 4x ``size`` and then reduced with PIL's antialiasing resize, so
    that no detail aliases.
    """
    forward = alignment(landmarks, size, template)
    scale = math.ceil(min(4.0, max(1.0, 1.0 / float(np.linalg.norm(forward[:, 0])))))
    forward = forward * scale  # frame -> crop at scale x size
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]  # crop -> frame, what PIL samples
    warped = as_rgb(frame).transform((size * scale,) * 2, Image.AFFINE, inverse.ravel().tolist(),
                                   resample=Image.BILINEAR)
    return warped if scale == 1 else warped.resize((size, size), Image.BILINEAR)


def alignment(landmarks: np.ndarray, size: int = TRAINING_SIDE, template: np.ndarray = DETECTED_TEMPLATE) -> np.ndarray:
    """The (2, 3) map from the frame to the (size, size) crop that puts ``landmarks`` (5, 2) on ``template``."""
    return similarity(landmarks, np.asarray(template) * (size / TRAINING_SIDE), LANDMARK_WEIGHTS)


def box_crop(frame: Image.Image, box, size: int = TRAINING_SIDE) -> Image.Image:
    """The naive crop: the box as it is, resized to (size, size) (a non-square box is squashed)."""
    return as_rgb(frame.crop(tuple(float(v) for v in box))).resize((size, size), Image.BILINEAR)


def square_crop(frame: Image.Image, square, size: int = TRAINING_SIDE) -> Image.Image:
    """A square region (a scene's ground-truth ``square``) resized to (size, size)."""
    return box_crop(frame, square, size)
