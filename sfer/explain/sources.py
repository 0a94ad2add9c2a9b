"""Sources: which L4 tokens the evidence of an attention block was *read from*.

A CAM of an attention block's output R shows where the evidence sits once attention
has moved it between tokens. Sources answer the other question. For a block
R = L4 + Attn(LN(L4)) followed by the global average pool and the head, hold the
attention probabilities (after routing) and LayerNorm's standard deviation fixed:
this is the conservative propagation of Ali et al. (ICML 2022), which treats them as
gates rather than as inputs. The block is then affine in L4,

    share_c = w_c . mean_hw(R) = sum_t g_t . L4_t + rest,

where w_c = ``head.weight[c, -C:]`` (the head's columns that read F_dl), g_t the
gradient of share_c at token t, and ``rest`` what no token owns (the biases of LN,
V, W^o and LePE, carried through the frozen attention). Gradient x input is then
exact: ``tokens.sum() + rest == share_c``, which the tests check to float precision.

``rest`` is computed independently, as the same frozen block applied to an all-zero
L4, so completeness is a real check that the explain path is affine, not a
definition. Padded positions (m not dividing 7) are not L4 tokens: they get nothing.

Each token's share splits exactly in two. The residual join carries L4_t straight to
the pool, so its part is ``residual_t = w_c . L4_t / (h w)``, whatever the attention
does, and it is the same formula for KROAFE and window attention. The rest of the
token's share, ``attention_t``, is what the attention branch (LN, V, the
probabilities, W^o, LePE) read from that token. Comparisons of KROA and window
attention (Figure 8) use the attention part: the residual part would blur them with
a term both blocks share. ``attention`` is taken from the gradient of the branch
alone (``R - L4``) and ``residual`` from the closed form, so ``tokens == attention +
residual`` is a check, not a definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .loading import class_indices, to_batch

# target name -> the block attribute whose explain mode it uses
BLOCKS = {"kroafe": "kroafe", "window": "window_fe"}


@dataclass(frozen=True)
class TokenContributions:
    """What :func:`token_contributions` returns (all on the CPU, float64).

    ``tokens`` (B, h, w): each L4 token's signed contribution to the explained logit, split
    into ``attention`` (B, h, w), read by the attention branch, and ``residual`` (B, h, w),
    ``w_c . L4_t / (h w)`` carried by the residual join; ``rest`` (B,): the part no token
    owns; ``share`` (B,): the block's share of the logit, ``head.weight[c, -C:] . F_dl``,
    from the ordinary forward; ``class_idx`` (B,).
    """

    tokens: torch.Tensor
    attention: torch.Tensor
    residual: torch.Tensor
    rest: torch.Tensor
    share: torch.Tensor
    class_idx: torch.Tensor

    @property
    def completeness_error(self) -> torch.Tensor:
        """|tokens.sum + rest - share| per image (B,): float rounding only, if the decomposition holds."""
        return (self.tokens.sum(dim=(1, 2)) + self.rest - self.share).abs()


def block_for(model: nn.Module, target: str) -> nn.Module:
    """The attention block a sources target explains; ``ValueError`` if the model lacks it."""
    if target not in BLOCKS:
        raise ValueError(f"sources are defined for attention blocks: target must be one of {list(BLOCKS)}, "
                         f"got {target!r} (L4 has no attention to hold fixed)")
    if not hasattr(model, BLOCKS[target]):
        owners = "the rw variant" if target == "window" else "the full, nm and np variants"
        raise ValueError(f"sources target {target!r} needs a model with `{BLOCKS[target]}` ({owners}); "
                         f"this model is the {getattr(model, 'variant', type(model).__name__)!r} variant")
    return getattr(model, BLOCKS[target])


def token_contributions(model: nn.Module, images, target: str = "kroafe",
                        class_idx: int | Sequence[int] | None = None) -> TokenContributions:
    """Each L4 token's exact share of the class logit through ``target``'s attention block.

    ``images``: a preprocessed (B, 3, H, W) tensor or PIL image(s); ``target``: ``kroafe``
    or ``window``; ``class_idx``: one class for all, one per image, or ``None`` for each
    image's predicted class. Runs in eval mode; the model's mode is restored.
    """
    block = block_for(model, target)
    batch = to_batch(model, images)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            feats = model.features(batch)
        indices = class_indices(class_idx, len(batch), model.num_classes)
        classes = feats["logits"].argmax(dim=1) if indices is None else torch.tensor(indices, device=batch.device)
        l4, fdl = feats["L4"], feats["F_dl"]  # (B, C, h, w), (B, C)
        w = model.head.weight[classes, -l4.shape[1]:].detach()  # (B, C): the columns that read F_dl
        with torch.enable_grad():
            x = l4.detach().clone().requires_grad_(True)
            r = block(x, frozen=l4)  # (B, C, h, w)
            share = (r.mean(dim=(2, 3)) * w).sum(dim=1)  # (B,)
            branch = ((r - x).mean(dim=(2, 3)) * w).sum(dim=1)  # (B,): the attention branch alone
            (grad,) = torch.autograd.grad(share.sum(), x, retain_graph=True)
            (branch_grad,) = torch.autograd.grad(branch.sum(), x)
        with torch.no_grad():
            tokens = (grad * l4).sum(dim=1)  # (B, h, w), gradient x input
            attention = (branch_grad * l4).sum(dim=1)  # (B, h, w)
            residual = torch.einsum("bc,bchw->bhw", w, l4) / (l4.shape[2] * l4.shape[3])  # (B, h, w)
            rest = (block(torch.zeros_like(l4), frozen=l4).mean(dim=(2, 3)) * w).sum(dim=1)  # (B,)
            ordinary = (fdl * w).sum(dim=1)  # (B,)
    finally:
        model.train(was_training)
    return TokenContributions(*(t.double().cpu() for t in (tokens, attention, residual, rest, ordinary)),
                              classes.cpu())


def sources_map(model: nn.Module, images, target: str = "kroafe", class_idx=None,
                size: tuple[int, int] | None = None, part: str = "tokens") -> np.ndarray:
    """The positive part of the token contributions (``part``: ``tokens``, the whole share, or
    ``attention``, what the attention branch read), bilinearly resized to ``size`` (default: the
    input's), not scaled: (B, H, W) float32 >= 0. What key-region energy is measured on."""
    if part not in ("tokens", "attention"):
        raise ValueError(f"part must be 'tokens' or 'attention', got {part!r}")
    batch = to_batch(model, images)
    tokens = getattr(token_contributions(model, batch, target, class_idx), part).clamp(min=0)  # (B, h, w)
    size = tuple(batch.shape[-2:]) if size is None else size
    return F.interpolate(tokens[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
