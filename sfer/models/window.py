"""Window attention, the ``rw`` variant: KROA's matched control.

POSTER++ reads L4 with attention inside fixed local windows. For the paper's claim
that *routing* is what helps (Figure 6, ``rw``), the control here differs from KROA
only in which keys each query may read: the same q/k/v and output projections, the
same heads, the same LePE, no extra bias. So a difference between ``full`` and ``rw``
is the difference between routed regions and fixed windows, and nothing else.
(``docs/departures.md``: the earlier ``rw`` had Swin's relative-position bias and no
LePE, which mixed two changes; it was replaced and its checkpoint retrained.)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kroa import KeyRegionAttention, ResidualAttention


def window_ids(h: int, w: int, window_size: int) -> torch.Tensor:
    """Row-major index of the w x w window of every patch: (H, W). Windows tile the map
    from the top left; at the bottom and right edge a window may be cut short (on the
    7x7 L4 with w = 3: windows of 3, 3 and 1 patches per side)."""
    return (torch.arange(h)[:, None] // window_size) * math.ceil(w / window_size) \
        + torch.arange(w)[None, :] // window_size


class WindowAttention(nn.Module):
    """Multi-head attention inside fixed, non-overlapping w x w windows, with KROA's LePE.

    POSTER++ takes its window queries from a facial-landmark network that SFER-MDFAE
    removes: here, as in KROA, queries, keys and values are linear maps of L4 itself.
    The default w = 3 keeps the window local on the 7x7 L4 (a patch reads at most 9 of
    49 patches; KROA at the paper's topn = 15 reads 15). The parameters are KROA's, built
    in the same order, so the same seed initialises both alike.

    Explain mode (``forward(x, frozen=x_ref)``): the probabilities come from ``frozen``
    (detached) and are written out, so the output is affine in ``x``.
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size: int = 3, lepe_kernel: int = 5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size!r}")
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"

    def readable(self, h: int, w: int, device=None) -> torch.Tensor:
        """(HW, HW) bool: query i may read key j when both lie in one window."""
        ids = window_ids(h, w, self.window_size).flatten().to(device)  # (HW,)
        return ids[:, None] == ids[None, :]

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of every patch, (B, heads, HW, d) each."""
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        """Window attention of ``x`` (B, H, W, C) + LePE; ``frozen`` gives explain mode."""
        b, h, w, c = x.shape
        q, k, v = self._heads(x)  # (B, heads, HW, d) each
        lepe = self.lepe(v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)
        mask = self.readable(h, w, x.device)  # (HW, HW)
        if frozen is None:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, HW, d)
        else:
            q, k, _ = self._heads(frozen.detach())
            attended = KeyRegionAttention.probabilities(q, k, mask) @ v
        attended = attended.transpose(1, 2).reshape(b, h, w, c)  # concat heads
        return self.proj(attended) + lepe  # W^o and LePE, as in KROA (eqs 13-14)

    @torch.no_grad()
    def attention_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """What each patch reads, as a dense map: (B, heads, HW, HW), rows sum to 1."""
        q, k, _ = self._heads(x)
        return KeyRegionAttention.probabilities(q, k, self.readable(x.shape[1], x.shape[2], x.device))


class WindowAttentionFE(ResidualAttention):
    """The ``rw`` block: R = L4 + WindowAttention(LayerNorm(L4)), channel-first in and out."""

    def __init__(self, dim: int, **attention_kwargs):
        super().__init__(dim, WindowAttention(dim, **attention_kwargs))
