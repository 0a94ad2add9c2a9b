"""From a classroom frame to every student's expression: detect, align, classify, explain, summarise.

```python
from sfer.classroom import FaceDetector, analyse, read_frame, write_outputs
from sfer.explain import load_model
room = analyse(read_frame("frame.jpg"), load_model("data_samples/checkpoints/tiny_full.pt"), FaceDetector())
room.counts()                        # {"happy": 3, "dedicated": 5, ...}
write_outputs(room, "out/")          # students.csv, counts.csv, annotated.png, heatmaps/student_00.png, ...
```
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from sfer.explain import class_names, compute_cam, overlay
from sfer.explain.loading import to_batch

from .align import aligned_crop, box_crop
from .detect import LANDMARKS, ClassroomError, Detections, FaceDetector, as_rgb

CROPS = ("aligned", "box")
VIEWS = ("gradcam", "sources")  # Grad-CAM of KROAFE, and where its evidence was read (the sources view)
# One colour per class, colour-blind-safe (Okabe-Ito), reused after eight classes.
_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
            (204, 121, 167), (120, 120, 120))
MAX_ANNOTATED_SIDE = 3000  # annotated.png is reduced to this longer side; the CSV keeps the frame's pixels


@dataclass
class Student:
    """One detected face and what the model made of it."""

    box: np.ndarray  # (4,) x0, y0, x1, y1 in the frame's pixels
    score: float  # detector (O-Net) probability
    landmarks: np.ndarray  # (5, 2) in LANDMARKS order
    crop: Image.Image  # what the model saw, (112, 112) RGB
    probabilities: np.ndarray  # (C,) softmax
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # view -> (112, 112) in [0, 1]

    @property
    def label(self) -> int:
        return int(self.probabilities.argmax())


@dataclass
class Room:
    """The frame, its students (top row first, left to right) and the class names."""

    frame: Image.Image
    students: list[Student]
    classes: list[str]

    def counts(self) -> dict[str, int]:
        """How many students the model reads as each class, in class order."""
        return {name: sum(s.label == i for s in self.students) for i, name in enumerate(self.classes)}

    def rows(self) -> list[dict]:
        """One dict per student: the columns of ``students.csv``."""
        out = []
        for k, s in enumerate(self.students):
            row = {"x0": s.box[0], "y0": s.box[1], "x1": s.box[2], "y1": s.box[3],
                   "expression": self.classes[s.label], "probability": s.probabilities[s.label],
                   "detector_score": s.score}
            row.update({f"{name}_{axis}": s.landmarks[j, a] for j, name in enumerate(LANDMARKS)
                        for a, axis in enumerate("xy")})
            row.update({f"p_{name}": p for name, p in zip(self.classes, s.probabilities)})
            row["heatmap"] = f"heatmaps/student_{k:02d}.png" if s.heatmaps else ""
            out.append({k2: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v)
                        for k2, v in row.items()})
        return out


def columns(classes: Sequence[str]) -> list[str]:
    """The header of ``students.csv``."""
    return (["x0", "y0", "x1", "y1", "expression", "probability", "detector_score"]
            + [f"{name}_{axis}" for name in LANDMARKS for axis in "xy"]
            + [f"p_{name}" for name in classes] + ["heatmap"])


def read_frame(path) -> Image.Image:
    """The image at ``path``, fully decoded; a clear ``ClassroomError`` naming it otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ClassroomError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not halfway through
            return image.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ClassroomError(f"{path}: not a readable image ({err})") from err


@torch.no_grad()
def classify(model: nn.Module, crops: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, C) for aligned crops (PIL), through the model's ``eval_transform``."""
    if not crops:
        return np.zeros((0, model.num_classes), np.float32)
    parts = [torch.softmax(model(to_batch(model, list(crops[i:i + batch_size]))), dim=1).cpu()
             for i in range(0, len(crops), batch_size)]
    return torch.cat(parts).numpy()


def crops_for(frame: Image.Image, detections: Detections, crop: str = "aligned") -> list[Image.Image]:
    """One 112-pixel crop per detection: ``aligned`` to the training framing, or the naive ``box``."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if crop == "aligned":
        return [aligned_crop(frame, points) for points in detections.landmarks]
    return [box_crop(frame, box) for box in detections.boxes]


def analyse(frame: Image.Image, model: nn.Module, detector: FaceDetector | None = None, crop: str = "aligned",
            views: Sequence[str] = VIEWS, target: str = "kroafe", batch_size: int = 32) -> Room:
    """Detect every face of ``frame``, crop it (``crop``), classify it and compute its heatmaps (``views``)."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown heatmap views {unknown}; choose from {VIEWS}")
    frame = as_rgb(frame)
    detections = (detector or FaceDetector())(frame)
    crops = crops_for(frame, detections, crop)
    probabilities = classify(model, crops)
    students = [Student(detections.boxes[k], float(detections.scores[k]), detections.landmarks[k], crops[k],
                        probabilities[k]) for k in range(len(crops))]
    for view in views:
        method = "gradcam" if view == "gradcam" else "sources"
        for start in range(0, len(crops), batch_size):
            chunk = students[start:start + batch_size]
            maps = compute_cam(model, [s.crop for s in chunk], target, method=method,
                               class_idx=[s.label for s in chunk])
            for s, m in zip(chunk, maps):
                s.heatmaps[view] = m
    return Room(frame, students, class_names(model))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def annotate(room: Room) -> Image.Image:
    """The frame with every student's box, number, expression and probability drawn on it."""
    scale = min(1.0, MAX_ANNOTATED_SIDE / max(room.frame.size))
    image = room.frame if scale == 1.0 else room.frame.resize(
        (round(room.frame.width * scale), round(room.frame.height * scale)), Image.BILINEAR)
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for k, s in enumerate(room.students):
        x0, y0, x1, y1 = (s.box * scale).tolist()
        colour = _COLOURS[s.label % len(_COLOURS)]
        width = max(2, round((x1 - x0) / 40))
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        font = _font(max(10, round((x1 - x0) / 6)))
        text = f"{k} {room.classes[s.label]} {s.probabilities[s.label]:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        draw.rectangle((left - 2, y0 - (bottom - top) - 6, right + 2, y0), fill=colour)
        draw.text((x0, y0 - (bottom - top) - 4 - (top - y0)), text, fill=(0, 0, 0), font=font)
    return image


def heatmap_strip(student: Student, classes: Sequence[str]) -> Image.Image:
    """The crop the model saw, then each heatmap over it, side by side, captioned."""
    crop = np.asarray(student.crop)
    panels = [crop] + [overlay(crop, student.heatmaps[v]) for v in student.heatmaps]
    titles = [f"{classes[student.label]} {student.probabilities[student.label]:.2f}"] + list(student.heatmaps)
    size, caption = 2 * crop.shape[0], 18
    strip = Image.new("RGB", (size * len(panels), size + caption), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, (panel, title) in enumerate(zip(panels, titles)):
        strip.paste(Image.fromarray(panel).resize((size, size), Image.NEAREST), (j * size, caption))
        draw.text((j * size + 4, 2), title, fill=(0, 0, 0), font=_font(13))
    return strip


def write_outputs(room: Room, out) -> dict[str, Path]:
    """``students.csv``, ``counts.csv``, ``annotated.png`` and ``heatmaps/student_NN.png`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"students": out / "students.csv", "counts": out / "counts.csv", "annotated": out / "annotated.png"}
    with paths["students"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns(room.classes))
        writer.writeheader()
        writer.writerows(room.rows())
    total = max(len(room.students), 1)
    with paths["counts"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["expression", "count", "share"])
        writer.writerows([name, n, round(n / total, 4)] for name, n in room.counts().items())
    annotate(room).save(paths["annotated"])
    if any(s.heatmaps for s in room.students):
        (out / "heatmaps").mkdir(exist_ok=True)
        for k, s in enumerate(room.students):
            heatmap_strip(s, room.classes).save(out / "heatmaps" / f"student_{k:02d}.png")
    return paths
