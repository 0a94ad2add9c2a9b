"""The CPU training recipe against a plain fp32 eager loop, in one run.

    python benchmarks/cpu_recipe.py                  # tiny preset, batch 32, 3 rounds
    python benchmarks/cpu_recipe.py --rounds 5 --steps 40

``sfer train`` on a CPU that runs bf16 natively (AVX512-BF16 or AMX, as
``torch.cpu`` reports them) trains with bf16 autocast, channels-last tensors and
``torch.compile``; elsewhere in plain fp32 eager. This script times both on the same
model, the same batch size and the same loader (the training transforms over drawn
synthetic faces, as ``sfer train`` builds them), with ``train_one_epoch``, the loop
``sfer train`` runs. Rounds alternate the two, so that a change in the machine's
load hits both alike; each figure is the median over rounds, after one warm-up
epoch per recipe (the first compile: about 47 s cold, seconds from inductor's cache).

Prints what the CPU supports, the two rates, their ratio, and a markdown row for
``docs/training.md``. Accuracy is not measured here: the claims grid trains ``full``
on the default regime both ways over three seeds (``docs/claims.md``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from sfer.data import IMAGENET_MEAN, IMAGENET_STD, synthetic_splits, train_transform
from sfer.engine.distributed import Context, native_bf16
from sfer.engine.evaluate import Rendered, uses_bf16
from sfer.engine.train import build_optimizer, train_one_epoch, will_compile
from sfer.engine.config import TrainConfig
from sfer.models import build_model
from torch.utils.data import DataLoader, Subset


def make_loader(num_images: int, batch_size: int) -> DataLoader:
    faces = synthetic_splits(num_images, 1, 1, seed=0, image_size=112, nuisance=0.5)["train"]
    data = Rendered(faces, train_transform(112, IMAGENET_MEAN, IMAGENET_STD, flip=True, erase_p=0.0))
    generator = torch.Generator().manual_seed(0)
    return DataLoader(Subset(data, range(num_images)), batch_size=batch_size, shuffle=True, generator=generator,
                      drop_last=True)


def make_step(fast: bool):
    """(net, optimizer, amp, channels_last) of one recipe, as ``sfer train`` sets it up."""
    torch.manual_seed(0)
    model = build_model("tiny", "full", num_classes=6)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if fast else model
    optimizer = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    return net, optimizer, fast


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    cpu = torch.device("cpu")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"native bf16: {native_bf16(cpu)}; sfer train defaults here: bf16 {uses_bf16(cpu, True)}, "
          f"compile {will_compile(TrainConfig(), cpu)}")
    loader = make_loader(args.steps * args.batch_size, args.batch_size)
    ctx = Context(cpu)
    recipes = {"fp32 eager": make_step(False), "bf16 + channels-last + compile": make_step(True)}
    rates = {name: [] for name in recipes}
    for name, (net, optimizer, fast) in recipes.items():
        t0 = time.perf_counter()
        train_one_epoch(net, loader, optimizer, ctx, amp=fast, channels_last=fast)
        print(f"warm-up epoch, {name}: {time.perf_counter() - t0:.1f} s")
    for round_ in range(args.rounds):
        order = list(recipes) if round_ % 2 == 0 else list(reversed(recipes))
        for name in order:
            net, optimizer, fast = recipes[name]
            rates[name].append(train_one_epoch(net, loader, optimizer, ctx, amp=fast,
                                               channels_last=fast)["images_per_s"])
    plain, fast = (statistics.median(rates[name]) for name in recipes)
    for name in recipes:
        print(f"{name}: median {statistics.median(rates[name]):.1f} img/s over {args.rounds} rounds "
              f"({', '.join(f'{r:.1f}' for r in rates[name])})")
    print(f"speed-up: {fast / plain:.2f}x")
    print(f"| {platform.processor() or platform.machine()} | {torch.get_num_threads()} | {plain:.0f} | {fast:.0f} | "
          f"{fast / plain:.2f}x |")


if __name__ == "__main__":
    main()
