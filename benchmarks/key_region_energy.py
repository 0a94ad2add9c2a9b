"""Figure 8 measured: every map's key-region energy, pointing game, distractors, class
sensitivity and ROAD, with intervals.

    python benchmarks/key_region_energy.py              # shipped tiny checkpoints, 300 faces
    python benchmarks/key_region_energy.py --jobs 2     # the same, split over two processes

Maps: Grad-CAM of L4, window attention (the ``rw`` model) and KROAFE ("where the
evidence sits"); the attention part of the sources of window attention and KROAFE
("what the attention read", :mod:`sfer.explain.sources`: the residual join's part,
which bypasses attention, is left out); and two baselines, a uniform map and the
prior (the mean key-region mask of the training faces). Each is scored on fresh
synthetic faces (a seed no checkpoint was trained, validated or tested on) by the
measures of :mod:`sfer.explain.measures`, every map explaining the face's true class;
paired differences between maps and energy per class follow. Then KROAFE's energy
against ``topn`` (m = 7, re-routed without retraining) for both views, with the full
model's accuracy.

ROAD costs a sparse linear solve per removal percentile per map per face (about 0.1 s
each at 112x112 on one core), so it dominates the run time; ``--road-num`` limits
it to the first faces and ``--jobs`` splits the faces over processes.
Prints markdown tables and writes the figure (default docs/key_region_energy.png).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from sfer.data import SyntheticClassroomFaces, synthetic_splits
from sfer.engine.config import TrainConfig
from sfer.explain import load_model, mean_mask, measure_faces
from sfer.explain.figures import measures_figure, probabilities
from sfer.explain.measures import MapMeasures

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data_samples" / "checkpoints"
MAPS = {  # name -> (which model, target, method)
    "L4 Grad-CAM": ("full", "l4", "gradcam"),
    "window Grad-CAM": ("rw", "window", "gradcam"),
    "KROAFE Grad-CAM": ("full", "kroafe", "gradcam"),
    "window sources": ("rw", "window", "attention_sources"),
    "KROAFE sources": ("full", "kroafe", "attention_sources"),
}
PAIRS = [("KROAFE sources", "window sources"), ("KROAFE sources", "KROAFE Grad-CAM"),
         ("window sources", "window Grad-CAM"), ("KROAFE Grad-CAM", "window Grad-CAM"),
         ("KROAFE sources", "L4 Grad-CAM"), ("KROAFE sources", "prior"), ("L4 Grad-CAM", "prior")]


def test_faces(args) -> SyntheticClassroomFaces:
    """Fresh faces drawn like the shipped checkpoints' training faces, from a seed of their own."""
    return SyntheticClassroomFaces(args.num, seed=args.seed, nuisance=TrainConfig.nuisance)


def prior(args) -> np.ndarray:
    """The mean key-region mask of the first ``--prior-num`` faces of the training split."""
    cfg = TrainConfig()
    train = synthetic_splits(cfg.num_train, 0, 0, seed=cfg.data_seed, nuisance=cfg.nuisance)["train"]
    return mean_mask(train, range(min(args.prior_num, len(train))))


def chunk_measures(args, start: int, stop: int, measures: tuple[str, ...]) -> MapMeasures:
    torch.set_num_threads(1)
    models = {"full": load_model(args.checkpoint), "rw": load_model(args.window_checkpoint)}
    maps = {name: (models[which], target, method) for name, (which, target, method) in MAPS.items()}
    return measure_faces(maps, test_faces(args), range(start, stop), prior=prior(args), measures=measures,
                         seed=args.seed + start)


def run_split(args, num: int, measures: tuple[str, ...]) -> MapMeasures:
    bounds = np.linspace(0, num, args.jobs + 1).astype(int)
    with ProcessPoolExecutor(args.jobs) as pool:
        parts = list(pool.map(chunk_measures, [args] * args.jobs, bounds[:-1], bounds[1:], [measures] * args.jobs))
    return MapMeasures({name: {m: np.concatenate([p.scores[name][m] for p in parts]) for m in measures}
                        for name in parts[0].scores}, class_idx=np.concatenate([p.class_idx for p in parts]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINTS / "tiny_full.pt")
    parser.add_argument("--window-checkpoint", default=CHECKPOINTS / "tiny_rw.pt")
    parser.add_argument("--num", type=int, default=300, help="faces for energy and pointing (default 300)")
    parser.add_argument("--road-num", type=int, default=300, help="of which, faces for ROAD (default 300)")
    parser.add_argument("--seed", type=int, default=20240917, help="seed of the fresh split")
    parser.add_argument("--prior-num", type=int, default=600, help="training faces the prior averages (default 600)")
    parser.add_argument("--topn", type=int, nargs="+", default=[1, 5, 15, 30, 49])
    parser.add_argument("--jobs", type=int, default=1, help="processes (one thread each)")
    parser.add_argument("--out", default=ROOT / "docs" / "key_region_energy.png")
    args = parser.parse_args()

    t0 = time.perf_counter()
    located = ("energy", "pointing", "occluder", "background", "class_sensitivity")
    result = run_split(args, args.num, located)
    road = run_split(args, min(args.road_num, args.num), ("road",))
    for name in result.scores:
        result.scores[name]["road"] = road.scores[name]["road"]

    full, rw = load_model(args.checkpoint), load_model(args.window_checkpoint)
    faces = test_faces(args)
    images = [faces.render(i) for i in range(args.num)]
    labels = np.asarray(faces.targets)

    def accuracy(model) -> float:
        return float((probabilities(model, images).argmax(1) == labels).mean())

    occluded = sum(faces.nuisances(i)["occluder"] != "none" for i in range(args.num))
    print(f"{args.num} synthetic faces (seed {args.seed}; {occluded} with an occluder; ROAD on the first "
          f"{min(args.road_num, args.num)}), true class; accuracy: full {accuracy(full):.3f}, rw {accuracy(rw):.3f}\n")
    print(result.markdown())
    print("\nPaired differences (per face, then mean and interval):\n")
    print(result.differences_markdown(PAIRS))
    print("\nKey-region energy by class:\n")
    print(result.class_markdown("energy", faces.classes))

    routing = full.config["topn"], full.config["regions"]
    sweep: dict[str, dict[int, tuple]] = {"Grad-CAM": {}, "sources": {}}
    print("\n| topn (m = 7) | KROAFE Grad-CAM energy | KROAFE sources energy | sources pointing | full accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for topn in args.topn:
        full.set_routing(topn=topn, regions=7)
        r = measure_faces({"Grad-CAM": (full, "kroafe", "gradcam"), "sources": (full, "kroafe", "attention_sources")},
                          faces, measures=("energy", "pointing"))
        cells = []
        for view in sweep:
            sweep[view][topn] = r.summary(view, "energy")[:3]
            cells.append("{:.3f} [{:.3f}, {:.3f}]".format(*sweep[view][topn]))
        cells.append("{:.3f} [{:.3f}, {:.3f}]".format(*r.summary("sources", "pointing")[:3]))
        print(f"| {topn} | " + " | ".join(cells) + f" | {accuracy(full):.3f} |")
    full.set_routing(topn=routing[0], regions=routing[1])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    measures_figure(result, sweep).savefig(out)
    print(f"\nwrote {out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
