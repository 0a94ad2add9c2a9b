"""The map measures: energy, pointing game, distractors, class sensitivity, ROAD; baselines, intervals, bugs."""

import numpy as np
import pytest
import torch
from scipy import stats

from sfer.data import IMAGENET_MEAN, IMAGENET_STD, SyntheticClassroomFaces, eval_transform
from sfer.explain import compute_cam, mean_mask, measure_faces, measure_maps, synthetic_faces
from sfer.explain.measures import key_region_energy
from sfer.explain.measures import (MapMeasures, at_map_resolution, class_sensitivity, pointing_game, road_scores,
                                   t_interval)
from sfer.models import build_model


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {v: build_model("tiny", v, num_classes=6).eval() for v in ("full", "rw")}


@pytest.fixture(scope="module")
def occluded():
    """Six faces of seed 5: a book, a pen and a hand on faces 1, 2 and 5."""
    return SyntheticClassroomFaces(6, seed=5)


def test_hand_made_maps_give_exact_shares():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 of 16 pixels
    inside = np.where(mask, 1.0, 0.0)
    ramp = np.zeros((4, 4))
    ramp[0, 0], ramp[3, 3] = 3.0, 1.0  # 3 of 4 units of mass inside
    cams = np.stack([inside, np.ones((4, 4)), ramp, 1 - inside])
    np.testing.assert_allclose(key_region_energy(cams, np.stack([mask] * 4)), [1.0, 0.25, 0.75, 0.0])
    assert key_region_energy(ramp, mask) == pytest.approx(0.75)  # one (H, W) map
    assert np.isnan(key_region_energy(np.zeros((1, 3, 3)), np.ones((1, 3, 3), bool))).all()
    with pytest.raises(ValueError, match="differ in shape"):
        key_region_energy(np.ones((1, 3, 3)), np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="non-negative"):
        key_region_energy(-np.ones((1, 3, 3)), np.ones((1, 3, 3), bool))


def test_pointing_game_on_hand_made_maps():
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2, 2] = True
    maps = np.zeros((3, 8, 8))
    maps[0, 2, 2], maps[1, 3, 3], maps[2, 7, 7] = 1, 1, 1
    np.testing.assert_array_equal(pointing_game(maps, masks), [1, 0, 0])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=1), [1, 1, 0])
    assert np.isnan(pointing_game(np.zeros((1, 8, 8)), masks[:1])).all()


def test_class_sensitivity_on_hand_made_maps():
    left, right = np.zeros((4, 4)), np.zeros((4, 4))
    left[:, :2], right[:, 2:] = 1.0, 2.0
    half = left + right / 2  # mass spread evenly: half of it moves from left
    maps, others = np.stack([left, left, left, left]), np.stack([3 * left, right, half, np.zeros((4, 4))])
    np.testing.assert_allclose(class_sensitivity(maps, others), [0.0, 1.0, 0.5, np.nan])  # scale does not count


def test_t_interval_matches_scipy_and_covers_the_mean():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.2, 0.6, size=300)
    mean, low, high = t_interval(np.append(values, np.nan))  # NaN is left out
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(ref)
    covered = np.mean([lo < 0.4 < hi for _, lo, hi in (t_interval(rng.uniform(0.2, 0.6, 50)) for _ in range(400))])
    assert 0.92 < covered < 0.98  # about 95% of the intervals hold the true mean
    assert np.isnan(t_interval([0.5])[1])


def test_a_share_near_one_keeps_its_interval_inside_zero_to_one():
    hits = np.array([1.0] * 58 + [0.0] * 2)  # a pointing game at 97%: the plain t interval ends past 1
    assert t_interval(hits)[2] > 1.0
    mean, low, high = t_interval(hits, bounds=(0.0, 1.0))
    assert (mean, high) == (pytest.approx(58 / 60), 1.0) and 0.9 < low < mean
    measures = MapMeasures({"map": {"pointing": hits, "road": hits - 0.5}})
    assert measures.summary("map", "pointing")[2] == 1.0                 # a hit rate lies in [0, 1]
    assert measures.summary("map", "road")[2] == t_interval(hits - 0.5)[2]  # ROAD is not a share: left as it is


def test_measure_maps_and_road(models):
    faces = synthetic_faces(4, seed=4321, nuisance=0.5)
    maps = {"KROAFE sources": (models["full"], "kroafe", "attention_sources"),
            "window Grad-CAM": (models["rw"], "window", "gradcam")}
    result = measure_maps(maps, faces.images, faces.masks, faces.labels, measures=("energy", "pointing", "road"),
                          road_percentiles=(50,))
    assert set(result.scores) == {"KROAFE sources", "window Grad-CAM", "uniform"}
    area = np.asarray(faces.masks, dtype=float).mean(axis=(1, 2))
    np.testing.assert_allclose(result.scores["uniform"]["energy"], area, rtol=1e-6)
    assert all(np.isfinite(s["road"]).all() and (np.abs(s["road"]) <= 1).all() for s in result.scores.values())
    mean, low, high, n = result.difference("KROAFE sources", "uniform", "energy")
    assert low <= mean <= high and n == 4
    assert "KROAFE sources" in result.markdown()
    assert "−" in result.differences_markdown([("KROAFE sources", "uniform")])
    # ROAD is seeded and leaves the caller's random state alone
    state = torch.random.get_rng_state()
    cams = compute_cam(models["full"], faces.images[:2], "kroafe", method="sources")
    first = road_scores(models["full"], faces.images[:2], cams, faces.labels[:2], percentiles=(50,))
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(first, road_scores(models["full"], faces.images[:2], cams, faces.labels[:2],
                                                     percentiles=(50,)))
    with pytest.raises(ValueError, match="unknown measures"):
        measure_maps(maps, faces.images, faces.masks, faces.labels, measures=("energy", "iou"))
    with pytest.raises(ValueError, match="need occluder_masks and face_masks"):
        measure_maps(maps, faces.images, faces.masks, faces.labels, measures=("occluder",))
    with pytest.raises(ValueError, match=r"masks must be \(N, h, w\) with N = 4"):
        measure_maps(maps, faces.images, faces.masks[:3], faces.labels)


def test_each_model_gets_its_own_transform():
    """Bug: every model's PIL input went through the first model's transform."""
    torch.manual_seed(0)
    a, b = (build_model("tiny", "full", num_classes=6).eval() for _ in range(2))
    a.eval_transform = eval_transform(112, IMAGENET_MEAN, IMAGENET_STD)
    b.eval_transform = eval_transform(112, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    faces = synthetic_faces(3, seed=7)
    args = (faces.images, faces.masks, faces.labels)
    beside = measure_maps({"a": (a, "l4", "gradcam"), "b": (b, "l4", "gradcam")}, *args, measures=("energy",))
    alone = measure_maps({"b": (b, "l4", "gradcam")}, *args, measures=("energy",))
    np.testing.assert_allclose(beside.scores["b"]["energy"], alone.scores["b"]["energy"], rtol=1e-6)


def test_an_all_zero_map_is_nan_in_every_measure(occluded):
    """Bug: ROAD scored an all-zero map as a random ordering where energy and pointing gave NaN."""
    torch.manual_seed(0)
    model = build_model("tiny", "full", num_classes=6).eval()
    with torch.no_grad():
        model.head.weight[0] = 0  # class 0 has no evidence anywhere: its maps are all zero
    result = measure_maps({"sources": (model, "kroafe", "sources")}, [occluded.render(i) for i in (1, 2)],
                          np.stack([occluded.mask(i) for i in (1, 2)]), [0, 1],
                          occluder_masks=np.stack([occluded.occluder_mask(i) for i in (1, 2)]),
                          face_masks=np.stack([occluded.face_mask(i) for i in (1, 2)]),
                          measures=("energy", "pointing", "occluder", "background", "class_sensitivity", "road"),
                          road_percentiles=(50,))
    for measure, values in result.scores["sources"].items():
        assert np.isnan(values[0]) and np.isfinite(values[1]), measure
    assert result.summary("sources", "road")[3] == result.summary("sources", "energy")[3] == 1


def test_distractors_prior_and_class_sensitivity(models, occluded):
    full = models["full"]
    prior = mean_mask(SyntheticClassroomFaces(12, seed=11))
    maps = {"L4 Grad-CAM": (full, "l4", "gradcam"), "KROAFE sources": (full, "kroafe", "attention_sources")}
    result = measure_faces(maps, occluded, prior=prior)
    assert set(result.scores) == {"L4 Grad-CAM", "KROAFE sources", "uniform", "prior"}
    assert set(result.scores["prior"]) == {"energy", "pointing", "occluder", "background", "class_sensitivity"}
    key = np.stack([occluded.mask(i) for i in range(6)])
    occluder = np.stack([occluded.occluder_mask(i) for i in range(6)]) & ~key
    background = ~np.stack([occluded.face_mask(i) for i in range(6)]) & ~occluder & ~key
    has = [1, 2, 5]  # faces with an occluder
    for name in result.scores:
        for measure in ("occluder", "background"):
            values = result.scores[name][measure]
            assert np.isnan(np.delete(values, has)).all() and np.isfinite(values[has]).all(), (name, measure)
    # by hand: the raw map's share on each region
    raw = compute_cam(full, [occluded.render(i) for i in range(6)], "kroafe", "attention_sources",
                      occluded.targets, scaled=False)
    sources = result.scores["KROAFE sources"]
    np.testing.assert_allclose(sources["occluder"][has], key_region_energy(raw, occluder)[has], rtol=1e-6)
    np.testing.assert_allclose(sources["background"][has], key_region_energy(raw, background)[has], rtol=1e-6)
    np.testing.assert_allclose(result.scores["uniform"]["occluder"][has], occluder[has].mean(axis=(1, 2)))
    np.testing.assert_allclose(result.scores["prior"]["energy"], (prior * key).sum(axis=(1, 2)) / prior.sum())
    assert (result.scores["prior"]["energy"] > result.scores["uniform"]["energy"]).all()  # it knows where cues are
    for baseline in ("uniform", "prior"):
        np.testing.assert_array_equal(result.scores[baseline]["class_sensitivity"], 0)  # never moves
    sensitivity = sources["class_sensitivity"]
    assert ((sensitivity > 0) & (sensitivity <= 1)).all()
    # energy per class, with the same intervals
    groups = result.by_class("KROAFE sources")
    assert sorted(groups) == list(range(6)) and all(n == 1 for *_, n in groups.values())
    assert groups[3][0] == pytest.approx(sources["energy"][3])
    table = result.class_markdown(names=occluded.classes)
    assert "| happy (95% CI) |" in table.splitlines()[0] and table.count("\n") == 5


def test_class_sensitivity_is_paired_and_seeded(models):
    faces = synthetic_faces(3, seed=2)
    maps = {"L4": (models["full"], "l4", "gradcam")}
    args = (maps, faces.images, faces.masks, faces.labels)
    first = measure_maps(*args, measures=("class_sensitivity",), seed=1).scores["L4"]["class_sensitivity"]
    again = measure_maps(*args, measures=("class_sensitivity",), seed=1).scores["L4"]["class_sensitivity"]
    np.testing.assert_allclose(first, again, rtol=1e-6)  # the same other classes (CPU threads round apart)
    other = (np.asarray(faces.labels) + np.random.default_rng(1).integers(1, 6, size=3)) % 6
    by_hand = class_sensitivity(compute_cam(models["full"], faces.images, "l4", class_idx=faces.labels, scaled=False),
                                compute_cam(models["full"], faces.images, "l4", class_idx=other, scaled=False))
    np.testing.assert_allclose(first, by_hand, rtol=1e-6)


def test_mean_mask_and_map_measures_without_classes():
    faces = SyntheticClassroomFaces(4, seed=0)
    prior = mean_mask(faces)
    np.testing.assert_allclose(prior, np.mean([faces.mask(i) for i in range(4)], axis=0))
    assert prior.shape == (112, 112) and 0 <= prior.min() and prior.max() <= 1
    with pytest.raises(ValueError, match="at least one face"):
        mean_mask(faces, indices=[])
    with pytest.raises(ValueError, match="without class_idx"):
        MapMeasures({"a": {"energy": np.ones(3)}}).by_class("a")


def test_tensor_images_and_masks_of_another_size(models):
    """Preprocessed tensors are taken as they are; half-size masks are resized (nearest) to each map."""
    images = torch.randn(3, 3, 112, 112)
    masks = np.zeros((3, 56, 56), bool)
    for i in range(3):
        masks[i, 10:20 + 3 * i, 15:40] = True
    result = measure_maps({"L4": (models["full"], "l4", "gradcam")}, images, masks, [0, 1, 2], measures=("energy",),
                          batch_size=2)
    np.testing.assert_allclose(result.scores["uniform"]["energy"], masks.mean(axis=(1, 2)))
    assert result.scores["L4"]["energy"].shape == (3,)


def test_at_map_resolution_keeps_each_cells_mass_but_not_its_detail():
    stroke = np.zeros((1, 112, 112))
    stroke[0, 40, 20:60] = 1.0                                   # a one-pixel line, as a brow's mask is
    coarse = at_map_resolution(stroke)
    assert coarse.shape == stroke.shape and coarse.max() < 0.1      # no 7x7 map can follow it
    cells = coarse[0].reshape(7, 16, 7, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(cells.sum(), stroke.sum() / 256, rtol=0.05)  # about the same mass per cell area
    np.testing.assert_allclose(at_map_resolution(np.full((2, 112, 112), 0.3)), 0.3)  # a flat map stays flat
