"""The claims grid: many seeded training runs, one JSON line each, resumable.

    nice -n 19 python benchmarks/claims.py run --commit   # runs what is missing, commits each record
    python benchmarks/claims.py plan                      # the cells, and which runs are done
    python benchmarks/claims.py report                    # docs/claims.md from the records

``run`` trains every missing run of the grid with ``sfer train`` in a child process,
from the checkout this script is in (run it from a ``git worktree`` of a fixed commit, so
that edits in the main checkout cannot reach a run; ``--records-repo`` names the checkout
whose ``docs/results`` receive the records),
then predicts the test faces with the run's ``best.pt`` and appends one record to
``docs/results/claims.jsonl``. A run whose record is there is skipped, so the grid
grows over several sittings and survives an interrupted one (a killed run leaves no
record and is simply run again). ``--commit`` commits the records file after each run.

The cells (issue 17), in the order they run, so that a partial grid is already useful:

- ``default`` seed 0: the five variants on the default regime, the shipped checkpoints;
- ``hard``: ``full``, ``nm``, ``np``, ``na``, ``rw`` on the hard regime (Figure 6), seeds 0-2;
- ``topn``: ``full`` on the hard regime trained at topn 1, 10, 20, 30, 40 and 49 (Figure 7;
  topn 15 is the ``hard`` cell's ``full``), seeds 0-2;
- ``hard`` seeds 3 and 4 (Figure 6 at five seeds before the near-ceiling default regime's);
- ``default``: the five variants on the default regime, seeds 1-2;
- ``recipe``: ``full`` on the default regime in plain fp32 eager (``--no-amp --no-compile``),
  seeds 0-2: the check that the fast CPU recipe leaves accuracy unchanged.

Every run shares the data (``data_seed`` 0: the same train, validation and 600 test
faces) and differs by ``--seed`` (initialisation, shuffling, augmentation), so two
runs of one seed are paired: same data, same order of batches.

Each record: ``regime``, ``variant``, ``topn``, ``regions``, ``seed``, ``epochs``,
``recipe``, ``test_accuracy``, ``test_predictions`` and ``test_labels`` (600 class
indices each, for paired tests), for ``full`` at topn 15 ``rerouted_accuracy`` (the same
model re-routed to each topn without retraining, and with KROA off), ``best_epoch``, ``bf16``, ``compiled``, ``train_time_s``,
``commit`` (HEAD when the run started; ``code_dirty`` says whether ``sfer/`` differed
from it), ``torch``, ``cpu`` and ``command``, the exact ``sfer train`` line that
reproduces the run to the same accuracy on this kind of CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the code that trains; records go to --records-repo
RECORDS = ROOT / "docs" / "results" / "claims.jsonl"
RUNS = Path("runs") / "claims"
VARIANTS = ("full", "nm", "np", "na", "rw")
TOPN = (1, 10, 20, 30, 40, 49)
PAPER_TOPN, PAPER_REGIONS, EPOCHS = 15, 7, 8


@dataclass(frozen=True)
class Run:
    """One cell x seed of the grid."""

    cell: str
    regime: str
    variant: str
    seed: int
    topn: int | None = None  # None: no KROA (na, rw), or the paper's 15
    recipe: str = "fast"     # "fast" (the defaults) or "fp32" (plain fp32 eager)

    @property
    def routing(self) -> tuple[int | None, int | None]:
        if self.variant in ("na", "rw"):
            return None, None
        return (self.topn or PAPER_TOPN), PAPER_REGIONS

    @property
    def name(self) -> str:
        topn, _ = self.routing
        return f"{self.regime}-{self.variant}{f'-topn{topn}' if topn not in (None, PAPER_TOPN) else ''}" \
               f"{'-fp32' if self.recipe == 'fp32' else ''}-seed{self.seed}"

    @property
    def key(self) -> tuple:
        return (self.regime, self.variant, *self.routing, self.seed, EPOCHS, self.recipe)

    def command(self) -> list[str]:
        args = ["sfer", "train", "--regime", self.regime, "--variant", self.variant, "--seed", str(self.seed),
                "--epochs", str(EPOCHS)]
        if self.topn is not None and self.topn != PAPER_TOPN:
            args += ["--topn", str(self.topn)]
        if self.recipe == "fp32":
            args += ["--no-amp", "--no-compile"]
        return args + ["--out", str(RUNS / self.name)]


def grid() -> list[Run]:
    runs = [Run("default", "default", v, 0) for v in ("full", "rw", "na", "nm", "np")]  # the shipped checkpoints
    runs += [Run("hard", "hard", v, s) for s in range(3) for v in VARIANTS]
    runs += [Run("topn", "hard", "full", s, topn=t) for s in range(3) for t in TOPN]
    runs += [Run("hard", "hard", v, s) for s in (3, 4) for v in VARIANTS]
    runs += [Run("default", "default", v, s) for s in (1, 2) for v in VARIANTS]
    runs += [Run("recipe", "default", "full", s, recipe="fp32") for s in range(3)]
    return runs


def record_key(record: dict) -> tuple:
    return (record["regime"], record["variant"], record["topn"], record["regions"], record["seed"],
            record["epochs"], record.get("recipe", "fast"))


def load_records(path: Path | None = None) -> list[dict]:
    """Every record of ``path`` (default: the records file), in file order; none before the first run."""
    from sfer.claims import load_records as read

    path = RECORDS if path is None else path
    return read(path) if path.is_file() else []


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def predict_test(out: Path) -> tuple[list[int], list[int], float]:
    """Test predictions of ``out/best.pt`` on its own test split, in the precision it trained in."""
    import torch

    from sfer.engine import load_checkpoint, load_model
    from sfer.engine.config import TrainConfig
    from sfer.engine.evaluate import autocast, build_splits, uses_channels_last

    model, ckpt = load_model(out / "best.pt"), load_checkpoint(out / "best.pt")
    cfg = TrainConfig(**ckpt["config"])
    device = torch.device("cpu")
    if uses_channels_last(device, cfg.amp):
        model = model.to(memory_format=torch.channels_last)
    test = build_splits(cfg, ckpt["preprocessing"], splits=("test",))["test"]
    predictions = []
    with torch.no_grad():
        for start in range(0, len(test), cfg.batch_size):
            items = [test[i] for i in range(start, min(start + cfg.batch_size, len(test)))]
            images = torch.stack([image for image, _ in items])
            if uses_channels_last(device, cfg.amp):
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg.amp):
                predictions += model(images).float().argmax(1).tolist()
    labels = list(test.targets)
    return predictions, labels, sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def rerouted_accuracies(out: Path, topns=(1, 10, 15, 20, 30, 40, 49)) -> dict:
    """A ``full`` model trained at topn 15, re-routed without retraining: test accuracy at each
    topn (m = 7), and with KROA off (R = L4: the block replaced by the identity), the contrast
    with Figure 7's retrained cell and with ``na`` (trained without KROA)."""
    import torch

    from sfer.engine import load_checkpoint, load_model
    from sfer.engine.config import TrainConfig
    from sfer.engine.evaluate import autocast, build_splits, uses_channels_last

    model, ckpt = load_model(out / "best.pt"), load_checkpoint(out / "best.pt")
    cfg = TrainConfig(**ckpt["config"])
    device = torch.device("cpu")
    test = build_splits(cfg, ckpt["preprocessing"], splits=("test",))["test"]
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor(test.targets)
    if uses_channels_last(device, cfg.amp):
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)

    def accuracy() -> float:
        with torch.no_grad(), autocast(device, cfg.amp):
            predicted = torch.cat([model(batch).float().argmax(1) for batch in images.split(cfg.batch_size)])
        return float((predicted == labels).double().mean())

    result = {}
    for topn in topns:
        model.set_routing(topn=topn, regions=PAPER_REGIONS)
        result[str(topn)] = accuracy()
    model.set_routing(topn=PAPER_TOPN, regions=PAPER_REGIONS)
    model.kroafe = torch.nn.Identity()
    result["kroa_off"] = accuracy()
    return result


def run_one(run: Run) -> dict:
    out = ROOT / RUNS / run.name
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "sfer"))
    command = run.command()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sfer.cli", *command[1:], "--no-progress"], cwd=ROOT, check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    predictions, labels, accuracy = predict_test(out)
    if abs(accuracy - metrics["test_accuracy"]) > 1e-9:
        raise RuntimeError(f"{run.name}: predicted test accuracy {accuracy} differs from the run's "
                           f"{metrics['test_accuracy']}")
    topn, regions = run.routing
    extra = {}
    if run.variant == "full" and topn == PAPER_TOPN and run.recipe == "fast":
        extra["rerouted_accuracy"] = rerouted_accuracies(out)
    return {
        "regime": run.regime, "variant": run.variant, "topn": topn, "regions": regions, "seed": run.seed,
        "epochs": EPOCHS, "recipe": run.recipe, "cell": run.cell, "test_accuracy": metrics["test_accuracy"],
        "best_epoch": metrics["best_epoch"], "best_val_accuracy": metrics["best_val_accuracy"],
        "bf16": metrics.get("bf16"), "compiled": metrics.get("compiled"),
        "train_time_s": round(metrics["train_time_s"], 1), "wall_time_s": round(time.perf_counter() - started, 1),
        "commit": commit, "code_dirty": dirty, "torch": metrics["torch"], "cpu": platform.processor() or
        platform.machine(), "command": shlex.join(command),
        **extra, "test_labels": labels, "test_predictions": predictions,
    }


MAPS = ROOT / "docs" / "results" / "claims_maps.jsonl"
MAP_SPECS = {  # name -> (variant whose model draws it, target, method)
    "L4 Grad-CAM": ("full", "l4", "gradcam"),
    "KROAFE Grad-CAM": ("full", "kroafe", "gradcam"),
    "window Grad-CAM": ("rw", "window", "gradcam"),
    "KROAFE sources": ("full", "kroafe", "attention_sources"),
    "window sources": ("rw", "window", "attention_sources"),
}


def measure_seed(regime: str, seed: int, num_faces: int) -> dict:
    """Figure 8's maps of one seed's ``full`` and ``rw`` runs on the regime's first test faces."""
    from sfer.data import synthetic_splits
    from sfer.engine import load_checkpoint, load_model
    from sfer.engine.config import TrainConfig
    from sfer.explain import mean_mask, measure_faces

    models, cfg = {}, None
    for variant in ("full", "rw"):
        path = ROOT / RUNS / Run("hard", regime, variant, seed).name / "best.pt"
        models[variant], ckpt = load_model(path), load_checkpoint(path)
        cfg = TrainConfig(**ckpt["config"])
    faces = synthetic_splits(cfg.num_train, cfg.num_val, cfg.num_test, seed=cfg.data_seed, image_size=112,
                             nuisance=cfg.nuisance, cue=cfg.cue)
    maps = {name: (models[variant], target, method) for name, (variant, target, method) in MAP_SPECS.items()}
    result = measure_faces(maps, faces["test"], indices=range(num_faces), prior=mean_mask(faces["train"]), seed=seed)
    return {"regime": regime, "seed": seed, "num_faces": num_faces, "commit": _git("rev-parse", "HEAD"),
            "class_idx": [int(c) for c in result.class_idx],
            "scores": {name: {measure: [None if v != v else round(float(v), 5) for v in values]
                              for measure, values in per_map.items()}
                       for name, per_map in result.scores.items()}}


def with_prior_at_map_resolution(map_records: list[dict]) -> list[dict]:
    """Each seed's map scores with one more baseline, ``prior at 7x7``: the prior brought to the
    explained maps' resolution (:func:`~sfer.explain.measures.at_map_resolution`), scored on key-region
    energy. It needs no model, and every seed measured the same faces (the data seed is fixed), so it is
    computed once per regime; the sharp prior's stored energies are recomputed first, to check that
    these are the records' faces."""
    import numpy as np

    from sfer.data import synthetic_splits
    from sfer.engine.config import TrainConfig
    from sfer.explain import mean_mask
    from sfer.explain.measures import at_map_resolution, key_region_energy

    energies = {}  # (regime, faces) -> (sharp prior, prior at 7x7) per face
    out = []
    for record in map_records:
        key = (record["regime"], record["num_faces"])
        if key not in energies:
            cfg = TrainConfig(regime=record["regime"])
            faces = synthetic_splits(cfg.num_train, cfg.num_val, cfg.num_test, seed=cfg.data_seed, image_size=112,
                                     nuisance=cfg.nuisance, cue=cfg.cue)
            prior = mean_mask(faces["train"])
            masks = np.stack([faces["test"].mask(i) for i in range(record["num_faces"])])
            energies[key] = tuple(key_region_energy(np.broadcast_to(p, masks.shape), masks)
                                  for p in (prior, at_map_resolution(prior[None])[0]))
        sharp, coarse = energies[key]
        if not np.allclose(sharp, record["scores"]["prior"]["energy"], atol=1e-5):
            raise ValueError(f"{MAPS}: seed {record['seed']}'s prior energies are not those of the faces rebuilt here")
        scores = {**record["scores"], "prior at 7x7": {"energy": [round(float(v), 5) for v in coarse]}}
        out.append({**record, "scores": scores})
    return out


def cmd_maps(args) -> None:
    """Measure Figure 8's maps for every hard-regime seed whose full and rw runs are done."""
    _use_records_repo(args.records_repo)
    done = {(r["regime"], r["seed"]) for r in load_records(MAPS)}
    trained = {(r["regime"], r["variant"], r["seed"]) for r in load_records() if r.get("recipe", "fast") == "fast"
               and r["topn"] in (None, PAPER_TOPN)}
    for seed in range(5):
        if ("hard", seed) in done or not {("hard", "full", seed), ("hard", "rw", seed)} <= trained:
            continue
        print(f"[claims] maps of hard seed {seed} on {args.faces} faces", flush=True)
        record = measure_seed("hard", seed, args.faces)
        with open(MAPS, "a") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        if args.commit:
            _commit(MAPS, f"claims maps: hard seed {seed}")


def _commit(path: Path, message: str) -> None:
    repo = path.parents[2]  # <repo>/docs/results/<file>
    subprocess.run(["git", "add", "--", str(path.relative_to(repo))], cwd=repo)
    for attempt in range(20):  # another git command may hold the index lock for a moment
        if subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path.relative_to(repo))],
                          cwd=repo).returncode == 0:
            return
        time.sleep(3)


def cmd_plan(args) -> None:
    done = {record_key(r) for r in load_records()}
    for run in grid():
        print(f"{'done' if run.key in done else 'todo'}  {run.cell:8s} {shlex.join(run.command())}")


def _use_records_repo(repo: str | None) -> None:
    global RECORDS, MAPS
    if repo:
        RECORDS = Path(repo).resolve() / "docs" / "results" / "claims.jsonl"
        MAPS = Path(repo).resolve() / "docs" / "results" / "claims_maps.jsonl"


def cmd_run(args) -> None:
    _use_records_repo(args.records_repo)
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    todo = [run for run in grid() if run.key not in {record_key(r) for r in load_records()}]
    for run in todo[:args.max_runs]:
        print(f"[claims] {run.name}: {shlex.join(run.command())}", flush=True)
        record = run_one(run)
        with open(RECORDS, "a") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        print(f"[claims] {run.name}: test accuracy {record['test_accuracy']:.4f}", flush=True)
        if args.commit:
            _commit(RECORDS, f"claims grid: {run.name}")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def scorecard(records: list[dict]) -> str:
    """docs/claims.md: every claim, its experiment, our number with its interval, a verdict."""
    from sfer.claims import cell, face_agreement, paired, verdict_below

    done = len(records)
    lines = ["# The paper's claims: a scorecard", "",
             f"Generated by `python benchmarks/claims.py report` from {done} records of "
             f"`docs/results/claims.jsonl` ({len(grid())} in the full grid; their runs took "
             f"{sum(r['wall_time_s'] for r in records) / 3600:.1f} hours of wall time). Accuracies in %, "
             "mean [95% interval] over seeds (Student-t); differences are paired by seed (same faces, "
             "same initial state, same batches). **mde** is the smallest true difference the design "
             "detects with 80% power. Verdicts: *holds* (interval below 0), *contradicted* (above 0), "
             "*not shown at this power* (the interval covers 0). `sfer.claims` computes every figure; "
             "notebooks 07 and 09 draw from the same records.", "",
             "Each verdict is one test at the 95% level, and the scorecard makes 22 of them (8 in Figure 6, "
             "6 in Figure 7, 8 in Figure 8), not corrected for multiplicity: were no claim true, about one "
             "verdict in twenty would still read *holds* or *contradicted*. Read a verdict whose interval ends "
             "near 0 as weak, and look for agreement across seeds, regimes and measures.", ""]
    for regime in ("hard", "default"):
        lines += [f"## Figure 6 (ablation), {regime} regime", "",
                  _row(["variant", "test accuracy", "paired difference vs full", "mde", "faces only variant / "
                        "only full right", "McNemar p (Fisher)", "claim: below full"]),
                  _row(["---"] + ["---:"] * 5 + ["---"])]
        lines.append(_row(["full", str(cell(records, regime=regime, variant="full", topn=PAPER_TOPN)),
                           "", "", "", "", ""]))
        for variant in VARIANTS[1:]:
            where = dict(regime=regime, variant=variant)
            if variant in ("nm", "np"):
                where["topn"] = PAPER_TOPN
            full = dict(regime=regime, variant="full", topn=PAPER_TOPN)
            diff = paired(records, where, full)
            agree = face_agreement(records, where, full)
            faces = [f"{100 * agree['only_a']:.2f} / {100 * agree['only_b']:.2f}", f"{agree['p_mcnemar']:.3g}"] \
                if diff.n else ["", ""]
            lines.append(_row([variant, str(cell(records, **where)), str(diff),
                               f"{100 * diff.mde:.2f}" if diff.n > 1 else "", *faces, verdict_below(diff)]))
        lines.append("")
    lines += ["## Figure 7 (topn, each trained at its own topn), hard regime", "",
              _row(["topn", "test accuracy", "paired difference vs topn 15", "mde", "claim", "verdict"]),
              _row(["---:", "---:", "---:", "---:", "---", "---"])]
    base = dict(regime="hard", variant="full", topn=PAPER_TOPN)
    verdicts = []
    for topn in sorted((PAPER_TOPN, *TOPN)):
        where = dict(regime="hard", variant="full", topn=topn)
        if topn == PAPER_TOPN:
            lines.append(_row([str(topn), str(cell(records, **where)), "", "", "the best", ""]))
            continue
        diff = paired(records, where, base)
        verdict = verdict_below(diff)
        verdicts.append((topn, verdict))
        lines.append(_row([str(topn), str(cell(records, **where)), str(diff),
                           f"{100 * diff.mde:.2f}" if diff.n > 1 else "", "below 15", verdict]))
    found = [v for _, v in verdicts]
    best = ("contradicted" if "contradicted" in found else "holds" if found and set(found) == {"holds"}
            else "not run yet" if not found or set(found) == {"not run yet"} else "not shown at this power")
    lines += ["", f"The paper's words: topn 15 is best; topn 1 is worse; topn 30, 40 and 49 are worse. "
              f"*topn 15 is best* holds only where every other topn falls below it, and a topn whose interval lies "
              f"above 15 contradicts it: **{best}**.", ""]
    lines += figure8_section(load_records(MAPS) if MAPS.is_file() else [])
    lines += table4_section()
    recipe = paired(records, dict(regime="default", variant="full", topn=PAPER_TOPN, recipe="fp32"),
                    dict(regime="default", variant="full", topn=PAPER_TOPN))
    lines += ["## The fast CPU recipe leaves accuracy unchanged", "",
              f"`full`, default regime: plain fp32 eager "
              f"{cell(records, regime='default', variant='full', topn=PAPER_TOPN, recipe='fp32')} against "
              f"bf16 + channels-last + compile {cell(records, regime='default', variant='full', topn=PAPER_TOPN)}; "
              f"paired difference (fp32 - fast) {recipe}.", ""]
    return "\n".join(lines)


def figure8_section(maps: list[dict]) -> list[str]:
    """Figure 8's claims from the measured maps: seed-level means and paired differences."""
    from sfer.claims import estimate, map_means, map_paired, verdict_above, verdict_below

    faces = maps[0]["num_faces"] if maps else 0
    lines = ["## Figure 8 (where the maps are), hard regime", "",
             f"Each seed's `full` and `rw` models explain the class of {faces} test faces; a seed's figure is the "
             "mean over its faces (NaN faces, an empty map or no occluder, left out), and the interval is over "
             "seeds. *Sources* are the attention part of each block's exact token shares (the residual part, "
             "which bypasses attention, left out). Energy: the share of a map's raw mass on the key region. "
             "Occluder / background: the share on the occluder / off the face, on faces with an occluder. "
             "Class sensitivity: how far the map moves when it explains another class (0: not at all). "
             "Baselines: uniform, and the prior (the mean key-region mask of the training faces). The prior "
             "is pixel-sharp while every map is a 7x7 grid resized up, which cannot follow a thin stroke, so "
             "it is also given at the maps' resolution, *prior at 7x7* (pooled to the L4 grid and resized back "
             "like a map; energy only, computed from the faces by `with_prior_at_map_resolution`; "
             "`docs/explainability.md`, \"How fair is the prior?\"), and the prior claim is tested against both.",
             "",
             _row(["map", "energy", "pointing", "occluder", "background", "class sensitivity"]),
             _row(["---"] + ["---:"] * 5)]
    maps = with_prior_at_map_resolution(maps) if maps else maps
    names = list(MAP_SPECS) + ["uniform", "prior", "prior at 7x7"]
    for name in names:
        cells = []
        for measure in ("energy", "pointing", "occluder", "background", "class_sensitivity"):
            est = estimate(map_means(maps, name, measure).values()) if maps else None
            # every measure here is a share or a hit rate: its interval is cut to [0, 1], as MapMeasures does
            cells.append("" if est is None or est.n == 0 else
                         f"{est.mean:.3f} [{max(est.low, 0):.3f}, {min(est.high, 1):.3f}]" if est.n > 1
                         else f"{est.mean:.3f}")
        lines.append(_row([name, *cells]))
    claims = [
        ("KROAFE is on the key regions more than L4 (Grad-CAM of each, as the paper draws them)",
         "KROAFE Grad-CAM", "L4 Grad-CAM", "energy", verdict_above),
        ("KROAFE's sources are on the key regions more than the prior baseline",
         "KROAFE sources", "prior", "energy", verdict_above),
        ("KROAFE's sources are on the key regions more than the prior at the maps' resolution",
         "KROAFE sources", "prior at 7x7", "energy", verdict_above),
        ("window attention is on the key regions less than KROAFE (sources)",
         "window sources", "KROAFE sources", "energy", verdict_below),
        ("window attention is drawn to the occluder more than KROAFE (Grad-CAM)",
         "window Grad-CAM", "KROAFE Grad-CAM", "occluder", verdict_above),
        ("window attention is drawn to the occluder more than KROAFE (sources)",
         "window sources", "KROAFE sources", "occluder", verdict_above),
        ("window attention is drawn to the background more than KROAFE (sources)",
         "window sources", "KROAFE sources", "background", verdict_above),
        ("KROAFE is not drawn to the occluder: its share is below a uniform map's (sources)",
         "KROAFE sources", "uniform", "occluder", verdict_below),
    ]
    lines += ["", _row(["claim", "measure", "paired difference (A - B) over seeds", "mde", "verdict"]),
              _row(["---", "---", "---:", "---:", "---"])]
    for text, a, b, measure, verdict in claims:
        diff = map_paired(maps, a, b, measure) if maps else None
        shown = "" if diff is None or diff.n == 0 else \
            f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] (n = {diff.n})" if diff.n > 1 else f"{diff.mean:+.3f}"
        lines.append(_row([f"{text}; A = {a}, B = {b}", measure, shown,
                           f"{diff.mde:.3f}" if diff is not None and diff.n > 1 else "",
                           verdict(diff) if diff is not None else "not run yet"]))
    return lines + [""]


def table4_section() -> list[str]:
    """Table 4: the paper preset's size against the paper's figures for SFER-MDFAE and POSTER++."""
    from sfer.models import build_model
    from sfer.models.complexity import count_macs, count_parameters

    model = build_model("paper", "full", num_classes=7).eval()
    params, macs = count_parameters(model) / 1e6, count_macs(model) / 1e9
    return ["## Table 4 (size)", "",
            _row(["model", "parameters (M)", "multiply-adds (G)", "source"]), _row(["---", "---:", "---:", "---"]),
            _row(["SFER-MDFAE", "31.975", "6.362", "the paper's Table 4"]),
            _row(["SFER-MDFAE, this package's `paper` preset", f"{params:.3f}", f"{macs:.3f}", "counted here"]),
            _row(["POSTER++", "43.724", "8.482", "the paper's Table 4 (not built here)"]), "",
            f"Claim: fewer parameters and FLOPs than POSTER++. **Holds** for the model as built here "
            f"({params:.3f} M < 43.724 M, {macs:.3f} G < 8.482 G), against the paper's own POSTER++ figures: "
            "POSTER++ is not rebuilt here, so the comparison is with its published count.", ""]


def cmd_report(args) -> None:
    records = load_records()
    path = ROOT / "docs" / "claims.md"
    path.write_text(scorecard(records))
    print(f"wrote {path.relative_to(ROOT)} from {len(records)} records")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True)
    plan = sub.add_parser("plan", help="list the grid and what is done")
    plan.set_defaults(func=cmd_plan)
    run = sub.add_parser("run", help="train the missing runs, one record each")
    run.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    run.add_argument("--commit", action="store_true", help="git-commit the records file after each run")
    run.add_argument("--records-repo", help="checkout whose docs/results receive the records (default: this one)")
    run.set_defaults(func=cmd_run)
    maps = sub.add_parser("maps", help="measure Figure 8's maps of the finished hard-regime full/rw seeds")
    maps.add_argument("--faces", type=int, default=300, help="test faces per seed")
    maps.add_argument("--commit", action="store_true", help="git-commit the maps file after each seed")
    maps.add_argument("--records-repo", help="checkout whose docs/results hold the records (default: this one)")
    maps.set_defaults(func=cmd_maps)
    report = sub.add_parser("report", help="write docs/claims.md from the records")
    report.set_defaults(func=cmd_report)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
