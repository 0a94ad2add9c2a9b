"""``sfer data``: ``synth`` writes synthetic faces to disk; ``check`` reads a real data set through."""

from __future__ import annotations

import argparse
import warnings
from collections import Counter
from pathlib import Path

from .export import export_synthetic
from .real import DATASET_SPLITS, LOADERS, DataError, build_dataset


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="synthetic classroom faces and real data sets")
    commands = data.add_subparsers(dest="data_command", required=True)

    synth = commands.add_parser(
        "synth", help="write synthetic faces as train/val/test class folders, with masks and a manifest",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--n", type=int, required=True, help="number of images over all splits")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=112)
    synth.add_argument("--classes", choices=("scfed", "basic"), default="scfed")
    synth.add_argument("--nuisance", type=float, default=1.0, help="strength of every nuisance, 0..1")
    synth.add_argument("--split-fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15),
                       metavar=("TRAIN", "VAL", "TEST"))
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    synth.set_defaults(func=_synth)

    check = commands.add_parser("check", help="decode every image of a real data set; report bad and excluded items")
    check.add_argument("name", choices=sorted(LOADERS))
    check.add_argument("root", type=Path)
    check.add_argument("--splits", nargs="+", help="default: all of the data set's splits")
    check.set_defaults(func=_check)


def _synth(args) -> int:
    try:
        manifest = export_synthetic(args.out, args.n, seed=args.seed, image_size=args.image_size,
                                    split_fractions=args.split_fractions, classes=args.classes,
                                    nuisance=args.nuisance, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"sfer data synth: {err}")
        return 2
    print(f"wrote {args.n} images and masks under {args.out} (manifest: {manifest})")
    return 0


def _check(args) -> int:
    """Exit 0 when every split reads cleanly, 1 when an item is bad or a split unusable."""
    status = 0
    for split in args.splits or DATASET_SPLITS[args.name]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the skipped items are printed below
                ds = build_dataset(args.name, args.root, split, skip_bad=True)
        except (DataError, ValueError) as err:
            print(f"{split}: {err}")
            status = 1
            continue
        counts = Counter(ds.targets)
        print(f"{split}: {len(ds)} images; " + ", ".join(f"{c} {counts[k]}" for k, c in enumerate(ds.classes)))
        for kind, items in (("bad, skipped", ds.skipped), ("excluded", ds.excluded)):
            if items:
                print(f"  {len(items)} {kind}: " + "; ".join(f"{w}: {r}" for w, r in items[:5])
                      + (" ..." if len(items) > 5 else ""))
        status |= bool(ds.skipped)
    return status
