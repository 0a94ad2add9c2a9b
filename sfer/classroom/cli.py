"""``sfer classroom FRAME --out DIR``: every student's box, expression, probability and heatmaps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sfer.models import CheckpointError

from .detect import FACTOR, MIN_CONSISTENCY, THRESHOLDS, ClassroomError
from .pipeline import CROPS, VIEWS

DEFAULT_CHECKPOINT = Path("data_samples") / "checkpoints" / "tiny_full.pt"


def run(args: argparse.Namespace) -> int:
    from sfer.explain import load_model

    from .detect import FaceDetector
    from .pipeline import analyse, read_frame, write_outputs

    views = [] if args.views == "none" else args.views.split(",")
    try:
        frame = read_frame(args.frame)
        checkpoint = Path(args.checkpoint) if args.checkpoint else _shipped_checkpoint()
        model = load_model(checkpoint)
        if not all(0.0 <= t < 1.0 for t in args.thresholds):
            raise ValueError(f"--thresholds must lie in [0, 1), got {args.thresholds}")
        if not 0.0 < args.factor < 1.0:
            raise ValueError(f"--factor must lie between 0 and 1, got {args.factor}")
        if not 0.0 <= args.min_consistency < 1.0:
            raise ValueError(f"--min-consistency must lie in [0, 1), got {args.min_consistency}")
        detector = FaceDetector(min_face=args.min_face, thresholds=args.thresholds, factor=args.factor,
                                min_consistency=args.min_consistency, max_side=args.max_side)
        room = analyse(frame, model, detector, crop=args.crop, views=views)
    except (ClassroomError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"sfer classroom: error: {err}", file=sys.stderr)
        return 1
    paths = write_outputs(room, args.out)
    mode = "" if frame.mode == "RGB" else f", {frame.mode} read as RGB"
    print(f"{args.frame}: {frame.width} x {frame.height}{mode}; {len(room.students)} student(s) found")
    if not room.students:
        print("no face found: students.csv has its header only")
    for name, n in room.counts().items():
        print(f"  {name:<10} {n}")
    print(f"wrote {paths['students']}, {paths['counts']}, {paths['annotated']}"
          + (f" and {len(room.students)} heatmap strip(s) in {Path(args.out) / 'heatmaps'}" if views and room.students
             else ""))
    return 0


def _shipped_checkpoint() -> Path:
    from sfer.explain.loading import CHECKPOINTS

    path = CHECKPOINTS / "tiny_full.pt"
    if not path.is_file():
        raise ClassroomError(f"no --checkpoint given and the shipped {DEFAULT_CHECKPOINT} is not at {path}")
    return path


def _views(value: str) -> str:
    if value == "none":
        return value
    unknown = [v for v in value.split(",") if v not in VIEWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown view(s) {unknown}; use a comma list of {list(VIEWS)} or 'none'")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classroom", help="detect every face of a classroom frame and read each student's expression",
        description="MTCNN finds the faces (facenet-pytorch, installed with: pip install --no-deps "
                    "facenet-pytorch==2.6.0); each face is aligned by its five landmarks to the framing the "
                    "model was trained on, classified, and explained (Grad-CAM of KROAFE and its sources). "
                    "Writes students.csv, counts.csv, annotated.png and heatmaps/student_NN.png under --out.")
    parser.add_argument("frame", metavar="FRAME", help="the classroom image (any format Pillow reads; grayscale works)")
    parser.add_argument("--checkpoint", help=f"model checkpoint (default: the shipped {DEFAULT_CHECKPOINT})")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--crop", default="aligned", choices=CROPS,
                        help="aligned (default): five-landmark alignment; box: the naive crop of the detected box")
    parser.add_argument("--views", default=",".join(VIEWS), type=_views,
                        help="heatmaps per student, comma-separated from gradcam,sources, or none "
                             "(default gradcam,sources)")
    parser.add_argument("--min-face", type=int, default=20, help="smallest face side searched, pixels (default 20)")
    parser.add_argument("--thresholds", type=float, nargs=3, default=THRESHOLDS, metavar=("P", "R", "O"),
                        help="MTCNN's P-, R- and O-Net score thresholds (default %(default)s; MTCNN's own are "
                             "0.6 0.7 0.7; see docs/classroom.md)")
    parser.add_argument("--factor", type=float, default=FACTOR,
                        help="step of MTCNN's image pyramid (default %(default)s; MTCNN's own is 0.709)")
    parser.add_argument("--min-consistency", type=float, default=MIN_CONSISTENCY,
                        help="O-Net's mean face probability over nine windows shifted around each face that the face "
                             "must reach (default %(default)s; 0 keeps what the cascade returns)")
    parser.add_argument("--max-side", type=int, default=1600,
                        help="frames with a longer side are downscaled to it for detection (default 1600)")
    parser.set_defaults(func=run)
