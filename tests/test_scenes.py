"""Synthetic classroom scenes: determinism, rows, light, occluders, boxes, landmarks and masks."""

import numpy as np
import pytest

from sfer.data.scenes import SCENE_OCCLUDERS, classroom_scene


@pytest.fixture(scope="module")
def scene():
    return classroom_scene(0)


def test_same_seed_same_bytes_other_seed_other_frame(scene):
    again = classroom_scene(0)
    assert np.array_equal(np.asarray(scene.image), np.asarray(again.image))
    for a, b in zip(scene.students, again.students):
        assert a.box == b.box and a.label == b.label and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(np.asarray(scene.image), np.asarray(classroom_scene(1).image))


def test_rows_balanced_labels_and_reading_order(scene):
    assert [sum(s.row == r for s in scene.students) for r in range(3)] == [4, 5, 6]
    counts = list(scene.counts().values())
    assert sum(counts) == 15 and max(counts) - min(counts) <= 1
    rows = [s.row for s in scene.students]
    assert rows == sorted(rows)
    for r in range(3):
        xs = [s.box[0] for s in scene.students if s.row == r]
        assert xs == sorted(xs)


def test_rows_further_back_are_smaller_and_higher(scene):
    height = [np.mean([s.box[3] - s.box[1] for s in scene.students if s.row == r]) for r in range(3)]
    centre = [np.mean([s.box[1] + s.box[3] for s in scene.students if s.row == r]) for r in range(3)]
    assert height[0] > height[1] > height[2]
    assert centre[0] > centre[1] > centre[2]


def test_rows_further_back_are_blurrier():
    """The front row is painted last and never blurred: its key pixels do not depend on the blur."""
    sharp, blurred = classroom_scene(2, row_blur_px=0.0), classroom_scene(2)
    a, b = np.asarray(sharp.image, np.float32), np.asarray(blurred.image, np.float32)
    change = [np.abs(a - b)[sharp.key_mask(k)].mean() for k in range(len(sharp.students))]
    rows = np.array([s.row for s in sharp.students])
    by_row = [np.mean([c for c, r in zip(change, rows) if r == row]) for row in range(3)]
    assert by_row[0] == 0.0
    assert 0 < by_row[1] < by_row[2]


def test_light_falls_off_away_from_the_window():
    frames = [np.asarray(classroom_scene(s, noise_sigma=0).image, np.float32).mean(axis=(0, 2)) for s in range(4)]
    ratios = [max(f[:100].mean(), f[-100:].mean()) / min(f[:100].mean(), f[-100:].mean()) for f in frames]
    assert min(ratios) > 1.15


def test_occlusion_probability():
    assert {s.occluder for s in classroom_scene(3, occlusion=0.0).students} == {"none"}
    every = {s.occluder for s in classroom_scene(3, occlusion=1.0).students}
    assert "none" not in every and every <= set(SCENE_OCCLUDERS)


def test_boxes_landmarks_and_masks_agree(scene):
    h, w = scene.image.height, scene.image.width
    for k, s in enumerate(scene.students):
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        sx0, sy0, sx1, sy1 = s.square
        assert sx0 < x0 and x1 < sx1  # the training square is wider than the head
        assert s.landmarks.shape == (5, 2)
        x, y = s.landmarks[:, 0], s.landmarks[:, 1]
        inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)
        assert inside.all()
        assert s.landmarks[0, 0] < s.landmarks[1, 0] and s.landmarks[3, 0] < s.landmarks[4, 0]
        assert s.landmarks[0, 1] < s.landmarks[2, 1] < s.landmarks[3, 1]  # eyes above nose above mouth
        full = scene.key_mask(k)
        assert full.shape == (h, w) and full.sum() == s.mask.sum() > 0
        ys, xs = np.nonzero(full)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="320 x 240"):
        classroom_scene(0, width=100)
    with pytest.raises(ValueError, match="per_row"):
        classroom_scene(0, per_row=(0, 3))
    with pytest.raises(ValueError, match="occlusion"):
        classroom_scene(0, occlusion=2.0)
    with pytest.raises(ValueError, match="classes"):
        classroom_scene(0, classes="nope")
