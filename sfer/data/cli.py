"""``sfer data``: ``synth`` writes synthetic faces to disk; ``check`` reads a real data set through.

``plain_data_warnings`` is how every command that reads a real data set (``sfer
train``, ``sfer evaluate``) shows the warning about skipped bad items: one plain line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

from .export import export_synthetic
from .real import DATASET_SPLITS, LOADERS, DataError, SkippedItemsWarning, build_dataset


@contextlib.contextmanager
def plain_data_warnings(command: str):
    """Within, a :class:`SkippedItemsWarning` prints as one line on stderr, e.g.
    ``sfer train: rafdb train: skipped 2 bad item(s); `sfer data check rafdb ROOT --splits train` lists them``,
    rather than as a ``UserWarning`` with a file, a line number and a source line.
    Other warnings show as before. Under torchrun only the first process prints it."""
    show_other = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, SkippedItemsWarning):
            show_other(message, category, filename, lineno, file, line)
        elif os.environ.get("RANK", "0") == "0":
            print(f"{command}: {message.summary()}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = show_other


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

    check = commands.add_parser("check", help="decode every image of a real data set; list bad and excluded items")
    check.add_argument("name", choices=sorted(LOADERS))
    check.add_argument("root", type=Path)
    check.add_argument("--splits", nargs="+", help="default: all of the data set's splits")
    check.add_argument("--affectnet-classes", type=int, choices=(7, 8), default=None,
                       help="affectnet: 7 classes (default; contempt excluded) or 8")
    check.add_argument("--crop-faces", action=argparse.BooleanOptionalAction, default=None,
                       help="affectnet, official CSV: crop to the face box (default on)")
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
    """Exit 0 when every split reads cleanly, 1 when an item is bad or a split unusable.

    Every bad item is listed, one per line (this is the list the one-line warning of
    ``sfer train`` and ``sfer evaluate`` points to); excluded items, which can be
    thousands, are counted by reason, with the first one of each.
    """
    options = {k: v for k, v in (("num_classes", args.affectnet_classes), ("crop_faces", args.crop_faces))
               if v is not None}
    if options and args.name != "affectnet":
        print(f"sfer data check: --affectnet-classes and --crop-faces apply to affectnet, not {args.name}")
        return 2
    status = 0
    for split in args.splits or DATASET_SPLITS[args.name]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SkippedItemsWarning)  # the skipped items are listed below
                ds = build_dataset(args.name, args.root, split, skip_bad=True, **options)
        except (DataError, ValueError) as err:
            print(f"{split}: {err}")
            status = 1
            continue
        counts = Counter(ds.targets)
        print(f"{split}: {len(ds)} images; " + ", ".join(f"{c} {counts[k]}" for k, c in enumerate(ds.classes)))
        if ds.skipped:
            print(f"  {len(ds.skipped)} bad, skipped:")
            for where, reason in ds.skipped:
                print(f"    {where}: {reason}")
        if ds.excluded:
            first: dict[str, str] = {}
            for where, reason in ds.excluded:
                first.setdefault(reason, where)
            by_reason = Counter(reason for _, reason in ds.excluded)
            print(f"  {len(ds.excluded)} excluded:")
            for reason, n in by_reason.items():
                print(f"    {n} {reason} (first: {first[reason]})")
        status |= bool(ds.skipped)
    return status
