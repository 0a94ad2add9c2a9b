"""Parameter and multiply-add counts, measured by PyTorch rather than hand-counted."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .sfer_mdfae import PRESETS, VARIANTS, build_model

# Table 4 of the paper: SFER-MDFAE with 7 classes.
PAPER_PARAMETERS = 31.975e6
PAPER_MACS = 6.362e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 224) -> int:
    """Multiply-adds of one forward pass on one image, by ``torch.utils.flop_counter``.

    The counter reports FLOPs (2 per multiply-add) of convolutions and matrix
    products, the operations thop counts too. Attention is forced onto PyTorch's
    math kernel while counting, so that its two matrix products are seen (the fused
    CPU kernel is invisible to the counter).
    """
    was_training = model.training
    model.eval()
    images = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images)
    model.train(was_training)
    return counter.get_total_flops() // 2


def complexity_table(presets=tuple(PRESETS), variants=VARIANTS, num_classes: int = 7,
                     image_size: int = 224) -> list[dict]:
    """One row per preset and variant: parameters and multiply-adds of one image."""
    rows = []
    for preset in presets:
        for variant in variants:
            model = build_model(preset, variant, num_classes)
            rows.append({"preset": preset, "variant": variant,
                         "parameters": count_parameters(model), "macs": count_macs(model, image_size)})
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`complexity_table`, with the paper's Table 4 row for comparison."""
    lines = ["| preset | variant | parameters (M) | multiply-adds (G) | vs paper params | vs paper MACs |",
             "| --- | --- | ---: | ---: | ---: | ---: |",
             f"| paper's Table 4 | SFER-MDFAE | {PAPER_PARAMETERS / 1e6:.3f} | {PAPER_MACS / 1e9:.3f} | | |"]
    for r in rows:
        rel = " | "
        if r["preset"] == "paper":
            rel = (f"{100 * (r['parameters'] / PAPER_PARAMETERS - 1):+.2f}% | "
                   f"{100 * (r['macs'] / PAPER_MACS - 1):+.2f}%")
        lines.append(f"| {r['preset']} | {r['variant']} | {r['parameters'] / 1e6:.3f} | "
                     f"{r['macs'] / 1e9:.3f} | {rel} |")
    return "\n".join(lines)
