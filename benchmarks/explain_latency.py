"""Explainer latency: one KROAFE Grad-CAM and one KROAFE sources map of one image, and Explorer slider moves.

    python benchmarks/explain_latency.py          # the shipped tiny checkpoints, CPU

A slider move is ``Explorer.update`` with a new ``topn`` or region count m: it
recomputes the full model's L4 and KROAFE maps, probabilities and routing (the rw
model's window map is cached), redraws the figure and encodes the PNG the browser
shows; it is timed in both views (Grad-CAM, and sources of the attention blocks). Each figure is the median (and the worst) of ``--repeats`` timings after
``--warmup`` calls. The targets (issue 5): both under 0.5 s on a 2-core CPU.

Prints a markdown table headed by the machine (paste it into docs/explainability.md).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from sfer.explain import compute_cam, load_model
from sfer.explain.loading import synthetic_faces
from sfer.widgets import Explorer

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"


def machine() -> str:
    """The CPU model name (what lscpu prints) and the threads torch uses."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def timings(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINTS / "tiny_full.pt")
    parser.add_argument("--window-checkpoint", default=CHECKPOINTS / "tiny_rw.pt")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    model = load_model(args.checkpoint)
    image = synthetic_faces(1, seed=7).images[0]
    cam = timings(lambda: compute_cam(model, image, "kroafe"), args.warmup, args.repeats)
    sources = timings(lambda: compute_cam(model, image, "kroafe", method="sources"), args.warmup, args.repeats)

    explorer = Explorer(checkpoint=args.checkpoint, window_checkpoint=args.window_checkpoint,
                        images=synthetic_faces(4, seed=7).images)
    rows = [("one KROAFE Grad-CAM, one image", cam), ("one KROAFE sources map, one image", sources)]
    for view in ("gradcam", "sources"):
        explorer.update(view=view, regions=7, topn=15)
        topn = iter(range(10 ** 6))
        rows.append((f"Explorer ({view} view): topn slider move",
                     timings(lambda: explorer.update(topn=1 + next(topn) % 49), args.warmup, args.repeats)))
        regions = iter(range(10 ** 6))
        rows.append((f"Explorer ({view} view): regions slider move",
                     timings(lambda: explorer.update(regions=1 + next(regions) % 7), args.warmup, args.repeats)))

    print(f"Machine: {machine()}; torch {torch.__version__}; checkpoints {Path(args.checkpoint).name}, "
          f"{Path(args.window_checkpoint).name}\n")
    print("| operation | median (s) | worst (s) | target |")
    print("| --- | --- | --- | --- |")
    for name, values in rows:
        print(f"| {name} | {statistics.median(values):.3f} | {max(values):.3f} | < 0.5 |")


if __name__ == "__main__":
    main()
