"""What a training step keeps for its backward pass, and KROA's gathered K/V within it.

    python benchmarks/activation_memory.py                       # paper preset, batch 2, bf16 autocast on the CPU
    python benchmarks/activation_memory.py --scale-to 128

Measured, not timed: a ``torch.autograd.graph.saved_tensors_hooks`` pair sees every
tensor autograd saves during one training forward pass; storages are counted once
(views of one storage, such as the heads of K', share it). The tensors saved while
KROA's forward runs are reported apart, and so are K' and V' (the keys and values of
each region's ``topn`` routed regions, gathered by ``k_cells[batch, index]``) from
their shapes: (B, m², topn * P, C) each, P = patches per region.

On the CPU the dtypes follow CPU autocast, whose op lists are close to CUDA's, not
identical. Activations grow linearly with the batch, so ``--scale-to`` multiplies the
per-image figures: an estimate of a GPU batch, not a GPU measurement. Weights,
gradients, Adam's moments, cuDNN workspaces and transient buffers come on top.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F

from sfer.models import PRESETS, build_model


def saved_bytes(model, images, labels, autocast) -> tuple[int, int]:
    """``(bytes saved for backward by the whole step, of which while KROA runs)``."""
    storages: dict[int, tuple[int, bool]] = {}
    inside = [False]

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages.setdefault(storage.data_ptr(), (storage.nbytes(), inside[0]))
        return tensor

    attention = model.kroafe.attention
    enter = attention.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
    leave = attention.register_forward_hook(lambda *_: inside.__setitem__(0, False))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            F.cross_entropy(model(images).float(), labels).backward()
    finally:
        enter.remove(), leave.remove()
    total = sum(n for n, _ in storages.values())
    return total, sum(n for n, kroa in storages.values() if kroa)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=list(PRESETS))
    parser.add_argument("--batch-size", type=int, default=2, help="measured batch")
    parser.add_argument("--scale-to", type=int, default=128, help="batch the per-image figures are scaled to")
    parser.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="bf16 = CPU bf16 autocast")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_model(args.preset, "full", num_classes=7).train()
    size = PRESETS[args.preset].image_size
    images, labels = torch.randn(args.batch_size, 3, size, size), torch.arange(args.batch_size) % 7
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()
    total, kroa = saved_bytes(model, images, labels, autocast)

    attention = model.kroafe.attention
    m, topn, channels = attention.regions, attention.topn, PRESETS[args.preset].widths[-1]
    patches = (model.map_size // m) ** 2 if model.map_size % m == 0 else -(-model.map_size // m) ** 2
    element = 2 if args.dtype == "bf16" else 4
    kv_gathered = 2 * m * m * topn * patches * channels * element  # K' and V', one image
    kv_plain = 2 * model.map_size ** 2 * channels * element  # K and V, one image
    mib, n = 2**20, args.scale_to
    print(f"{args.preset} preset, m = {m}, topn = {topn}, {args.dtype}; measured at batch {args.batch_size} on the "
          f"CPU, scaled to batch {n}\n")
    print(f"| saved for backward | per image (KiB) | batch {n} (MiB) |")
    print("| --- | ---: | ---: |")
    for name, value in (("whole training step", total / args.batch_size), ("inside KROA", kroa / args.batch_size),
                        ("K' and V' (gathered, from their shapes)", kv_gathered),
                        ("K and V (before the gather)", kv_plain)):
        print(f"| {name} | {value / 1024:.1f} | {value * n / mib:.1f} |")
    print(f"\nK' and V' are {kv_gathered / kv_plain:.0f} times K and V, and "
          f"{100 * kv_gathered * args.batch_size / total:.1f}% of what the step saves for backward.")


if __name__ == "__main__":
    main()
