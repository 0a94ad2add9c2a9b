"""Scoring the classroom path on frames whose every face is known: synthetic scenes and pasted training faces.

For each frame: detections are matched one-to-one to the true faces (greedy, highest IoU
first; a scene's head boxes at IoU >= 0.5, a pasted face's square at IoU >= 0.25, since
the square is wider than the head a detector boxes). Recall is matched / true faces,
precision matched / detections. Three crops of each matched face are classified: the
naive crop of the detected box, the crop aligned by the detected landmarks, and the
ground-truth square (the training framing, known only in a synthetic frame): the last is
the crop-only accuracy, what the model reads when detection and framing are perfect.
End-to-end accuracy counts every true face: a missed face is a wrong answer.

A face is *clear* when nothing hides it: no occluder of its own, and no head of a nearer
row over more than ``CLEAR_HIDDEN`` of it (a scene's back rows show between the heads in
front, not always fully). Recall on clear faces of at least ``CLEAR_SIDE`` pixels is the
detector's target (issue 19: at least 95%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn
from PIL import Image

from sfer.data import SyntheticClassroomFaces
from sfer.data.scenes import Scene
from sfer.engine import accuracy_interval

from .align import TRAINING_SIDE, square_crop
from .detect import Detections, FaceDetector, match
from .pipeline import classify, crops_for

CROP_KINDS = ("box", "aligned", "square")
CLEAR_SIDE = 80  # training-square side, pixels: the smallest face the recall target covers
CLEAR_HIDDEN = 0.05  # the largest share of a clear face that nearer heads may cover
PASTED_IOU = 0.25  # a detected head box against the wider square it was pasted as


@dataclass
class SceneScore:
    """Counts for one or more frames; add them with ``+``."""

    faces: int = 0
    detections: int = 0
    matched: int = 0
    correct: dict[str, int] | None = None  # crop kind -> correct among matched faces
    square_correct_all: int = 0  # the ground-truth squares of every face, detected or not
    clear_faces: int = 0  # clear faces whose square is at least CLEAR_SIDE
    clear_matched: int = 0
    aligned_only: int = 0  # matched faces the aligned crop reads right and the square wrong
    square_only: int = 0  # ... and the other way round: with ``matched``, the paired difference

    def __add__(self, other: SceneScore) -> SceneScore:
        correct = {k: (self.correct or {}).get(k, 0) + (other.correct or {}).get(k, 0) for k in CROP_KINDS}
        return SceneScore(self.faces + other.faces, self.detections + other.detections, self.matched + other.matched,
                          correct, self.square_correct_all + other.square_correct_all,
                          self.clear_faces + other.clear_faces, self.clear_matched + other.clear_matched,
                          self.aligned_only + other.aligned_only, self.square_only + other.square_only)

    @property
    def recall(self) -> float:
        return self.matched / max(self.faces, 1)

    @property
    def precision(self) -> float:
        return self.matched / max(self.detections, 1)

    @property
    def clear_recall(self) -> float:
        """Recall on clear faces of at least ``CLEAR_SIDE`` pixels."""
        return self.clear_matched / max(self.clear_faces, 1)

    def accuracy(self, kind: str) -> float:
        """Among matched faces, the share the model gets right from crop ``kind``."""
        return (self.correct or {}).get(kind, 0) / max(self.matched, 1)

    @property
    def end_to_end(self) -> float:
        """Right answers from aligned crops over every true face (a missed face counts as wrong)."""
        return (self.correct or {}).get("aligned", 0) / max(self.faces, 1)

    @property
    def crop_only(self) -> float:
        """Right answers from the ground-truth squares over every true face."""
        return self.square_correct_all / max(self.faces, 1)


@dataclass(frozen=True)
class PastedFrame:
    """Training faces pasted on a plain wall: each ``square`` is a training image, resized."""

    image: Image.Image
    squares: np.ndarray  # (N, 4) x0, y0, x1, y1 where each face was pasted
    labels: np.ndarray  # (N,)
    occluders: list[str]  # the training sample's own occluder, "none" for most


def wilson(k: int, n: int) -> str:
    """k / n as a percentage with its Wilson 95% interval (:func:`sfer.engine.accuracy_interval`)."""
    if n == 0:
        return "n/a"
    share, low, high = accuracy_interval(k, n)
    return f"{100 * share:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({k}/{n})"


def pasted_frame(faces: SyntheticClassroomFaces, first: int, sides=(80, 110, 150), per_side: int = 5,
                 width: int = 1280, height: int = 720, wall=(190, 188, 180)) -> PastedFrame:
    """Samples ``first``, ``first + 1``, ... of ``faces``, resized to each of ``sides`` ``per_side`` times, in rows.

    The frame of issue 19: a pasted face's square *is* its training framing, so a crop of it can be
    held against the training image itself, and MTCNN's landmarks can be read in training pixels.
    """
    gap_y = (height - sum(sides)) / (len(sides) + 1)
    if gap_y < 0 or min(sides) < 12 or width < per_side * max(sides):
        raise ValueError(f"{per_side} faces of each of sides {tuple(sides)} do not fit a {width} x {height} frame")
    image = Image.new("RGB", (width, height), tuple(wall))
    squares, labels, occluders = [], [], []
    y, k = gap_y, first
    for side in sides:
        gap_x = (width - per_side * side) / (per_side + 1)
        for j in range(per_side):
            x0, y0 = round(gap_x + j * (side + gap_x)), round(y)
            face, label = faces[k]
            image.paste(face.resize((side, side), Image.BILINEAR), (x0, y0))
            squares.append((x0, y0, x0 + side, y0 + side))
            labels.append(label)
            occluders.append(faces.nuisances(k)["occluder"])
            k += 1
        y += side + gap_y
    return PastedFrame(image, np.array(squares, np.float64), np.array(labels), occluders)


def hidden_share(scene: Scene, k: int, grid: int = 24) -> float:
    """The share of student ``k``'s head (the ellipse in its box) that heads of nearer rows cover."""
    student = scene.students[k]
    x0, y0, x1, y1 = student.box
    u = (np.arange(grid) + 0.5) / grid
    xs, ys = np.meshgrid(x0 + u * (x1 - x0), y0 + u * (y1 - y0))  # (grid, grid)
    inside = ((2 * u[None, :] - 1) ** 2 + (2 * u[:, None] - 1) ** 2) <= 1
    covered = np.zeros_like(inside)
    for other in scene.students:
        if other.row < student.row:
            a0, b0, a1, b1 = other.box
            covered |= (((2 * xs - a0 - a1) / (a1 - a0)) ** 2 + ((2 * ys - b0 - b1) / (b1 - b0)) ** 2) <= 1
    return float((covered & inside).sum() / inside.sum())


def score_faces(image: Image.Image, truth: np.ndarray, squares: np.ndarray, labels: np.ndarray, clear: np.ndarray,
                model: nn.Module, detections: Detections, threshold: float = 0.5) -> SceneScore:
    """Detection and expression counts for one frame's true faces.

    ``truth`` (N, 4) is what a detection is matched against at IoU ``threshold``, ``squares`` (N, 4) the
    training framing, ``labels`` (N,), ``clear`` (N,) bool: the faces the recall target counts.
    """
    pairs = match(detections.boxes, truth, threshold)
    found = np.array([t for _, t in pairs], dtype=int)
    picked = np.array([d for d, _ in pairs], dtype=int)
    squares_read = classify(model, [square_crop(image, s) for s in squares]).argmax(1)
    right = {"square": squares_read[found] == labels[found]}  # kind -> (M,) bool over matched faces
    chosen = Detections(detections.boxes[picked], detections.scores[picked], detections.landmarks[picked])
    for kind in ("box", "aligned"):
        predicted = classify(model, crops_for(image, chosen, kind)).argmax(1) if len(pairs) else np.zeros(0)
        right[kind] = predicted == labels[found]
    return SceneScore(len(truth), len(detections), len(pairs), {k: int(v.sum()) for k, v in right.items()},
                      int((squares_read == labels).sum()), int(clear.sum()), int(clear[found].sum()),
                      int((right["aligned"] & ~right["square"]).sum()), int((right["square"] & ~right["aligned"]).sum()))


def score_scene(scene: Scene, model: nn.Module, detector: FaceDetector,
                detections: Detections | None = None) -> SceneScore:
    """Detection and expression counts for one scene (``detections`` if already computed)."""
    detections = detector(scene.image) if detections is None else detections
    squares = np.array([s.square for s in scene.students])
    clear = np.array([s.occluder == "none" and hidden_share(scene, k) <= CLEAR_HIDDEN
                      and s.square[2] - s.square[0] >= CLEAR_SIDE for k, s in enumerate(scene.students)])
    return score_faces(scene.image, np.array([s.box for s in scene.students]), squares,
                       np.array([s.label for s in scene.students]), clear, model, detections)


def score_pasted(frame: PastedFrame, model: nn.Module, detector: FaceDetector,
                 detections: Detections | None = None) -> SceneScore:
    """Detection and expression counts for a frame of pasted training faces."""
    detections = detector(frame.image) if detections is None else detections
    clear = np.array([o == "none" and s[2] - s[0] >= CLEAR_SIDE for o, s in zip(frame.occluders, frame.squares)])
    return score_faces(frame.image, frame.squares, frame.squares, frame.labels, clear, model, detections, PASTED_IOU)


def landmarks_in_training_square(frame: PastedFrame, detections: Detections) -> np.ndarray:
    """The detected landmarks of every matched pasted face, in pixels of its 112-pixel training square: (M, 5, 2)."""
    pairs = match(detections.boxes, frame.squares, PASTED_IOU)
    out = [(detections.landmarks[d] - frame.squares[t, :2]) * TRAINING_SIDE / (frame.squares[t, 2] - frame.squares[t, 0])
           for d, t in pairs]
    return np.array(out).reshape(-1, 5, 2)
