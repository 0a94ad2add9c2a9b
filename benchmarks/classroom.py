"""The classroom path on synthetic frames: detection, framing, end-to-end accuracy, seconds per frame.

    python benchmarks/classroom.py                  # 20 scenes + 10 frames of pasted faces, CPU
    python benchmarks/classroom.py --calibrate      # where FaceDetector puts the landmarks on training faces

Two kinds of frame, every face known:

* **scenes** (``classroom_scene``, seeds 100, 101, ...): 1280 x 720 rooms of 15 students in
  three rows, with light, blur, occluders and heads in front of heads;
* **pasted faces** (``pasted_frame``, the frame of issue 19): 15 training faces
  (``SyntheticClassroomFaces`` seed 19, nuisance 0.5, the shipped model's recipe) resized
  to 80, 110 and 150 pixels and pasted on a plain wall. A pasted square is exactly a
  training image.

MTCNN's detections are matched to the true faces (``sfer.classroom.evaluate``). Printed,
with 95% intervals (Wilson for a share; for the paired difference aligned - square over
the same faces, the normal interval of the mean of per-face differences):

* detection recall and precision, and recall on *clear* faces (no occluder, at most 5%
  under a nearer head) whose training square is at least 80 pixels;
* expression accuracy of the checkpoint on the matched faces for three crops: the naive
  crop of the detected box, the crop aligned by the landmarks, the true training square;
* end-to-end accuracy over every true face (a missed face counts as wrong);
* seconds per frame of ``sfer.classroom.analyse`` with both heatmaps, and of detection
  alone (scenes; ``--no-timing`` skips the whole-path run).

Prints a markdown report headed by the machine, its load average and the checkpoint (paste it
into docs/classroom.md). ``--calibrate`` prints instead the mean landmarks of 556-odd pasted
training faces (seed 8, sides 72-164) in training pixels: ``sfer.classroom.align.DETECTED_TEMPLATE``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from sfer.classroom import FaceDetector, analyse
from sfer.classroom.detect import FACTOR, MIN_CONSISTENCY, MTCNN_FACTOR, MTCNN_THRESHOLDS, THRESHOLDS
from sfer.classroom.evaluate import (
    SceneScore,
    landmarks_in_training_square,
    pasted_frame,
    score_pasted,
    score_scene,
    wilson,
)
from sfer.data import SyntheticClassroomFaces
from sfer.data.scenes import classroom_scene
from sfer.explain import load_model

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data_samples" / "checkpoints"
PASTED_SEED, CALIBRATION_SEED = 19, 8  # apart from each other and from the training splits' streams


def machine() -> str:
    """The CPU model name (what lscpu prints), the threads torch uses and the load average."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    name = names[0] if names else platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def provenance(checkpoint: Path) -> str:
    """The checkpoint's name and first 12 hex digits of its SHA-256, and the repository's commit."""
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"checkpoint {Path(checkpoint).name} (sha256 {digest}), commit {commit}"


def paired(score: SceneScore) -> str:
    """Aligned minus square accuracy on the same matched faces, in points, with its 95% interval."""
    n, b, c = score.matched, score.aligned_only, score.square_only
    if n == 0:
        return "n/a"
    mean = (b - c) / n
    half = 1.96 * math.sqrt(max((b + c) / n - mean * mean, 0.0) / n)
    return f"{100 * mean:+.1f} [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}] points (n = {n})"


def report(name: str, score: SceneScore) -> None:
    """The markdown rows of one kind of frame."""
    print(f"| {name}: detection recall | {wilson(score.matched, score.faces)} |")
    print(f"| {name}: detection precision | {wilson(score.matched, score.detections)} |")
    print(f"| {name}: recall on clear faces of 80 px or more | {wilson(score.clear_matched, score.clear_faces)} |")
    for kind, label in (("box", "naive crop of the detected box"), ("aligned", "aligned crop"),
                        ("square", "true training square")):
        print(f"| {name}: accuracy on detected faces, {label} | {wilson(score.correct[kind], score.matched)} |")
    print(f"| {name}: aligned - square, same faces | {paired(score)} |")
    print(f"| {name}: end-to-end accuracy (aligned; a missed face is wrong) | "
          f"{wilson(score.correct['aligned'], score.faces)} |")


def calibrate(detector: FaceDetector, frames: int = 40) -> None:
    """Print the mean and spread of the detector's landmarks on pasted training faces, in training pixels."""
    faces = SyntheticClassroomFaces(15 * frames, seed=CALIBRATION_SEED, nuisance=0.5)
    points = []
    for f in range(frames):
        j = f % 4
        frame = pasted_frame(faces, 15 * f, sides=(72 + 6 * j, 100 + 8 * j, 140 + 8 * j))
        points.append(landmarks_in_training_square(frame, detector(frame.image)))
    points = np.concatenate(points)  # (M, 5, 2)
    print(f"{len(points)} faces; mean (x, y) and standard deviation of each landmark in the 112-pixel square:")
    for name, mean, spread in zip(("left eye", "right eye", "nose tip", "mouth left", "mouth right"),
                                  points.mean(0), points.std(0)):
        print(f"  {name:11s} [{mean[0]:.2f}, {mean[1]:.2f}]  sd {spread[0]:.2f}, {spread[1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINTS / "tiny_full.pt")
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--pasted", type=int, default=10, help="frames of 15 pasted training faces")
    parser.add_argument("--thresholds", type=float, nargs=3, default=THRESHOLDS, metavar=("P", "R", "O"),
                        help="MTCNN's score thresholds (default: FaceDetector's, %(default)s)")
    parser.add_argument("--factor", type=float, default=FACTOR, help="pyramid step (default %(default)s)")
    parser.add_argument("--min-consistency", type=float, default=MIN_CONSISTENCY,
                        help="shift consistency a face must reach (default %(default)s)")
    parser.add_argument("--mtcnn", action="store_true",
                        help="MTCNN as published: thresholds 0.6 0.7 0.7, factor 0.709, no consistency check")
    parser.add_argument("--no-timing", action="store_true", help="skip the whole-path seconds per frame")
    parser.add_argument("--calibrate", action="store_true", help="print DETECTED_TEMPLATE's measurement and stop")
    args = parser.parse_args()

    if args.mtcnn:
        args.thresholds, args.factor, args.min_consistency = MTCNN_THRESHOLDS, MTCNN_FACTOR, 0.0
    detector = FaceDetector(thresholds=args.thresholds, factor=args.factor, min_consistency=args.min_consistency)
    if args.calibrate:
        calibrate(detector)
        return
    model = load_model(args.checkpoint)
    load_before = os.getloadavg()
    scenes, pasted = SceneScore(), SceneScore()
    frame_s, detect_s = [], []
    for seed in range(args.first_seed, args.first_seed + args.scenes):
        scene = classroom_scene(seed)
        start = time.perf_counter()
        detections = detector(scene.image)
        detect_s.append(time.perf_counter() - start)
        scenes = scenes + score_scene(scene, model, detector, detections)
        if not args.no_timing:
            start = time.perf_counter()
            analyse(scene.image, model, detector)
            frame_s.append(time.perf_counter() - start)
    faces = SyntheticClassroomFaces(15 * args.pasted, seed=PASTED_SEED, nuisance=0.5)
    for f in range(args.pasted):
        pasted = pasted + score_pasted(pasted_frame(faces, 15 * f), model, detector)
    load_after = os.getloadavg()

    print(f"Machine: {machine()}; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{provenance(args.checkpoint)}; MTCNN thresholds {tuple(args.thresholds)}, factor {args.factor}, "
          f"min consistency {args.min_consistency}; {args.scenes} scenes "
          f"(seeds {args.first_seed}..{args.first_seed + args.scenes - 1}, {scenes.faces} students) and "
          f"{args.pasted} frames of pasted faces ({pasted.faces} faces)\n")
    print("| measure | value [95% interval] |")
    print("| --- | --- |")
    report("scenes", scenes)
    report("pasted", pasted)
    if frame_s:
        print(f"| seconds per frame, whole path with both heatmaps | median {statistics.median(frame_s):.2f}, "
              f"worst {max(frame_s):.2f} |")
    print(f"| seconds per frame, detection alone | median {statistics.median(detect_s):.2f}, "
          f"worst {max(detect_s):.2f} |")


if __name__ == "__main__":
    main()
