"""``sfer train`` and ``sfer evaluate``.

Every training flag defaults to ``None`` ("not given"), so that only the flags a
user types override the ``--config`` file (or the checkpoint being resumed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sfer.data.cli import plain_data_warnings
from sfer.models import PRESETS, VARIANTS

from .config import DATASETS, REGIMES
from .evaluate import evaluate_checkpoint
from .train import NonFiniteLossError, fit

# Errors a user can fix from the message alone: printed without a traceback.
_USER_ERRORS = (FileNotFoundError, ValueError, NonFiniteLossError)

# flag -> TrainConfig field, for the flags that map one to one
_TRAIN_FLAGS = ("preset", "variant", "topn", "regions", "ir50", "data", "dataset", "num_train", "num_val",
                "num_test", "data_seed", "regime", "nuisance", "skip_bad", "affectnet_classes", "crop_faces",
                "val_fraction", "select_on_test", "flip", "erase_p", "epochs", "batch_size", "lr", "weight_decay",
                "patience", "schedule", "seed", "out", "resume", "device", "amp", "compile", "num_workers",
                "save_every", "sync_batchnorm")


def _fail(command: str, err: Exception) -> int:
    print(f"sfer {command}: error: {err}", file=sys.stderr)
    return 1


def run_train(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in _TRAIN_FLAGS}
    try:
        with plain_data_warnings("sfer train"):
            fit(args.config, progress=not args.no_progress, **overrides)
    except _USER_ERRORS as err:
        return _fail("train", err)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    stem = Path(args.checkpoint).stem
    out = args.out or Path("runs") / "evaluate" / f"{stem}-{args.dataset or args.data or 'trained'}-{args.split}"
    try:
        with plain_data_warnings("sfer evaluate"):
            result = evaluate_checkpoint(args.checkpoint, data=args.data, dataset=args.dataset, split=args.split,
                                         out=out, variant=args.variant, batch_size=args.batch_size,
                                         device=args.device, num_workers=args.num_workers, num_test=args.num_test,
                                         progress=not args.no_progress, skip_bad=args.skip_bad,
                                         affectnet_classes=args.affectnet_classes, crop_faces=args.crop_faces)
    except _USER_ERRORS as err:
        return _fail("evaluate", err)
    skipped = f", {len(result['skipped'])} bad skipped" if result["skipped"] else ""
    print(f"{result['checkpoint']} on {result['dataset']} {result['split']} "
          f"({result['num_samples']} images{skipped}): accuracy {result['accuracy']:.4f}\n")
    print(result["report_text"])
    print(f"wrote {Path(out) / 'evaluation.json'} and {Path(out) / 'confusion_matrix.png'}")
    return 0


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train SFER-MDFAE (the synthetic data by default)",
        description="Train, validate, early-stop and test. Flags override --config, which overrides the "
                    "defaults (the synthetic recipe). Writes last.pt, best.pt, log.csv, metrics.json and "
                    "curves.png to --out. Under torchrun, trains on every process with DDP.")
    arg = train.add_argument
    arg("--config", help="YAML file of training settings, e.g. configs/rafdb.yaml")
    arg("--preset", choices=list(PRESETS), help="model size (default tiny)")
    arg("--variant", choices=list(VARIANTS), help="ablation variant (default full)")
    arg("--topn", type=int, help="KROA: regions each region attends to (default 15)")
    arg("--regions", type=int, help="KROA: region grid m (default 7)")
    arg("--ir50", help="MS-Celeb-1M ir50.pth backbone weights to start from")
    arg("--data", help="'synthetic' (generated faces, the default) or the data set's path")
    arg("--dataset", choices=list(DATASETS), help="loader for --data")
    arg("--num-train", type=int, help="synthetic training images")
    arg("--num-val", type=int, help="synthetic validation images")
    arg("--num-test", type=int, help="synthetic test images")
    arg("--data-seed", type=int, help="seed of the synthetic faces")
    arg("--regime", choices=list(REGIMES),
        help="synthetic faces: default, or hard (nuisances at 0.9 of full strength, cues at 0.9: the tiny model "
             "off the ceiling)")
    arg("--nuisance", type=float, help="strength of the synthetic faces' classroom nuisances, 0..1 (default 0.5)")
    arg("--skip-bad", action="store_true", default=None, help="skip unreadable images with a warning")
    arg("--affectnet-classes", type=int, choices=(7, 8),
        help="AffectNet: 7 classes (default, the paper's; contempt excluded) or 8 with contempt")
    arg("--crop-faces", action=argparse.BooleanOptionalAction, default=None,
        help="AffectNet's official CSV: crop each image to its face box (default on)")
    arg("--val-fraction", type=float,
        help="RAF-DB, AffectNet (whose validation split is their test split): the share of train held out, "
             "seeded and stratified, to choose the best epoch on (default 0.1)")
    arg("--select-on-test", action="store_true", default=None,
        help="RAF-DB, AffectNet: choose the best epoch on the test split, as the papers do (recorded as "
             "selected_on: test in metrics.json; the test accuracy is then optimistic)")
    arg("--flip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flip (default on)")
    arg("--erase-p", type=float, help="probability of random erasing (default 0 on the synthetic faces; the paper's is 0.5)")
    arg("--epochs", type=int, help="maximum epochs")
    arg("--batch-size", type=int, help="global batch size (split across torchrun processes)")
    arg("--lr", type=float, help="Adam learning rate")
    arg("--weight-decay", type=float, help="Adam weight decay")
    arg("--patience", type=int, help="early stopping: epochs without a better validation accuracy")
    arg("--schedule", choices=["constant", "cosine"], help="learning-rate schedule")
    arg("--seed", type=int, help="seed of initialisation, shuffling and augmentation")
    arg("--out", help="output folder (default runs/<dataset>-<preset>-<variant>)")
    arg("--resume", help="continue from a last.pt")
    arg("--device", help="auto (default), cpu, cuda or cuda:N")
    arg("--amp", action=argparse.BooleanOptionalAction, default=None,
        help="bf16 autocast where the device runs bf16 natively: CUDA, AVX512-BF16/AMX CPUs (default on)")
    arg("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the model (default: on a CPU that runs bf16 natively, off elsewhere)")
    arg("--save-every", type=int, help="write last.pt every N epochs and after the last (default 1)")
    arg("--sync-batchnorm", action=argparse.BooleanOptionalAction, default=None,
        help="under torchrun on CUDA, batch norm over the global batch rather than each GPU's shard (default off; "
             "docs/training.md says when to turn it on)")
    arg("--num-workers", type=int, help="data-loader processes (default 0 on CPU, up to 8 on CUDA)")
    arg("--no-progress", action="store_true", help="one line per epoch instead of progress bars")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="accuracy, classification report and confusion matrix of a checkpoint",
        description="Evaluate a checkpoint on one split; writes evaluation.json and confusion_matrix.png "
                    "(row-normalised, like the paper's Figure 5).")
    arg = evaluate.add_argument
    arg("--checkpoint", required=True, help="a best.pt, last.pt or shipped checkpoint")
    arg("--data", help="'synthetic' or the data set's path (default: what the checkpoint was trained on)")
    arg("--dataset", choices=list(DATASETS), help="loader for --data")
    arg("--split", default="test", choices=["train", "val", "test"])
    arg("--out", help="output folder (default runs/evaluate/<checkpoint>-<data>-<split>)")
    arg("--variant", choices=list(VARIANTS), help="fail unless the checkpoint is this variant")
    arg("--num-test", type=int, help="synthetic test images (default: as trained)")
    arg("--skip-bad", action="store_true",
        help="skip unreadable images with a warning (default: stop at the first, whatever training did)")
    arg("--affectnet-classes", type=int, choices=(7, 8), help="AffectNet: 7 or 8 classes (default: as trained)")
    arg("--crop-faces", action=argparse.BooleanOptionalAction, default=None,
        help="AffectNet's official CSV: crop to the face box (default: as trained)")
    arg("--batch-size", type=int)
    arg("--device", default="auto")
    arg("--num-workers", type=int)
    arg("--no-progress", action="store_true")
    evaluate.set_defaults(func=run_evaluate)
