"""The claims grid's records and their statistics: cell means, paired differences, verdicts.

``docs/results/claims.jsonl`` holds one record per trained run (``benchmarks/claims.py``
writes it). Runs that share a seed share everything else but the setting under test
(same faces, same initial random state, same batch order), so a claim such as "``nm``
falls below ``full``" is tested by the paired differences ``nm - full`` of the same
seed: the seed is the unit, and each difference already contains the per-face noise of
its 600 test faces.

Intervals are Student-t 95% intervals over seeds. The smallest difference a design can
detect (``mde``) is the true mean difference that a two-sided paired t-test at 5%
finds with 80% power: ``(t_0.975 + t_0.80) * sd / sqrt(n)`` with n - 1 degrees of freedom.

A verdict on "A is below B": **holds** when the interval of A - B lies below 0,
**contradicted** when it lies above 0, otherwise **not shown at this power**.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "results" / "claims.jsonl"


def load_records(path: str | Path = RECORDS) -> list[dict]:
    """The records of ``path`` (default: the repository's ``docs/results/claims.jsonl``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no claims records at {path}: run `python benchmarks/claims.py run` first")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not a JSON record: {err}") from err
    return records


def select(records: list[dict], **where) -> dict[int, dict]:
    """The records matching every ``field=value`` of ``where``, by seed (fast recipe unless asked)."""
    where.setdefault("recipe", "fast")
    chosen = {}
    for r in records:
        if all(r.get(k, "fast" if k == "recipe" else None) == v for k, v in where.items()):
            chosen[r["seed"]] = r
    return chosen


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% interval, the values, and the smallest detectable mean."""

    mean: float
    low: float
    high: float
    n: int
    values: tuple[float, ...]
    mde: float

    def __str__(self) -> str:
        if self.n < 2:
            return f"{100 * self.mean:.2f} (n = {self.n})"
        return f"{100 * self.mean:.2f} [{100 * self.low:.2f}, {100 * self.high:.2f}] (n = {self.n})"


def estimate(values) -> Estimate:
    """Mean, Student-t 95% interval and 80%-power detectable mean of ``values`` (over seeds)."""
    v = np.asarray(list(values), dtype=float)
    n = len(v)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, (), math.nan)
    mean = float(v.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, tuple(v), math.nan)
    se = float(v.std(ddof=1)) / math.sqrt(n)
    t = stats.t.ppf(0.975, n - 1)
    mde = (t + stats.t.ppf(0.80, n - 1)) * se
    return Estimate(mean, mean - t * se, mean + t * se, n, tuple(v), float(mde))


def cell(records: list[dict], **where) -> Estimate:
    """Test accuracy of one cell over its seeds."""
    return estimate(r["test_accuracy"] for r in select(records, **where).values())


def paired(records: list[dict], a: dict, b: dict) -> Estimate:
    """Paired difference of test accuracy, A - B, over the seeds both cells have."""
    runs_a, runs_b = select(records, **a), select(records, **b)
    seeds = sorted(set(runs_a) & set(runs_b))
    return estimate(runs_a[s]["test_accuracy"] - runs_b[s]["test_accuracy"] for s in seeds)


def verdict_below(diff: Estimate) -> str:
    """Verdict on "A is below B" from the paired difference A - B."""
    if diff.n < 2:
        return "not run yet" if diff.n == 0 else "not shown at this power"
    if diff.high < 0:
        return "holds"
    if diff.low > 0:
        return "contradicted"
    return "not shown at this power"


def face_agreement(records: list[dict], a: dict, b: dict) -> dict[str, float]:
    """Per-face paired view, pooled over the shared seeds: the share of faces only A gets
    right, only B gets right, and McNemar's exact p-value of each seed, combined by
    Fisher's method (a check beside the seed-level test, not a replacement)."""
    runs_a, runs_b = select(records, **a), select(records, **b)
    only_a = only_b = total = 0
    pvalues = []
    for seed in sorted(set(runs_a) & set(runs_b)):
        ya = np.asarray(runs_a[seed]["test_predictions"]) == np.asarray(runs_a[seed]["test_labels"])
        yb = np.asarray(runs_b[seed]["test_predictions"]) == np.asarray(runs_b[seed]["test_labels"])
        n10, n01 = int((ya & ~yb).sum()), int((~ya & yb).sum())
        only_a, only_b, total = only_a + n10, only_b + n01, total + len(ya)
        if n10 + n01:
            pvalues.append(stats.binomtest(n10, n10 + n01).pvalue)
    combined = stats.combine_pvalues(pvalues).pvalue if pvalues else math.nan
    return {"only_a": only_a / max(total, 1), "only_b": only_b / max(total, 1), "p_mcnemar": float(combined)}
