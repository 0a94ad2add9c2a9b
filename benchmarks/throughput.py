"""Training and inference throughput, model FLOPs utilisation (MFU) and peak memory.

    python benchmarks/throughput.py --preset tiny                                   # CPU, fp32
    python benchmarks/throughput.py --device cuda --dtype bf16 --preset paper --variant full --batch-size 128

Three rates per preset and variant, images/s:

- **bare step**: forward + cross-entropy + backward + Adam on one batch of random
  images already on the device. An upper bound: no data loading.
- **loader step**: ``sfer.engine.train.train_one_epoch``, the loop ``sfer train``
  runs, over a DataLoader of synthetic faces built as ``sfer train`` builds it (the
  training transforms, its worker count, pinned memory on CUDA). What a training
  run gets per step, validation and checkpoints aside. The faces are drawn once
  into a pool of four batches and sampled with replacement; a real data set adds
  the decoding of its files.
- **inference**: the forward pass under ``torch.inference_mode``.

Both steps are set up as in ``sfer train``: on CUDA channels-last, fused Adam and,
for ``--dtype bf16``, bf16 autocast. Each rate is the median of ``--repeats``
timings of ``--steps`` (at least 20) steps that follow ``--warmup`` steps (the
first steps allocate memory, pick cuDNN algorithms and, with ``--compile``, compile).

MFU = achieved model FLOP/s / the device's peak. Model FLOPs per image come from
the project's own counter, :func:`sfer.models.complexity.count_macs` (2 FLOPs per
multiply-add of convolutions and matrix products, attention included; element-wise
work is not counted, as is usual for MFU); a training step is 3 forward passes'
worth (forward, and a backward pass of about twice the forward). The peak is the
dense bf16 tensor-core figure of the device's data sheet (``PEAK_BF16_TFLOPS``,
named in the output) or ``--peak-tflops``; for fp32 runs it still divides by the
bf16 peak, since bf16 is what the GPU path trains in. A CPU has no named peak: the
achieved TFLOP/s are printed and MFU reads n/a unless ``--peak-tflops`` is given.

Each row runs in a fresh process, so that no row inherits another's memory or
warm caches. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors
only); on the CPU the process's peak resident set (VmHWM), which includes the
Python interpreter, torch and the loader's face pool besides the model's tensors.

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
from torch.utils.data import RandomSampler

from sfer.data import IMAGENET_MEAN, IMAGENET_STD
from sfer.engine.config import TrainConfig
from sfer.engine.distributed import Context, resolve_device, usable_cores, use_device
from sfer.engine.evaluate import build_splits
from sfer.engine.train import build_optimizer, train_one_epoch, training_loader
from sfer.models import PRESETS, VARIANTS, build_model
from sfer.models.complexity import count_macs

# Dense bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets (their sparse figures
# halved). The first name found in the device's name wins: PCIe and NVL before SXM.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),   # SXM5 (reported as "H100 80GB HBM3")
    ("H200", 989.4),   # the H100's tensor cores with more and faster memory
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)
MIN_STEPS = 20


def machine(device: torch.device) -> str:
    """The accelerator's name, or the CPU model name (what lscpu prints) and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """``(peak TFLOP/s, where it comes from)``; ``(None, ...)`` when no peak is known."""
    if override is not None:
        return override, f"{override:g} TFLOP/s (--peak-tflops)"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_BF16_TFLOPS:
            if key in name:
                return tflops, f"{key} dense bf16 peak, {tflops:g} TFLOP/s"
    return None, "no named peak for this device: pass --peak-tflops"


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, steps: int, warmup: int, repeats: int, device: torch.device) -> float:
    """Median seconds per step of ``repeats`` runs of ``steps`` steps, after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


class Stopwatch:
    """Iterates a loader and notes the time (the device drained) when batch ``warmup`` is asked for."""

    def __init__(self, loader, warmup: int, device: torch.device):
        self.loader, self.warmup, self.device, self.started = loader, warmup, device, None

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.warmup:
                synchronize(self.device)
                self.started = time.perf_counter()
            yield batch


def loader_step_seconds(net, optimizer, preset: str, args, ctx: Context) -> float:
    """Median seconds per step of ``train_one_epoch`` over synthetic faces, after the warm-up."""
    cuda = ctx.device.type == "cuda"
    cfg = TrainConfig(preset=preset, num_train=4 * args.batch_size, num_val=1, num_test=1)
    preprocessing = {"image_size": PRESETS[preset].image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    faces = build_splits(cfg, preprocessing, splits=("train",))["train"]
    workers = args.num_workers if args.num_workers is not None else (min(8, usable_cores()) if cuda else 0)
    sampler = RandomSampler(faces, replacement=True, num_samples=args.batch_size * (args.warmup + args.steps),
                            generator=torch.Generator().manual_seed(0))
    loader = training_loader(faces, args.batch_size, sampler, workers, ctx.device, torch.Generator().manual_seed(0))
    times = []
    for _ in range(args.repeats):  # persistent workers: later repeats reuse them
        watch = Stopwatch(loader, args.warmup, ctx.device)
        train_one_epoch(net, watch, optimizer, ctx, amp=args.dtype == "bf16", sync_free=cuda)  # ends synced
        times.append((time.perf_counter() - watch.started) / args.steps)
    return statistics.median(times)


def measure(preset: str, variant: str, args, device: torch.device) -> dict:
    ctx = Context(use_device(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(preset, variant, num_classes=args.num_classes)
    size = PRESETS[preset].image_size
    forward_flops = 2 * count_macs(model, size)  # one image
    model.to(device)
    images = torch.randn(args.batch_size, 3, size, size, device=device)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    optimizer = build_optimizer(model, TrainConfig(lr=1e-5), device)

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
    loader_s = loader_step_seconds(net, optimizer, preset, args, ctx)
    return {"preset": preset, "variant": variant, "forward_flops": forward_flops,
            "train": args.batch_size / train_s, "loader": args.batch_size / loader_s,
            "infer": args.batch_size / infer_s, "train_mem": peak_memory_mib(device), "infer_mem": infer_mem}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = bf16 autocast")
    parser.add_argument("--preset", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--steps", type=int, default=MIN_STEPS, help=f"timed steps per timing (>= {MIN_STEPS})")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure (the median is shown)")
    parser.add_argument("--num-workers", type=int, help="loader processes (default: as sfer train)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s, for MFU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    args = parser.parse_args(argv)
    if args.steps < MIN_STEPS:
        parser.error(f"--steps {args.steps}: time at least {MIN_STEPS} steps, fewer time noise rather than throughput")

    device = resolve_device(args.device)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    memory = "peak CUDA memory allocated" if device.type == "cuda" else "peak process RSS"
    print(f"Device: {device.type} ({machine(device)}); dtype {args.dtype}; batch {args.batch_size}; "
          f"{args.steps} timed steps after {args.warmup}, median of {args.repeats}; torch {torch.__version__}"
          f"{'; torch.compile' if args.compile else ''}\nMFU against: {peak_source}\n")
    print(f"| preset | variant | GFLOP/img fwd | train img/s bare | train img/s with loader | inference img/s | "
          f"train TFLOP/s bare | MFU bare | MFU with loader | train {memory} (MiB) | inference {memory} (MiB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    spawn = multiprocessing.get_context("spawn")
    for preset in args.preset:
        for variant in args.variant:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                r = pool.submit(measure, preset, variant, args, device).result()
            train_flops = 3 * r["forward_flops"]  # per image: forward + backward (about 2 forwards)
            achieved = {k: r[k] * train_flops / 1e12 for k in ("train", "loader")}  # TFLOP/s
            mfu = {k: f"{100 * v / peak:.1f}%" if peak else "n/a" for k, v in achieved.items()}
            print(f"| {preset} | {variant} | {r['forward_flops'] / 1e9:.3f} | {r['train']:.1f} | {r['loader']:.1f} | "
                  f"{r['infer']:.1f} | {achieved['train']:.3g} | {mfu['train']} | {mfu['loader']} | "
                  f"{r['train_mem']:.0f} | {r['infer_mem']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
