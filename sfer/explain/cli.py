"""``sfer explain``: a Figure 8-like grid (original, L4, window attention, KROAFE; Grad-CAM and sources)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from sfer.models import CheckpointError

from .cam import METHODS
from .figures import explain, figure8
from .loading import class_names, load_model, synthetic_faces


def run(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.checkpoint)
        window_model = load_model(args.window_checkpoint) if args.window_checkpoint else None
        names = class_names(model)
        if window_model is not None and class_names(window_model) != names:
            raise ValueError(f"{args.window_checkpoint} has classes {class_names(window_model)}, "
                             f"{args.checkpoint} has {names}: the heatmaps would explain different classes")
        if args.topn is not None or args.regions is not None:
            model.set_routing(topn=args.topn, regions=args.regions)
        if args.image:
            images = [Image.open(p).convert("RGB") for p in args.image]
            labels = [Path(p).name for p in args.image]
        else:
            faces = synthetic_faces(args.synthetic, seed=args.seed)
            images = faces.images
            labels = [f"synthetic #{i} ({faces.classes[y]})" for i, y in enumerate(faces.labels)]
        class_idx = None if args.target_class is None else _class_index(args.target_class, names)
        result = explain(model, images, window_model, method=args.method, class_idx=class_idx,
                         sources=args.sources)
    except (FileNotFoundError, ValueError, CheckpointError, OSError) as err:
        print(f"sfer explain: error: {err}", file=sys.stderr)
        return 1

    for label, probs in zip(labels, result["probabilities"]):
        ranked = sorted(zip(names, probs), key=lambda item: -item[1])
        print(f"{label}: predicted {ranked[0][0]} (" + ", ".join(f"{n} {p:.2f}" for n, p in ranked) + ")")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure8(result, names, method=args.method, row_labels=labels).savefig(out)
    print(f"wrote {out}")
    return 0


def _class_index(value: str, names: list[str]) -> int:
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise ValueError(f"--class {value!r} is not one of {names} (or an index below {len(names)})")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="Grad-CAM and sources of L4, window attention and KROAFE (the paper's Figure 8)",
        description="Rows of faces; columns: the face, Grad-CAM of L4 and KROAFE (from --checkpoint, a full "
                    "model), of window attention (from --window-checkpoint, an rw model), the sources of both "
                    "attention blocks next to their Grad-CAM (which L4 tokens the evidence was read from; "
                    "--no-sources leaves them out) and the class probabilities. Every map explains the same "
                    "class: --class, else the full model's prediction.")
    parser.add_argument("--checkpoint", required=True, help="full SFER-MDFAE checkpoint (L4 and KROAFE maps)")
    parser.add_argument("--window-checkpoint", help="rw checkpoint (window attention map)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", nargs="+", metavar="PATH", help="face image file(s)")
    source.add_argument("--synthetic", type=int, metavar="N", help="N generated synthetic classroom faces")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic faces (default 0)")
    parser.add_argument("--out", required=True, metavar="PNG", help="figure to write")
    parser.add_argument("--method", default="gradcam", choices=list(METHODS), help="CAM method (default gradcam)")
    parser.add_argument("--class", dest="target_class", metavar="NAME", help="class to explain (default: predicted)")
    parser.add_argument("--topn", type=int, help="KROA topn to explain with (default: the checkpoint's)")
    parser.add_argument("--regions", type=int, help="KROA region count m (default: the checkpoint's)")
    parser.add_argument("--no-sources", dest="sources", action="store_false",
                        help="Grad-CAM only, without the sources columns")
    parser.set_defaults(func=run)
