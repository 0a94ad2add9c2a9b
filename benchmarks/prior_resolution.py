"""How fair is the prior baseline to a 7x7 map? Key-region energy of three maps that no
model made, on fresh synthetic faces of each regime:

- the prior as the measures use it: the mean key-region mask of the training split, pixel-sharp;
- the same prior at the resolution of every explained map: average-pooled to the 7x7 L4 grid
  and resized back bilinearly, as a Grad-CAM or sources map is;
- each face's own mask at that resolution: the best any 7x7 map could do (an oracle).

    python benchmarks/prior_resolution.py            # 600 training faces, 300 test faces

Prints one markdown table; docs/explainability.md ("How fair is the prior?") holds its figures.
"""

from __future__ import annotations

import argparse

import numpy as np

from sfer.data import SyntheticClassroomFaces, synthetic_splits
from sfer.engine.config import REGIMES, TrainConfig
from sfer.explain import mean_mask
from sfer.explain.measures import at_map_resolution, key_region_energy, t_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=600, help="training faces the prior averages (default 600)")
    parser.add_argument("--test", type=int, default=300, help="test faces (default 300)")
    parser.add_argument("--seed", type=int, default=20240917, help="seed of the test faces")
    args = parser.parse_args()
    print(f"key-region energy, mean [95% interval] over {args.test} faces (seed {args.seed}); "
          f"prior from {args.train} training faces\n")
    print("| regime | sharp prior | prior at 7x7 | each face's own mask at 7x7 (oracle) |")
    print("| --- | --- | --- | --- |")
    for regime, (nuisance, cue) in REGIMES.items():
        # the prior as benchmarks/key_region_energy.py and the claims grid build it: the training split's masks
        train = synthetic_splits(args.train, 0, 0, seed=TrainConfig.data_seed, nuisance=nuisance, cue=cue)["train"]
        test = SyntheticClassroomFaces(args.test, seed=args.seed, nuisance=nuisance, cue=cue)
        masks = np.stack([test.mask(i) for i in range(len(test))])
        prior = np.broadcast_to(mean_mask(train), masks.shape)
        maps = (prior, at_map_resolution(prior[:1]).repeat(len(masks), 0), at_map_resolution(masks.astype(float)))
        cells = ["{:.3f} [{:.3f}, {:.3f}]".format(*t_interval(key_region_energy(m, masks))) for m in maps]
        print(f"| {regime} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
