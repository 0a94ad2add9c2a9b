"""The classroom path on synthetic scenes: detection, framing, end-to-end accuracy, seconds per frame.

    python benchmarks/classroom.py                  # 20 scenes of 1280 x 720, 15 students each, CPU

For each scene (seeds 100, 101, ...): MTCNN's detections are matched to the true face
boxes at IoU >= 0.5 (``sfer.classroom.evaluate``). Printed, with Wilson 95% intervals:

* detection recall and precision (colour frames, and the same frames in grayscale);
* expression accuracy of ``tiny_full.pt`` on the matched faces for three crops: the naive
  crop of the detected box, the crop aligned by MTCNN's five landmarks, and the true
  training square (crop-only accuracy);
* end-to-end accuracy over every true face (a missed face counts as wrong), against the
  crop-only accuracy over every true face;
* seconds per frame of ``sfer.classroom.analyse`` (detection, alignment, classification,
  Grad-CAM and sources heatmaps of every student), and of detection alone; median and worst.

Prints a markdown report headed by the machine and its load average (paste it into docs/classroom.md).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sfer.classroom import FaceDetector, analyse, match
from sfer.classroom.evaluate import SceneScore, score_scene
from sfer.data.scenes import classroom_scene
from sfer.explain import load_model

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"


def machine() -> str:
    """The CPU model name (what lscpu prints), the threads torch uses and the load average."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    name = names[0] if names else platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def wilson(k: int, n: int) -> str:
    """k / n as a percentage with its Wilson 95% interval."""
    if n == 0:
        return "n/a"
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:.1f}% [{100 * (centre - half):.1f}, {100 * (centre + half):.1f}] ({k}/{n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINTS / "tiny_full.pt")
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--thresholds", type=float, nargs=3, default=(0.6, 0.7, 0.7), metavar=("P", "R", "O"),
                        help="MTCNN's score thresholds (default: its own 0.6 0.7 0.7)")
    args = parser.parse_args()

    model, detector = load_model(args.checkpoint), FaceDetector(thresholds=args.thresholds)
    load_before = os.getloadavg()
    colour, gray = SceneScore(), SceneScore()
    frame_s, detect_s = [], []
    for seed in range(args.first_seed, args.first_seed + args.scenes):
        scene = classroom_scene(seed, width=args.width, height=args.height)
        start = time.perf_counter()
        detections = detector(scene.image)
        detect_s.append(time.perf_counter() - start)
        colour = colour + score_scene(scene, model, detector, detections)
        gray_detections = detector(scene.image.convert("L"))
        gray = gray + SceneScore(len(scene.students), len(gray_detections),
                                 len(match(gray_detections.boxes, np.array([s.box for s in scene.students]))))
        start = time.perf_counter()
        analyse(scene.image, model, detector)
        frame_s.append(time.perf_counter() - start)
    load_after = os.getloadavg()

    faces, matched = colour.faces, colour.matched
    print(f"Machine: {machine()}; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"{args.scenes} scenes of {args.width} x {args.height} (seeds {args.first_seed}.."
          f"{args.first_seed + args.scenes - 1}), {faces} students; checkpoint {Path(args.checkpoint).name}; "
          f"MTCNN thresholds {tuple(args.thresholds)}\n")
    print("| measure | value [95% interval] |")
    print("| --- | --- |")
    print(f"| detection recall at IoU 0.5 | {wilson(matched, faces)} |")
    print(f"| detection precision at IoU 0.5 | {wilson(matched, colour.detections)} |")
    print(f"| recall, same frames in grayscale | {wilson(gray.matched, gray.faces)} |")
    print(f"| precision, same frames in grayscale | {wilson(gray.matched, gray.detections)} |")
    for kind, label in (("box", "naive crop of the detected box"), ("aligned", "aligned by the five landmarks"),
                        ("square", "true training square")):
        print(f"| accuracy on detected faces, {label} | {wilson(colour.correct[kind], matched)} |")
    print(f"| end-to-end accuracy (aligned; a missed face is wrong) | {wilson(colour.correct['aligned'], faces)} |")
    print(f"| crop-only accuracy (true squares of every face) | {wilson(colour.square_correct_all, faces)} |")
    print(f"| seconds per frame, whole path with both heatmaps | median {statistics.median(frame_s):.2f}, "
          f"worst {max(frame_s):.2f} |")
    print(f"| seconds per frame, detection alone | median {statistics.median(detect_s):.2f}, "
          f"worst {max(detect_s):.2f} |")


if __name__ == "__main__":
    main()
