"""The claims statistics (``sfer.claims``): cells, paired differences, verdicts, detectable differences."""

import json
import math

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from scipy import stats

from sfer.claims import (
    ablation_figure,
    ablation_rows,
    cell,
    estimate,
    face_agreement,
    load_records,
    paired,
    rerouted_means,
    topn_figure,
    topn_rows,
    verdict_above,
    verdict_below,
)


def record(variant, seed, accuracy, regime="hard", topn=15, recipe="fast", predictions=None, labels=None, **extra):
    return {"regime": regime, "variant": variant, "topn": topn, "regions": 7, "seed": seed, "epochs": 8,
            "recipe": recipe, "test_accuracy": accuracy, "test_predictions": predictions or [],
            "test_labels": labels or [], **extra}


def test_estimate_is_the_student_t_interval_over_seeds():
    values = [0.80, 0.805, 0.8417, 0.79, 0.83]
    est = estimate(values)
    low, high = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert est.n == 5 and est.mean == pytest.approx(np.mean(values))
    assert (est.low, est.high) == (pytest.approx(low), pytest.approx(high))
    assert str(est) == f"{100 * est.mean:.2f} [{100 * low:.2f}, {100 * high:.2f}] (n = 5)"


def test_mde_is_detected_with_80_percent_power():
    """A true difference of ``mde`` (with the sample's spread as the true one) is found by the two-sided
    paired t-test at 5% about 80% of the time: the power from the noncentral t distribution."""
    for n in (3, 5, 10):
        values = np.random.default_rng(n).normal(0.0, 0.02, n)
        est = estimate(values)
        sd = float(np.std(values, ddof=1))
        noncentrality = est.mde / (sd / math.sqrt(n))
        critical = stats.t.ppf(0.975, n - 1)
        power = stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.cdf(-critical, n - 1, noncentrality)
        assert 0.75 < power < 0.85, (n, power)


def test_no_seed_and_one_seed():
    assert str(estimate([])) == "not run yet" and math.isnan(estimate([]).mean)
    one = estimate([0.8])
    assert one.n == 1 and math.isnan(one.low) and str(one) == "80.00 (n = 1)"


def test_paired_uses_the_shared_seeds_and_the_fast_recipe():
    records = [record("full", s, a) for s, a in ((0, 0.80), (1, 0.81), (2, 0.84))]
    records += [record("nm", s, a) for s, a in ((0, 0.78), (1, 0.80), (3, 0.99))]  # seed 3 has no full
    records += [record("full", 0, 0.50, recipe="fp32")]  # another recipe: not full's fast cell
    diff = paired(records, dict(variant="nm"), dict(variant="full"))
    assert diff.n == 2 and diff.values == pytest.approx((-0.02, -0.01))
    assert cell(records, variant="full").n == 3
    assert cell(records, variant="full", recipe="fp32").values == (0.50,)


def test_verdicts():
    below = estimate([-0.02, -0.03, -0.025])
    above = estimate([0.02, 0.03, 0.025])
    either = estimate([-0.02, 0.03, 0.0])
    assert verdict_below(below) == "holds" and verdict_below(above) == "contradicted"
    assert verdict_below(either) == "not shown at this power"
    assert verdict_below(estimate([])) == "not run yet" and verdict_below(estimate([-0.5])) == "not shown at this power"
    assert verdict_above(above) == "holds" and verdict_above(below) == "contradicted"


def test_face_agreement_is_mcnemar_per_seed_combined_by_fisher():
    labels = [0] * 20
    full = [0] * 15 + [1] * 5  # right on the first 15 faces
    variant = [0] * 10 + [1] * 5 + [0] * 5  # right on 0-9 and 15-19
    records = [record("full", s, 0.75, predictions=full, labels=labels) for s in (0, 1)]
    records += [record("na", s, 0.75, topn=None, predictions=variant, labels=labels) for s in (0, 1)]
    agree = face_agreement(records, dict(variant="na"), dict(variant="full"))
    assert agree["only_a"] == pytest.approx(5 / 20) and agree["only_b"] == pytest.approx(5 / 20)
    p_seed = stats.binomtest(5, 10).pvalue
    assert agree["p_mcnemar"] == pytest.approx(stats.combine_pvalues([p_seed, p_seed]).pvalue)


def test_rows_of_the_scorecard():
    records = [record("full", s, 0.80 + 0.01 * s) for s in range(3)]
    records += [record("na", s, 0.85 + 0.01 * s + 0.001 * s * s, topn=None) for s in range(3)]
    records += [record("full", s, 0.70 + 0.01 * s + 0.002 * s * s, topn=1) for s in range(3)]
    rows = {r["variant"]: r for r in ablation_rows(records, "hard")}
    assert rows["na"]["verdict"] == "contradicted" and rows["nm"]["verdict"] == "not run yet"
    topns = {r["topn"]: r for r in topn_rows(records)}
    assert topns[1]["verdict"] == "holds" and topns[49]["verdict"] == "not run yet"
    assert topns[15]["cell"].n == 3


def test_rerouted_means_average_over_seeds():
    records = [record("full", s, 0.8, rerouted_accuracy={"1": 0.4 + 0.1 * s, "15": 0.8, "kroa_off": 0.3})
               for s in range(2)]
    assert rerouted_means(records) == {1: pytest.approx(0.45), 15: pytest.approx(0.8), "kroa_off": pytest.approx(0.3)}
    assert rerouted_means([record("full", 0, 0.8)]) == {}


def test_load_records_names_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        load_records(tmp_path / "nothing.jsonl")
    path = tmp_path / "claims.jsonl"
    path.write_text(json.dumps(record("full", 0, 0.8)) + "\n\n{broken\n")
    with pytest.raises(ValueError, match=r"claims.jsonl:3"):
        load_records(path)
    path.write_text(json.dumps(record("full", 0, 0.8)) + "\n")
    assert load_records(path)[0]["seed"] == 0


def test_topn_figure_draws_each_run_and_the_paired_differences():
    records = [record("full", seed, 0.80 + 0.01 * seed) for seed in range(3)]
    records += [record("full", seed, 0.75 + 0.01 * seed, topn=10) for seed in range(3)]
    records += [record("full", 0, 0.70, topn=49)]  # one seed: a point, no interval
    accuracy_ax, difference_ax = topn_figure(records).axes
    dots = [c for c in accuracy_ax.collections if isinstance(c, PathCollection)]  # scatter, not error bars
    assert sorted(len(c.get_offsets()) for c in dots) == [1, 3, 3]       # one dot per run
    assert sorted(t.get_text() for t in accuracy_ax.texts) == ["n = 1", "n = 3", "n = 3"]
    (differences,) = difference_ax.containers                              # topn 10 and 49 against 15
    np.testing.assert_allclose(np.asarray(differences.lines[0].get_ydata(), dtype=float), [-5.0, -10.0])


def test_ablation_figure_draws_accuracies_and_paired_differences():
    records = [record("full", seed, 0.80 + 0.01 * seed) for seed in range(3)]
    records += [record("na", seed, 0.84 + 0.01 * seed, topn=None) for seed in range(3)]
    accuracy_ax, difference_ax = ablation_figure(records, regimes=("hard",), variants=("full", "na")).axes
    assert sorted(t.get_text() for t in accuracy_ax.texts) == ["n = 3", "n = 3"]
    (difference,) = difference_ax.containers                          # na - full, the one point
    np.testing.assert_allclose(np.asarray(difference.lines[0].get_ydata(), dtype=float), [4.0])
