"""Scoring the classroom path on synthetic scenes, whose every face is known.

For each scene: detections are matched one-to-one to the true face boxes at IoU >= 0.5
(greedy, highest IoU first). Recall is matched / true faces, precision matched /
detections. Three crops of each matched face are classified: the naive crop of the
detected box, the crop aligned by the detected landmarks, and the ground-truth square
(the training framing, known only in a synthetic scene): the last is the crop-only
accuracy, what the model reads when detection and framing are perfect. End-to-end
accuracy counts every true face: a missed face is a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from sfer.data.scenes import Scene

from .align import square_crop
from .detect import Detections, FaceDetector, match
from .pipeline import classify, crops_for

CROP_KINDS = ("box", "aligned", "square")


@dataclass
class SceneScore:
    """Counts for one or more scenes; add them with ``+``."""

    faces: int = 0
    detections: int = 0
    matched: int = 0
    correct: dict[str, int] | None = None  # crop kind -> correct among matched faces
    square_correct_all: int = 0  # the ground-truth squares of every face, detected or not

    def __add__(self, other: SceneScore) -> SceneScore:
        correct = {k: (self.correct or {}).get(k, 0) + (other.correct or {}).get(k, 0) for k in CROP_KINDS}
        return SceneScore(self.faces + other.faces, self.detections + other.detections, self.matched + other.matched,
                          correct, self.square_correct_all + other.square_correct_all)

    @property
    def recall(self) -> float:
        return self.matched / max(self.faces, 1)

    @property
    def precision(self) -> float:
        return self.matched / max(self.detections, 1)

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


def score_scene(scene: Scene, model: nn.Module, detector: FaceDetector,
                detections: Detections | None = None) -> SceneScore:
    """Detection and expression counts for one scene (``detections`` if already computed)."""
    detections = detector(scene.image) if detections is None else detections
    truth = np.array([s.box for s in scene.students])
    pairs = match(detections.boxes, truth)
    labels = np.array([s.label for s in scene.students])
    squares = classify(model, [square_crop(scene.image, s.square) for s in scene.students]).argmax(1)
    correct = {"square": int((squares[[t for _, t in pairs]] == labels[[t for _, t in pairs]]).sum())}
    for kind in ("box", "aligned"):
        picked = Detections(detections.boxes[[d for d, _ in pairs]], detections.scores[[d for d, _ in pairs]],
                            detections.landmarks[[d for d, _ in pairs]])
        predicted = classify(model, crops_for(scene.image, picked, kind)).argmax(1) if pairs else np.zeros(0)
        correct[kind] = int((predicted == labels[[t for _, t in pairs]]).sum())
    return SceneScore(len(truth), len(detections), len(pairs), correct, int((squares == labels).sum()))
