"""Training and inference throughput (images/s) and peak memory per preset and variant.

    python benchmarks/throughput.py                                    # CPU, fp32, tiny and paper
    python benchmarks/throughput.py --device cuda --dtype bf16 --preset paper --batch-size 64

A training step is forward + cross-entropy + backward + Adam on random images at
the preset's input size (224 for paper, 112 for tiny), as in ``sfer train``: on
CUDA with channels-last and, for ``--dtype bf16``, bf16 autocast. Inference is
the forward pass under ``torch.inference_mode``. Each figure is the median of
``--repeats`` timings of ``--steps`` steps after ``--warmup`` steps (the first steps
allocate memory, pick kernels and, with ``--compile``, compile).

Each row runs in a fresh process, so that no row inherits another's memory or
warm caches. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors
only); on the CPU the process's peak resident set (VmHWM), which includes the
Python interpreter and torch itself besides the model's tensors.

Prints a markdown table (paste it into docs/benchmarks.md) headed by the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from sfer.models import PRESETS, VARIANTS, build_model


def machine(device: torch.device) -> str:
    """The accelerator's name, or the CPU model name (what lscpu prints) and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak (CUDA; on the CPU, Linux resets VmHWM through /proc/self/clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource  # no /proc: the process's lifetime peak

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step, steps: int, warmup: int, repeats: int, device: torch.device) -> float:
    """Median seconds per step."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def measure(preset: str, variant: str, args, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(preset, variant, num_classes=args.num_classes).to(device)
    size = PRESETS[preset].image_size
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def train_step():
        with autocast:
            loss = F.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step():
        with torch.inference_mode(), autocast:
            net(images)

    # inference first: its peak must not include the gradients and Adam state of training
    reset_peak_memory(device)
    model.eval()
    infer_s = timed(infer_step, args.steps, args.warmup, args.repeats, device)
    infer_mem = peak_memory_mib(device)
    reset_peak_memory(device)
    model.train()
    train_s = timed(train_step, args.steps, args.warmup, args.repeats, device)
    return {"preset": preset, "variant": variant, "train": args.batch_size / train_s,
            "infer": args.batch_size / infer_s, "train_mem": peak_memory_mib(device), "infer_mem": infer_mem}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = bf16 autocast")
    parser.add_argument("--preset", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure (the median is shown)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    memory = "peak CUDA memory allocated" if device.type == "cuda" else "peak process RSS"
    print(f"Device: {device.type} ({machine(device)}); dtype {args.dtype}; batch {args.batch_size}; "
          f"torch {torch.__version__}{'; torch.compile' if args.compile else ''}\n")
    print(f"| preset | variant | train img/s | inference img/s | train {memory} (MiB) | "
          f"inference {memory} (MiB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    spawn = multiprocessing.get_context("spawn")
    for preset in args.preset:
        for variant in args.variant:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                r = pool.submit(measure, preset, variant, args, device).result()
            print(f"| {preset} | {variant} | {r['train']:.1f} | {r['infer']:.1f} | {r['train_mem']:.0f} | "
                  f"{r['infer_mem']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
