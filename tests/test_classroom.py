"""The classroom path: MTCNN install and safe loading, alignment, detection quality, ``sfer classroom``."""

import csv
import importlib.metadata
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sfer.classroom import ClassroomError, FaceDetector, aligned_crop, square_crop
from sfer.classroom.align import DETECTED_TEMPLATE, LANDMARK_WEIGHTS, TEMPLATE, alignment, box_crop, similarity
from sfer.classroom.detect import INSTALL_COMMAND, MTCNN_FACTOR, MTCNN_THRESHOLDS, Detections, iou, match, missed
from sfer.classroom.pipeline import columns
from sfer.classroom.evaluate import (
    PastedFrame,
    SceneScore,
    hidden_share,
    landmarks_in_training_square,
    pasted_frame,
    score_pasted,
    score_scene,
    wilson,
)
from sfer.cli import main
from sfer.data import SyntheticClassroomFaces
from sfer.data.scenes import _face_landmarks, classroom_scene
from sfer.data.synthetic import Pose
from sfer.explain import load_model
from sfer.explain.loading import CHECKPOINTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def model():
    return load_model(CHECKPOINTS / "tiny_full.pt")


@pytest.fixture(scope="module")
def scene():
    return classroom_scene(0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def test_facenet_installed_without_downgrading_torch():
    """The README's set-up installs facenet-pytorch with --no-deps: its torch<2.3 pin must not win."""
    assert importlib.metadata.version("facenet-pytorch") == "2.6.0", f"run: {INSTALL_COMMAND}"
    floor = re.search(r'"torch>=([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert _version(torch.__version__) >= _version(floor), f"torch {torch.__version__} was downgraded"
    for step in ((ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()):
        assert INSTALL_COMMAND in step.replace(" --quiet", "")


def test_weights_are_loaded_without_running_code(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    FaceDetector()
    assert calls == [True, True, True]


def test_missing_facenet_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import raises ImportError
    with pytest.raises(ClassroomError, match=re.escape(INSTALL_COMMAND)):
        FaceDetector()


def test_template_is_the_training_framing():
    """The mean of the generator's own five points, over faces at rest, is the template (to 1 pixel)."""
    data = SyntheticClassroomFaces(600, seed=3, nuisance=0.0)
    points = []
    for i in range(600):  # every class alike: the expressions move the mouth corners
        sample = data._sample(i)
        pose = Pose.of(sample.identity, sample.nuisances, 112)
        points.append(_face_landmarks(pose, sample.identity, sample.expression))
    assert np.abs(np.mean(points, axis=0) - TEMPLATE).max() < 1.0


def test_similarity_recovers_a_known_map():
    rng = np.random.default_rng(0)
    src = rng.random((5, 2)) * 80
    angle, scale, shift = 0.4, 1.7, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    weighted = similarity(src, src @ rot.T + shift, np.array([3.0, 3.0, 1.0, 0.5, 0.5]))  # exact: any weights
    np.testing.assert_allclose(weighted, m, atol=1e-9)
    with pytest.raises(ValueError, match="coincide"):
        similarity(np.ones((5, 2)), src)


def test_alignment_by_true_landmarks_gives_the_training_square(scene):
    """Aligned by its true landmarks, a face matches its ground-truth square far better than its head box does."""
    aligned, naive = [], []
    for s in scene.students:
        truth = np.asarray(square_crop(scene.image, s.square), np.float32)
        crop = aligned_crop(scene.image, s.landmarks, template=TEMPLATE)
        aligned.append(np.abs(np.asarray(crop, np.float32) - truth).mean())
        naive.append(np.abs(np.asarray(box_crop(scene.image, s.box), np.float32) - truth).mean())
    assert np.median(aligned) < 0.5 * np.median(naive)


@pytest.fixture(scope="module")
def pasted():
    """The frame of issue 19: 15 training faces (nuisance 0.5) pasted at 80, 110 and 150 pixels on a plain wall."""
    return pasted_frame(SyntheticClassroomFaces(15, seed=19, nuisance=0.5), 0)


def _framing(square, landmarks) -> np.ndarray:
    """Where the aligned crop puts the pasted square: its centre's offset (dx, dy) and its side's
    excess over 112, in the crop's pixels; (0, 0, 0) is the training framing exactly. (The square's
    corners would also move with the face's own roll, which alignment straightens.)"""
    forward = alignment(landmarks)
    x0, y0, x1, y1 = square
    centre = forward[:, :2] @ [(x0 + x1) / 2, (y0 + y1) / 2] + forward[:, 2]
    return np.array([centre[0] - 56, centre[1] - 56, np.linalg.norm(forward[:, 0]) * (x1 - x0) - 112])


def test_pasted_frame_places_training_faces(pasted):
    assert isinstance(pasted, PastedFrame) and len(pasted.squares) == 15
    assert sorted({int(s[2] - s[0]) for s in pasted.squares}) == [80, 110, 150]
    face, label = SyntheticClassroomFaces(15, seed=19, nuisance=0.5)[14]
    x0, y0, x1, y1 = pasted.squares[14].astype(int)
    back = np.asarray(pasted.image.crop((x0, y0, x1, y1)).resize((112, 112), Image.BILINEAR), np.float32)
    assert np.abs(back - np.asarray(face, np.float32)).mean() < 6 and pasted.labels[14] == label
    with pytest.raises(ValueError, match="do not fit"):
        pasted_frame(SyntheticClassroomFaces(15, seed=19), 0, sides=(300, 300, 300), height=720)


def test_aligned_crop_frames_a_pasted_face_like_its_training_square(pasted, detector):
    """Issue 19: a face pasted at a known square is cropped within a few pixels of that square.

    Over the detected faces, the crop's centre is off by under 2 pixels (median) and 6 (worst), and its
    side by no more than 3 pixels on average (before issue 19: 3.7 pixels smaller). Each face's side
    still varies by about 6% (7 pixels): the identity's own proportions (eye spacing 0.36-0.43 of the
    head) tie the landmarks only loosely to the head's size, and no five points take that out. The
    side is checked on its mean, the quantity DETECTED_TEMPLATE is calibrated on: with a spread of
    7 pixels over 15 faces, a median moves by 2-3 pixels with the draw of faces.
    """
    detections = detector(pasted.image)
    pairs = match(detections.boxes, pasted.squares, 0.25)
    assert len(pairs) >= 13
    errors = np.array([_framing(pasted.squares[t], detections.landmarks[d]) for d, t in pairs])  # (M, 3) pixels
    assert np.median(np.abs(errors[:, :2]), axis=0).max() < 2.0
    assert np.abs(errors[:, :2]).max() < 6.0
    assert abs(errors[:, 2].mean()) < 3.0
    assert np.median(np.abs(errors[:, 2])) < 0.08 * 112


def test_smiles_do_not_move_the_crop(pasted, detector):
    """The mouth corners carry no weight: a smile's wider, higher corners leave the map unchanged."""
    assert LANDMARK_WEIGHTS[3] == LANDMARK_WEIGHTS[4] == 0
    points = DETECTED_TEMPLATE.copy()
    smiling = points.copy()
    smiling[3:] += [[-4.0, -6.0], [4.0, -6.0]]  # wider and lifted, as the generator's happy mouth
    np.testing.assert_allclose(alignment(smiling), alignment(points), atol=1e-9)
    np.testing.assert_allclose(alignment(points), [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_detected_template_is_where_the_detector_puts_training_landmarks(pasted, detector):
    """DETECTED_TEMPLATE against this frame's detected landmarks, in training pixels (to 1.5 pixels on the mean)."""
    points = landmarks_in_training_square(pasted, detector(pasted.image))
    assert len(points) >= 13
    assert np.abs(points.mean(axis=0)[:3] - DETECTED_TEMPLATE[:3]).max() < 1.5


def test_aligned_crops_read_like_training_squares(pasted, detector, model):
    """On the pasted frame, clear faces are found and aligned crops are read about as well as the true squares."""
    score = score_pasted(pasted, model, detector)
    assert score.clear_recall >= 0.9
    assert score.accuracy("aligned") >= score.accuracy("square") - 0.15


def test_hidden_share_counts_heads_in_front(scene):
    shares = [hidden_share(scene, k) for k in range(len(scene.students))]
    assert all(0.0 <= h <= 1.0 for h in shares)
    assert all(h == 0.0 for h, s in zip(shares, scene.students) if s.row == 0)  # nothing in front of the front row


def test_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 5], [21, 21, 31, 31], [50, 50, 60, 60]])
    np.testing.assert_allclose(iou(a, b)[0], [0.5, 0.0, 0.0])
    assert match(a, b) == [(0, 0), (1, 1)]
    assert match(a, b, threshold=0.6) == [(1, 1)]
    assert missed(a, b) == [2] and missed(a, b, threshold=0.6) == [0, 2] and missed(a[:0], b) == [0, 1, 2]


def test_wilson_formats_a_share_with_its_interval():
    assert wilson(288, 300) == "96.0% [93.1, 97.7] (288/300)" and wilson(0, 0) == "n/a"


def test_detection_and_alignment_on_scenes(detector, model):
    """Recall and precision at IoU 0.5, and aligned crops read far better than naive box crops."""
    total = SceneScore()
    for seed in (0, 1):
        total = total + score_scene(classroom_scene(seed), model, detector)
    assert total.recall >= 0.75 and total.precision >= 0.95
    assert total.accuracy("aligned") >= total.accuracy("box") + 0.3


def test_r_net_no_longer_drops_clear_frontal_faces(detector):
    """Issue 19, item 2: clear front-row faces that MTCNN's published cascade rejects at R-Net are found.

    Scene 216's second student (front row, 172-pixel square, dark skin, nothing in front) is scored
    below 0.05 by R-Net in every window; O-Net, shown the window, scores it above 0.9.
    """
    scene = classroom_scene(216)
    published = FaceDetector(thresholds=MTCNN_THRESHOLDS, factor=MTCNN_FACTOR, min_consistency=0.0)
    target = np.array([scene.students[1].box])
    assert scene.students[1].occluder == "none" and hidden_share(scene, 1) == 0.0
    assert match(published(scene.image).boxes, target) == []
    detections = detector(scene.image)
    assert len(match(detections.boxes, target)) == 1
    truth = np.array([s.box for s in scene.students])
    assert len(match(detections.boxes, truth)) == len(detections)  # and nothing but faces


def test_shift_consistency_removes_a_texture_false_alarm():
    """O-Net at 0.9 takes one window of coffee beans for a face; shifted by 4% it no longer does."""
    skimage_data = pytest.importorskip("skimage.data")
    coffee = Image.fromarray(skimage_data.coffee())
    assert len(FaceDetector(min_consistency=0.0)(coffee)) == 1
    assert len(FaceDetector()(coffee)) == 0
    astronaut = FaceDetector()(Image.fromarray(skimage_data.astronaut()))
    assert len(astronaut) == 1 and astronaut.scores[0] > 0.99  # a real face passes


def test_detector_settings_are_checked():
    for kwargs, name in (({"thresholds": (0.6, 0.7, 1.0)}, "thresholds"), ({"factor": 1.2}, "factor"),
                         ({"min_consistency": -0.1}, "min_consistency")):
        with pytest.raises(ValueError, match=name):
            FaceDetector(**kwargs)


def test_scene_figure_marks_the_faces_no_detection_matches(scene, detector):
    from sfer.classroom.figures import scene_figure

    detections = detector(scene.image)
    dropped = Detections(detections.boxes[1:], detections.scores[1:], detections.landmarks[1:])
    missed = len(scene.students) - len(match(dropped.boxes, np.array([s.box for s in scene.students])))
    texts = [t.get_text() for t in scene_figure(scene, dropped).axes[0].texts]
    assert missed >= 1 and len(texts) == missed and all(t.startswith("missed: ") for t in texts)
    assert len(scene_figure(scene).axes[0].texts) == 0  # no detections given: nothing is called missed


def test_large_frames_are_detected_downscaled_and_mapped_back(scene, detector):
    big = scene.image.resize((2 * scene.image.width, 2 * scene.image.height), Image.BILINEAR)
    # the reduced copy the detector makes itself: the same faces, in half the big frame's pixels
    small_det = detector(big.resize(scene.image.size, Image.BILINEAR))
    big_det = FaceDetector(max_side=scene.image.width)(big)
    assert len(big_det) == len(small_det) >= 12
    np.testing.assert_allclose(big_det.boxes, 2 * small_det.boxes, atol=1e-3)
    np.testing.assert_allclose(big_det.landmarks, 2 * small_det.landmarks, atol=1e-3)
    assert big_det.boxes[:, 2].max() > scene.image.width  # boxes are in the big frame's pixels


def test_tiny_and_blank_frames_have_no_face(detector):
    assert len(detector(Image.new("RGB", (8, 8)))) == 0
    assert len(detector(Image.new("RGB", (640, 480), (200, 200, 190)))) == 0


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_writes_table_annotation_heatmaps_and_counts(tmp_path, scene, capsys):
    frame = tmp_path / "frame.png"
    scene.image.save(frame)
    assert main(["classroom", str(frame), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    rows = _read_csv(out / "students.csv")
    header = next(csv.reader(open(out / "students.csv", encoding="utf-8")))
    assert header[:6] == ["x0", "y0", "x1", "y1", "expression", "probability"] and header == columns(scene.classes)
    assert len(rows) >= 11
    truth = np.array([s.box for s in scene.students])
    boxes = np.array([[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in rows])
    assert iou(boxes, truth).max(axis=1).min() >= 0.5  # every row is a real student
    assert all(r["expression"] in scene.classes and 0 < float(r["probability"]) <= 1 for r in rows)
    for r in rows:
        strip = Image.open(out / r["heatmap"])
        assert strip.width == 3 * 224  # the crop, Grad-CAM and sources
    counts = _read_csv(out / "counts.csv")
    assert [c["expression"] for c in counts] == scene.classes
    assert sum(int(c["count"]) for c in counts) == len(rows)
    assert Image.open(out / "annotated.png").size == scene.image.size
    assert f"{len(rows)} student(s) found" in capsys.readouterr().out


def test_cli_grayscale_frame(tmp_path, scene):
    frame = tmp_path / "gray.jpg"
    scene.image.convert("L").save(frame, quality=92)
    assert main(["classroom", str(frame), "--out", str(tmp_path / "out"), "--views", "none"]) == 0
    rows = _read_csv(tmp_path / "out" / "students.csv")
    assert len(rows) >= 6  # MTCNN finds fewer drawn faces without colour (docs/classroom.md)
    assert all(r["heatmap"] == "" for r in rows)


def test_cli_sixteen_bit_grayscale_frame(tmp_path, scene):
    frame = tmp_path / "gray16.png"
    Image.fromarray(np.asarray(scene.image.convert("L")).astype(np.uint16) * 257).save(frame)
    assert Image.open(frame).mode.startswith("I")
    assert main(["classroom", str(frame), "--out", str(tmp_path / "out"), "--views", "none"]) == 0
    assert len(_read_csv(tmp_path / "out" / "students.csv")) >= 6


def test_cli_no_face_is_an_empty_table_and_success(tmp_path, capsys):
    frame = tmp_path / "wall.png"
    Image.new("RGB", (640, 480), (200, 200, 190)).save(frame)
    assert main(["classroom", str(frame), "--out", str(tmp_path / "out")]) == 0
    assert "no face found" in capsys.readouterr().out
    assert _read_csv(tmp_path / "out" / "students.csv") == []
    assert not (tmp_path / "out" / "heatmaps").exists()


@pytest.mark.parametrize("content", [b"not an image at all", None])
def test_cli_unreadable_frame_names_the_file(tmp_path, capsys, scene, content):
    frame = tmp_path / "frame.png"
    if content is None:  # a PNG cut in half
        scene.image.save(frame)
        frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    else:
        frame.write_bytes(content)
    assert main(["classroom", str(frame), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(frame) in err and "not a readable image" in err


def test_cli_missing_file_and_bad_view(tmp_path, capsys):
    assert main(["classroom", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "out")]) == 1
    assert "nope.jpg: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classroom", "x.png", "--out", "o", "--views", "gradcam,energy"])


def test_cli_thresholds(tmp_path, scene, capsys):
    frame = tmp_path / "frame.png"
    scene.image.save(frame)
    assert main(["classroom", str(frame), "--out", str(tmp_path / "bad"), "--thresholds", "0.6", "0.7", "1.5"]) == 1
    assert "--thresholds" in capsys.readouterr().err
    for flag, value in (("--factor", "1.5"), ("--min-consistency", "1")):
        assert main(["classroom", str(frame), "--out", str(tmp_path / "bad"), flag, value]) == 1
        assert flag in capsys.readouterr().err
    counts = []
    published = ["--thresholds", "0.6", "0.7", "0.7", "--factor", "0.709", "--min-consistency", "0"]
    for name, flags in (("published", published), ("default", [])):
        out = tmp_path / name
        assert main(["classroom", str(frame), "--out", str(out), "--views", "none", *flags]) == 0
        counts.append(len(_read_csv(out / "students.csv")))
    assert counts[1] >= counts[0]


def test_viewer_picks_a_scene_and_a_student(model, detector, scene):
    from sfer.classroom.figures import StudentViewer

    viewer = StudentViewer(model, [scene, Image.new("RGB", (400, 300), (200, 200, 190))], detector, dpi=40)
    drawn = viewer.update(student=2)
    assert drawn["student"] == 2 and drawn["truth"] in scene.classes
    assert set(drawn["heatmaps"]) == {"gradcam", "sources"}
    assert "image/png" in viewer._repr_mimebundle_()  # what a notebook without a kernel shows
    assert viewer.update(scene=1) == {"scene": 1, "student": None}
    assert viewer.student.options == (("no face found", 0),)
