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
        if self.n == 0:
            return "not run yet"
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


def verdict_above(diff: Estimate) -> str:
    """Verdict on "A is above B" from the paired difference A - B."""
    return verdict_below(Estimate(-diff.mean, -diff.high, -diff.low, diff.n, diff.values, diff.mde))


def map_means(map_records: list[dict], name: str, measure: str) -> dict[int, float]:
    """Per seed, the mean of one measure of one map over that seed's faces (NaN faces left out)."""
    out = {}
    for r in map_records:
        values = [v for v in r["scores"][name].get(measure, []) if v is not None]  # a baseline may lack a measure
        if values:
            out[r["seed"]] = float(np.mean(values))
    return out


def map_paired(map_records: list[dict], a: str, b: str, measure: str) -> Estimate:
    """Paired difference over seeds of a measure's per-seed means, map A - map B."""
    ma, mb = map_means(map_records, a, measure), map_means(map_records, b, measure)
    return estimate(ma[s] - mb[s] for s in sorted(set(ma) & set(mb)))


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


def ablation_figure(records: list[dict], regimes=("hard", "default"), variants=("full", "nm", "np", "na", "rw")):
    """Figure 6 from the records, one column per regime. Top: test accuracy of each variant,
    mean and 95% interval over seeds, each seed's run as a dot, n under each. Bottom: the
    paired difference ``variant - full`` over shared seeds, the quantity the verdicts test."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(regimes), 7.0), layout="constrained")
    axes = fig.subplots(2, len(regimes), squeeze=False)
    for column, regime in enumerate(regimes):
        ax, diff_ax = axes[0, column], axes[1, column]
        for x, variant in enumerate(variants):
            where = dict(regime=regime, variant=variant, topn=15 if variant in ("full", "nm", "np") else None)
            est = cell(records, **where)
            if est.n == 0:
                continue
            ax.errorbar(x, 100 * est.mean, yerr=[[100 * (est.mean - est.low)], [100 * (est.high - est.mean)]]
                        if est.n > 1 else None, fmt="o", color="tab:blue" if variant == "full" else "tab:gray",
                        capsize=4, markersize=7)
            ax.scatter([x + 0.15] * est.n, [100 * v for v in est.values], s=10, color="black", alpha=0.5)
            ax.annotate(f"n = {est.n}", (x, 100 * (est.high if est.n > 1 else est.mean)), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)
        for x, row in enumerate(ablation_rows(records, regime, variants[1:])[1:]):  # row 0 is full itself
            diff = row["diff"]
            if diff.n == 0:
                continue
            diff_ax.errorbar(x, 100 * diff.mean, yerr=[[100 * (diff.mean - diff.low)], [100 * (diff.high - diff.mean)]]
                             if diff.n > 1 else None, fmt="o", color="tab:gray", capsize=4, markersize=7)
            diff_ax.scatter([x + 0.15] * diff.n, [100 * v for v in diff.values], s=10, color="black", alpha=0.5)
        diff_ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(variants)), variants)
        diff_ax.set_xticks(range(len(variants) - 1), variants[1:])
        ax.set_title(f"{regime} regime: test accuracy", fontsize=10)
        diff_ax.set_title(f"{regime}: variant − full, same seeds (< 0: full better)", fontsize=10)
        ax.set_ylabel("test accuracy (%)")
        ax.margins(y=0.12)  # room for the n labels above the intervals
        diff_ax.set_ylabel("points")
        for a in (ax, diff_ax):
            a.grid(alpha=0.3, axis="y")
    fig.suptitle("Figure 6 on the synthetic faces: mean and 95% interval over seeds (dots: one run each)")
    return fig


def topn_figure(records: list[dict], rerouted: dict[int, float] | None = None, regime: str = "hard"):
    """Figure 7 from the records, two panels. Left: test accuracy of ``full`` trained at each
    topn (mean and 95% interval over seeds, each seed's run as a dot, n under each point);
    ``rerouted`` ({topn: accuracy}) adds the models trained at topn 15 and re-routed, for the
    contrast between retraining and re-routing. Right: the paired difference ``topn - 15`` over
    shared seeds, the quantity the verdicts test (marginal intervals can overlap where a paired
    one excludes 0)."""
    from matplotlib.figure import Figure

    def bars(estimates):  # error bars of a sequence of estimates; none for a single seed
        return [[100 * (e.mean - e.low) if e.n > 1 else 0 for e in estimates],
                [100 * (e.high - e.mean) if e.n > 1 else 0 for e in estimates]]

    fig = Figure(figsize=(12, 4.4), layout="constrained")
    ax, diff_ax = fig.subplots(1, 2)
    rows = [r for r in topn_rows(records, regime) if r["cell"].n]
    if rows:
        ts, cells = [r["topn"] for r in rows], [r["cell"] for r in rows]
        ax.errorbar(ts, [100 * e.mean for e in cells], yerr=bars(cells), capsize=4, marker="o",
                    label="trained at each topn")
        for t, e in zip(ts, cells):
            ax.scatter([t + 0.8] * e.n, [100 * v for v in e.values], s=10, color="black", alpha=0.5)
            ax.annotate(f"n = {e.n}", (t, 100 * (e.low if e.n > 1 else e.mean)), textcoords="offset points",
                        xytext=(0, -14), ha="center", fontsize=7)
    if rerouted:
        ax.plot(list(rerouted), [100 * a for a in rerouted.values()], marker="s", linestyle="--", color="tab:orange",
                label="trained at 15, re-routed")
    diffs = [(r["topn"], r["diff"]) for r in rows if r["diff"] is not None and r["diff"].n]
    if diffs:
        diff_ax.errorbar([t for t, _ in diffs], [100 * d.mean for _, d in diffs], yerr=bars([d for _, d in diffs]),
                         capsize=4, marker="o", linestyle="none", color="tab:blue")
    diff_ax.axhline(0, color="black", lw=0.8)
    diff_ax.set_title("paired difference, topn − 15, same seeds (below 0: 15 is better)", fontsize=10)
    diff_ax.set_ylabel("points")
    for a in (ax, diff_ax):
        a.axvline(15, color="grey", linestyle=":", label="the paper's topn = 15" if a is ax else None)
        a.set_xlabel("topn (regions each region reads, of m² = 49)")
        a.grid(alpha=0.3)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy (dots: one run each)", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"Figure 7 on the synthetic faces ({regime} regime): mean and 95% interval over seeds")
    return fig


def ablation_rows(records: list[dict], regime: str, variants=("nm", "np", "na", "rw"),
                  paper_topn: int = 15) -> list[dict]:
    """Figure 6's claims of one regime, as the scorecard states them: per variant its cell,
    the paired difference ``variant - full`` over shared seeds and the verdict on "below full".
    Each row: ``variant``, ``where`` (the cell's fields, for :func:`select`), ``cell`` and
    ``diff`` (:class:`Estimate`), ``verdict`` (str); the first row is ``full``'s."""
    full = dict(regime=regime, variant="full", topn=paper_topn)
    rows = [{"variant": "full", "where": full, "cell": cell(records, **full), "diff": None, "verdict": ""}]
    for variant in variants:
        where = dict(regime=regime, variant=variant, topn=paper_topn if variant in ("nm", "np") else None)
        diff = paired(records, where, full)
        rows.append({"variant": variant, "where": where, "cell": cell(records, **where), "diff": diff,
                     "verdict": verdict_below(diff)})
    return rows


def rerouted_means(records: list[dict], regime: str = "hard", topn: int = 15) -> dict:
    """Mean over seeds of ``rerouted_accuracy`` of the ``full`` runs trained at ``topn``:
    {topn (int): accuracy} for each re-routed topn, and ``"kroa_off"`` (R = L4); {} when
    no such record has them."""
    runs = [r["rerouted_accuracy"] for r in select(records, regime=regime, variant="full", topn=topn).values()
            if r.get("rerouted_accuracy")]
    keys = sorted({k for run in runs for k in run}, key=lambda k: (k == "kroa_off", int(k) if k.isdigit() else 0))
    return {(int(k) if k.isdigit() else k): float(np.mean([run[k] for run in runs if k in run])) for k in keys}


def topn_rows(records: list[dict], regime: str = "hard", topns=(1, 10, 20, 30, 40, 49), base: int = 15) -> list[dict]:
    """Figure 7's claims: per topn its cell, the paired difference ``topn - base`` over shared
    seeds and the verdict on "below ``base``" (the paper: 15 is best)."""
    base_where = dict(regime=regime, variant="full", topn=base)
    rows = [{"topn": base, "cell": cell(records, **base_where), "diff": None, "verdict": ""}]
    for topn in topns:
        where = dict(regime=regime, variant="full", topn=topn)
        diff = paired(records, where, base_where)
        rows.append({"topn": topn, "cell": cell(records, **where), "diff": diff, "verdict": verdict_below(diff)})
    return sorted(rows, key=lambda r: r["topn"])
