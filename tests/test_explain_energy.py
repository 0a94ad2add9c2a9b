"""Key-region energy on hand-made maps, the t interval, and compare_targets over a small split."""

import numpy as np
import pytest
import torch
from scipy import stats

from sfer.explain import compare_targets, key_region_energy, t_interval
from sfer.models import build_model


def test_hand_made_maps_give_exact_shares():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 of 16 pixels
    inside = np.where(mask, 1.0, 0.0)
    ramp = np.zeros((4, 4))
    ramp[0, 0], ramp[3, 3] = 3.0, 1.0  # 3 of 4 units of mass inside
    cams = np.stack([inside, np.ones((4, 4)), ramp, 1 - inside])
    shares = key_region_energy(cams, np.stack([mask] * 4))
    np.testing.assert_allclose(shares, [1.0, 0.25, 0.75, 0.0])
    assert key_region_energy(ramp, mask) == pytest.approx(0.75)  # one (H, W) map


def test_empty_maps_have_no_share_and_bad_input_is_refused():
    assert np.isnan(key_region_energy(np.zeros((1, 3, 3)), np.ones((1, 3, 3), bool))).all()
    with pytest.raises(ValueError, match="differ in shape"):
        key_region_energy(np.ones((1, 3, 3)), np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="non-negative"):
        key_region_energy(-np.ones((1, 3, 3)), np.ones((1, 3, 3), bool))


def test_t_interval_matches_scipy_and_covers_the_mean():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.2, 0.6, size=300)
    mean, low, high = t_interval(np.append(values, np.nan))  # NaN is left out
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(ref)
    covered = np.mean([lo < 0.4 < hi for _, lo, hi in (t_interval(rng.uniform(0.2, 0.6, 50)) for _ in range(400))])
    assert 0.92 < covered < 0.98  # about 95% of the intervals hold the true mean
    assert t_interval(values[:30])[2] - t_interval(values[:30])[1] > high - low  # fewer values, wider
    assert np.isnan(t_interval([0.5])[1])


def test_compare_targets_summaries():
    torch.manual_seed(0)
    full, rw = (build_model("tiny", v, num_classes=6).eval() for v in ("full", "rw"))
    images = torch.randn(6, 3, 112, 112)
    masks = np.zeros((6, 56, 56), bool)  # half-size masks are resized to the CAM size
    for i in range(6):
        masks[i, 10:20 + 3 * i, 15:40] = True
    labels = [0, 1, 2, 3, 4, 5]
    result = compare_targets({"l4": full, "window": rw, "kroafe": full}, images, masks, class_idx=labels,
                             batch_size=4)
    assert list(result.summaries) == ["l4", "window", "kroafe", "uniform"]
    area = masks.mean(axis=(1, 2))
    np.testing.assert_allclose(result.shares["uniform"], area)
    assert result.summaries["uniform"].mean == pytest.approx(area.mean())
    assert result.summaries["uniform"].lift == 0
    for name, s in result.summaries.items():
        assert s.low <= s.mean <= s.high and s.n == 6 and s.undefined == 0
        assert 0 <= s.mean <= 1
        assert s.lift == pytest.approx(np.mean(result.shares[name] - area))
    table = result.markdown()
    assert table.count("\n") == 5 and "| kroafe | " in table and "95% CI" in table
    with pytest.raises(ValueError, match="6 images but 5 masks"):
        compare_targets({"l4": full}, images, masks[:5])
