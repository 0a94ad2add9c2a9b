"""Synthetic-face generation rate on one CPU core.

    python benchmarks/synth_rate.py [--n 2000] [--image-size 112] [--repeats 5]

Pins the process to one core (where the OS allows) and one BLAS/torch thread, renders
``n`` images ``repeats`` times (fresh indices each time) and prints images per second:
the best repeat (the machine's capacity, least disturbed by other processes) and the
median. The mask of each image is not drawn here; ``--with-masks`` adds it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from sfer.data import SyntheticClassroomFaces  # noqa: E402


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--with-masks", action="store_true")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    ds = SyntheticClassroomFaces(args.n * (args.repeats + 1), seed=0, image_size=args.image_size)
    for i in range(100):  # warm caches (resampling operators, noise tile)
        ds[i]
    rates = []
    for r in range(1, args.repeats + 1):
        start = time.perf_counter()
        for i in range(r * args.n, (r + 1) * args.n):
            ds[i]
            if args.with_masks:
                ds.mask(i)
        rates.append(args.n / (time.perf_counter() - start))
    what = "images + masks" if args.with_masks else "images"
    print(f"{args.image_size}x{args.image_size} {what}, one core of {cpu_name()}: "
          f"best {max(rates):.0f}/s, median {statistics.median(rates):.0f}/s over {args.repeats} x {args.n}")


if __name__ == "__main__":
    main()
