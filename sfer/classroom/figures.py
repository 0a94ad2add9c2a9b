"""Pictures of the classroom path for notebook 10, and a viewer that picks a scene and a student."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from sfer.data.scenes import Scene
from sfer.explain import overlay
from sfer.widgets import _PngView

from .align import TEMPLATE, aligned_crop, box_crop, square_crop
from .detect import Detections, FaceDetector, iou, missed
from .pipeline import Room, analyse


def _bare(ax):
    ax.set_xticks([]), ax.set_yticks([])


def _box(ax, box, colour, width=1.5, style="-"):
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=width, ls=style))


def scene_figure(scene: Scene, detections: Detections | None = None, title: str = "", dpi: int = 100) -> Figure:
    """The frame with the true face boxes (green) and, if given, MTCNN's boxes and landmarks (red) and
    the true faces no detection matches at IoU 0.5 (yellow, with their occluder)."""
    fig = Figure(figsize=(10, 10 * scene.image.height / scene.image.width + 0.4), dpi=dpi, layout="constrained")
    ax = fig.subplots()
    ax.imshow(scene.image)
    for s in scene.students:
        _box(ax, s.box, "lime")
    if detections is not None:
        for box, points in zip(detections.boxes, detections.landmarks):
            _box(ax, box, "red", style="--")
            ax.plot(points[:, 0], points[:, 1], "r.", ms=3)
        for k in missed(detections.boxes, np.array([s.box for s in scene.students])):
            s = scene.students[k]
            _box(ax, s.box, "yellow", width=3)
            ax.text(s.box[0], s.box[1] - 6, f"missed: {s.occluder}", color="yellow", fontsize=10, weight="bold")
    ax.set_title(title, fontsize=10)
    _bare(ax)
    return fig


def student_zoom(scene: Scene, k: int, dpi: int = 100) -> Figure:
    """One student's ground truth: the head box, the training square, the five landmarks, the key-region mask."""
    s = scene.students[k]
    x0, y0, x1, y1 = s.square
    fig = Figure(figsize=(7, 3.4), dpi=dpi, layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax in (left, right):
        ax.imshow(scene.image)
        ax.set_xlim(x0 - 0.15 * (x1 - x0), x1 + 0.15 * (x1 - x0))
        ax.set_ylim(y1 + 0.15 * (y1 - y0), y0 - 0.15 * (y1 - y0))
        _bare(ax)
    _box(left, s.box, "lime")
    _box(left, s.square, "white", style="--")
    left.plot(s.landmarks[:, 0], s.landmarks[:, 1], "c.", ms=8)
    left.set_title("head box (green), training square (white),\nfive landmarks (cyan)", fontsize=9)
    mask = scene.key_mask(k)
    right.imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.7)
    right.set_title(f"{s.expression}: key region ({', '.join(_key_parts(scene, k))})", fontsize=9)
    return fig


def _key_parts(scene: Scene, k: int) -> tuple[str, ...]:
    from sfer.data.synthetic.expressions import EXPRESSIONS

    return EXPRESSIONS[scene.students[k].expression].key_parts


def framing_figure(scene: Scene, detections: Detections, pairs: Sequence[tuple[int, int]],
                   training_face=None, dpi: int = 100) -> Figure:
    """Per matched face: the naive box crop, the aligned crop and the true square; the template on each."""
    rows = len(pairs) + (training_face is not None)
    fig = Figure(figsize=(6.2, 2.05 * rows), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    titles = ("detected box, resized", "aligned by 5 landmarks", "true training square")
    points = TEMPLATE - 0.5  # continuous pixel coordinates (a pixel's centre at k + 0.5) to imshow's (centre at k)
    if training_face is not None:
        axes[0, 0].imshow(training_face)
        axes[0, 0].plot(points[:, 0], points[:, 1], "c.", ms=6)
        axes[0, 0].set_title("a training face and TEMPLATE", fontsize=8)
        for ax in axes[0]:
            _bare(ax)
        axes[0, 1].axis("off"), axes[0, 2].axis("off")
    for row, (d, t) in zip(axes[rows - len(pairs):], pairs):
        crops = (box_crop(scene.image, detections.boxes[d]), aligned_crop(scene.image, detections.landmarks[d]),
                 square_crop(scene.image, scene.students[t].square))
        for ax, crop, title in zip(row, crops, titles):
            ax.imshow(crop)
            ax.plot(points[:, 0], points[:, 1], "c+", ms=5, mew=0.8)
            ax.set_title(title, fontsize=8)
            _bare(ax)
        row[0].set_ylabel(scene.students[t].expression, fontsize=9)
    return fig


def student_figure(room: Room, k: int, truth: str | None = None, dpi: int = 100) -> Figure:
    """The room with student ``k`` boxed, then what the model saw, its heatmaps and its class probabilities."""
    s = room.students[k]
    views = list(s.heatmaps)
    fig = Figure(figsize=(11, 3.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 3 + len(views), width_ratios=[2.6, 1] + [1] * len(views) + [1.3])
    axes[0].imshow(room.frame)
    for j, other in enumerate(room.students):
        _box(axes[0], other.box, "yellow" if j == k else "white", width=3 if j == k else 0.6)
    axes[0].set_title(f"student {k} of {len(room.students)}", fontsize=9)
    crop = np.asarray(s.crop)
    axes[1].imshow(crop)
    read = f"read: {room.classes[s.label]} {s.probabilities[s.label]:.2f}"
    axes[1].set_title(read + (f"\ntrue: {truth}" if truth else ""), fontsize=9)
    for ax, view in zip(axes[2:2 + len(views)], views):
        ax.imshow(overlay(crop, s.heatmaps[view]))
        ax.set_title(f"{view}\nof {room.classes[s.label]}", fontsize=9)
    fig.suptitle("the aligned crop, then its heatmaps (each on its own scale: blue low, red high)", fontsize=9)
    for ax in axes[:2 + len(views)]:
        _bare(ax)
    bars = axes[-1]
    bars.barh(np.arange(len(room.classes)), s.probabilities, color=["tab:orange" if i == s.label else "tab:blue"
                                                                     for i in range(len(room.classes))])
    bars.set_yticks(range(len(room.classes)), room.classes, fontsize=8)
    bars.invert_yaxis(), bars.set_xlim(0, 1), bars.tick_params(axis="x", labelsize=7)
    bars.set_title("probabilities", fontsize=9)
    return fig


def counts_figure(room: Room, scene: Scene | None = None) -> Figure:
    """The room's class counts as the model reads them, beside the true counts when the scene is known."""
    fig = Figure(figsize=(6, 2.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(room.classes))
    ax.bar(x - 0.2, list(room.counts().values()), width=0.4, label=f"model ({len(room.students)} faces found)")
    if scene is not None:
        ax.bar(x + 0.2, list(scene.counts().values()), width=0.4, label=f"truth ({len(scene.students)} students)")
    ax.set_xticks(x, room.classes, fontsize=8)
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole students
    ax.legend(fontsize=8)
    return fig


def true_labels(room: Room, scene: Scene) -> list[str | None]:
    """For each detected student, the true expression of the scene's face it overlaps (IoU >= 0.5), else None."""
    if not room.students:
        return []
    overlaps = iou(np.array([s.box for s in room.students]), np.array([s.box for s in scene.students]))
    return [scene.students[int(o.argmax())].expression if o.max() >= 0.5 else None for o in overlaps]


class StudentViewer(_PngView):
    """Pick a scene and a student: the room, the aligned crop, Grad-CAM and sources, the probabilities.

    ``scenes``: synthetic scenes (their truth is shown) or PIL frames. Each frame is analysed once, when
    first picked. ``dpi`` sets the picture's resolution (a lower one keeps a saved notebook light).
    """

    def __init__(self, model: nn.Module, scenes: Sequence, detector: FaceDetector | None = None,
                 scene: int = 0, student: int = 0, dpi: int = 100):
        import ipywidgets as w

        self.model, self.scenes, self.detector = model, list(scenes), detector or FaceDetector()
        self.dpi = dpi
        self.rooms: dict[int, Room] = {}
        labels = [f"{i}: seed {s.seed}" if isinstance(s, Scene) else f"frame {i}" for i, s in enumerate(self.scenes)]
        self.scene = w.Dropdown(options=list(zip(labels, range(len(labels)))), value=scene, description="scene")
        self.student = w.Dropdown(options=self._student_options(scene), value=student, description="student")
        self._setup([self.scene, self.student])
        self.drawn = self._draw()

    def __repr__(self) -> str:
        return f"StudentViewer(scene={self.scene.value}, student={self.student.value}, scenes={len(self.scenes)})"

    def room(self, i: int) -> Room:
        """Scene ``i`` analysed (cached)."""
        if i not in self.rooms:
            frame = self.scenes[i].image if isinstance(self.scenes[i], Scene) else self.scenes[i]
            self.rooms[i] = analyse(frame, self.model, self.detector)
        return self.rooms[i]

    def update(self, scene: int | None = None, student: int | None = None) -> dict:
        """Show ``student`` of ``scene`` (either may be left as it is); redraw once; return what was drawn."""
        with self._held():
            if scene is not None and scene != self.scene.value:
                self.scene.value = scene
                self.student.options = self._student_options(scene)
                self.student.value = 0
            if student is not None:
                self.student.value = student
        self.drawn = self._draw()
        return self.drawn

    def _on_change(self, change):
        if change["owner"] is self.scene and not self._holding:
            with self._held():
                self.student.options = self._student_options(change["new"])
                self.student.value = 0
        super()._on_change(change)

    def _student_options(self, i: int) -> list[tuple[str, int]]:
        room = self.room(i)
        options = [(f"{k}: {room.classes[s.label]} {s.probabilities[s.label]:.2f}", k)
                   for k, s in enumerate(room.students)]
        return options or [("no face found", 0)]

    def _draw(self) -> dict:
        i, k = self.scene.value, self.student.value
        room = self.room(i)
        if not room.students:
            fig = Figure(figsize=(6, 3.4), dpi=self.dpi)
            ax = fig.subplots()
            ax.imshow(room.frame), ax.set_title("no face found", fontsize=9), _bare(ax)
            self._show(fig)
            return {"scene": i, "student": None}
        truth = true_labels(room, self.scenes[i])[k] if isinstance(self.scenes[i], Scene) else None
        self._show(student_figure(room, k, truth, dpi=self.dpi))
        s = room.students[k]
        return {"scene": i, "student": k, "expression": room.classes[s.label], "truth": truth,
                "heatmaps": s.heatmaps}
