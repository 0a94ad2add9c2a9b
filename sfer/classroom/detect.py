"""MTCNN face detection (facenet-pytorch's P-, R- and O-Nets, loaded without running code).

facenet-pytorch ships the three networks' weights in its wheel, so nothing is downloaded.
Its package metadata pins an old torch, so it is installed on its own, without
dependencies (``INSTALL_COMMAND``). Its ``MTCNN`` class reads those weights with a plain
``torch.load``; here the networks are built empty and their state dicts are read with
``torch.load(weights_only=True)``, so a tampered file cannot run code.

Large frames are detected on a copy whose longer side is at most ``max_side`` pixels;
boxes and landmarks are mapped back to the frame's own pixels.

MTCNN reads the five landmarks off O-Net's *input* window, the R-Net box, before O-Net's
own regression moves that box onto the face. On the drawn faces those points scatter
(1.4 pixels of a 112-pixel training face, standard deviation, vertically), and
alignment turns every pixel into a framing error the model reads (docs/classroom.md).
``FaceDetector`` therefore runs O-Net once more on nine squares around each final box
(``REFINE_OFFSETS``) and averages their landmarks.

The cascade's settings are not MTCNN's own (``MTCNN_THRESHOLDS``, ``MTCNN_FACTOR``). R-Net
scores some clear, frontal drawn faces below 0.05 in every window it is shown (dark skin in
the front row; faces washed out by the window's light), so with its threshold at 0.7 they
never reach O-Net, which scores them 0.9-1.0. ``THRESHOLDS`` therefore keeps R-Net's box
regression and non-maximum suppression but none of its filtering (threshold 0), lowers
P-Net's to 0.3, raises O-Net's to 0.9, and steps the pyramid by ``FACTOR`` = 0.8. What R-Net
filtered out, a stricter O-Net and *shift consistency* take over: a face is kept only if
O-Net's mean face probability over the nine refining squares, the box shifted by up to 4%
of its side, is at least ``MIN_CONSISTENCY``. A face stays a face when the window moves a
little; the texture that fooled O-Net once (coffee beans, gravel) does not. The refining
squares are run anyway, for the landmarks, so the check costs nothing. Measured on tuning
frames apart from the benchmark's in docs/classroom.md ("Missed faces").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn.functional import interpolate

INSTALL_COMMAND = "pip install --no-deps facenet-pytorch==2.6.0"
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # left/right in the image
# Shifts of the refining windows, in fractions of the box side: a 3 x 3 grid around the final box.
REFINE_OFFSETS = tuple((dx, dy) for dy in (-0.04, 0.0, 0.04) for dx in (-0.04, 0.0, 0.04))
ONET_SIDE = 48
MTCNN_THRESHOLDS, MTCNN_FACTOR = (0.6, 0.7, 0.7), 0.709  # Zhang et al.'s P-, R-, O-Net thresholds and pyramid step
THRESHOLDS, FACTOR = (0.3, 0.0, 0.9), 0.8  # the defaults here: R-Net filters nothing (module docstring)
MIN_CONSISTENCY = 0.5  # O-Net's mean face probability over the nine refining squares a face must reach


class ClassroomError(Exception):
    """A user-facing problem with the frame, the checkpoint or the installation."""


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, in the frame's pixels, top row first and left to right."""

    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1
    scores: np.ndarray  # (N,) O-Net face probability on the cascade's final box
    landmarks: np.ndarray  # (N, 5, 2) x, y in LANDMARKS order

    def __len__(self) -> int:
        return len(self.boxes)


class FaceDetector:
    """MTCNN with facenet-pytorch's weights.

    Args:
        min_face: smallest face side searched for, in pixels of the detection image.
        thresholds: P-, R- and O-Net score thresholds; a face is kept when its final O-Net score
            reaches the third. ``MTCNN_THRESHOLDS`` with ``factor=MTCNN_FACTOR`` and
            ``min_consistency=0`` is MTCNN as published.
        factor: the image pyramid's step between scales.
        min_consistency: O-Net's mean face probability over the nine refining squares that a
            face must reach (0 keeps every face the cascade returns).
        max_side: frames with a longer side are downscaled to it for detection.
    """

    def __init__(self, min_face: int = 20, thresholds=THRESHOLDS, factor: float = FACTOR,
                 min_consistency: float = MIN_CONSISTENCY, max_side: int = 1600, device: str | torch.device = "cpu"):
        if not all(0.0 <= t < 1.0 for t in thresholds) or len(thresholds) != 3:
            raise ValueError(f"thresholds must be three scores in [0, 1), got {tuple(thresholds)}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must lie between 0 and 1, got {factor}")
        if not 0.0 <= min_consistency < 1.0:
            raise ValueError(f"min_consistency must lie in [0, 1), got {min_consistency}")
        try:
            import facenet_pytorch
            from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
            from facenet_pytorch.models.utils.detect_face import detect_face
        except ImportError as err:
            raise ClassroomError(f"MTCNN needs facenet-pytorch, which is not installed ({err}). Install it "
                                 f"without its torch pin: {INSTALL_COMMAND}") from err
        weights = Path(facenet_pytorch.__file__).parent / "data"
        self.device = torch.device(device)
        self.nets = []
        for net_class, name in ((PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")):
            net = net_class(pretrained=False)
            net.load_state_dict(torch.load(weights / name, map_location="cpu", weights_only=True))
            self.nets.append(net.to(self.device).eval())
        self._detect_face = detect_face
        self.min_face, self.thresholds, self.factor = int(min_face), list(thresholds), float(factor)
        self.min_consistency = float(min_consistency)
        self.max_side = int(max_side)

    def __call__(self, frame: Image.Image) -> Detections:
        """Faces in ``frame`` (any PIL mode; grayscale, 16-bit included, is replicated to RGB)."""
        frame = as_rgb(frame)
        scale = min(1.0, self.max_side / max(frame.size))
        small = frame if scale == 1.0 else frame.resize(
            (max(1, round(frame.width * scale)), max(1, round(frame.height * scale))), Image.BILINEAR)
        if min(small.size) < max(12, self.min_face):  # MTCNN's pyramid would be empty
            return _empty()
        with torch.no_grad():
            boxes, _ = self._detect_face([small], self.min_face, *self.nets, self.thresholds, self.factor,
                                         self.device)
        boxes = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5)
        points, consistency = self._refine(small, boxes[:, :4])  # (N, 5, 2), (N,)
        kept = consistency >= self.min_consistency
        boxes, points = boxes[kept], points[kept]
        boxes[:, :4] /= scale
        points /= scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame.width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame.height)
        order = _reading_order(boxes[:, :4])
        return Detections(boxes[order, :4], boxes[order, 4], points[order])

    @torch.no_grad()
    def _refine(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net on squares around each of ``boxes`` (N, 4): its five points averaged, (N, 5, 2) in
        ``image``, and its face probability averaged, (N,): the shift consistency.

        Each square has the box's longer side and is centred on the box shifted by ``REFINE_OFFSETS``;
        it is cut out (zero outside the image, as MTCNN pads) and reduced to O-Net's 48 x 48 by area.
        """
        if len(boxes) == 0:
            return np.zeros((0, 5, 2)), np.zeros(0)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
        sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)  # (N,)
        windows, crops = [], []
        for centre, side in zip(centres, sides):
            for offset in REFINE_OFFSETS:
                x0, y0 = np.round(centre + np.asarray(offset) * side - side / 2)
                n = max(1, round(side))
                windows.append((x0, y0, n))
                pixels = np.array(image.crop((int(x0), int(y0), int(x0) + n, int(y0) + n)), dtype=np.float32)
                crops.append(torch.from_numpy(pixels).permute(2, 0, 1))
        batch = torch.stack([interpolate(c[None], size=(ONET_SIDE, ONET_SIDE), mode="area")[0] for c in crops])
        _, fractions, probabilities = self.nets[2](((batch - 127.5) * 0.0078125).to(self.device))  # (N*K, 10), (N*K, 2)
        consistency = probabilities[:, 1].cpu().double().numpy().reshape(len(boxes), len(REFINE_OFFSETS)).mean(1)
        fractions = fractions.cpu().double().numpy().reshape(len(boxes), len(REFINE_OFFSETS), 2, 5)
        corner = np.array([w[:2] for w in windows], dtype=np.float64).reshape(len(boxes), len(REFINE_OFFSETS), 2, 1)
        side = np.array([w[2] for w in windows], dtype=np.float64).reshape(len(boxes), len(REFINE_OFFSETS), 1, 1)
        return (corner + side * fractions).mean(axis=1).transpose(0, 2, 1), consistency  # (N, 5, 2), (N,)


def as_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: itself if it already is; 16-bit and float grayscale scaled, not clipped, to 0..255.

    (PIL's own ``convert("RGB")`` clips a 16-bit frame at 255, which turns it white.)
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        return Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _empty() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def _reading_order(boxes: np.ndarray) -> np.ndarray:
    """Indices that sort boxes into rows (a new row starts half a face height below the last row's
    first centre), top row first, then by x."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    centres = (boxes[:, 1] + boxes[:, 3]) / 2
    half_face = float(np.median(boxes[:, 3] - boxes[:, 1])) / 2
    band, row, row_top = np.zeros(len(boxes), dtype=int), 0, None
    for k in np.argsort(centres, kind="stable"):
        if row_top is not None and centres[k] - row_top > half_face:
            row += 1
            row_top = None
        row_top = centres[k] if row_top is None else row_top
        band[k] = row
    return np.lexsort((boxes[:, 0], band))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(detected: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first: (detection, truth) pairs with IoU >= threshold."""
    overlaps = iou(detected, truth)
    pairs, used_d, used_t = [], set(), set()
    for flat in np.argsort(-overlaps, axis=None):
        d, t = divmod(int(flat), overlaps.shape[1])
        if overlaps[d, t] < threshold:
            break
        if d not in used_d and t not in used_t:
            pairs.append((d, t))
            used_d.add(d)
            used_t.add(t)
    return sorted(pairs)


def missed(detected: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> list[int]:
    """The indices of the true boxes that :func:`match` pairs with no detection."""
    found = {t for _, t in match(detected, truth, threshold)}
    return [t for t in range(len(truth)) if t not in found]
