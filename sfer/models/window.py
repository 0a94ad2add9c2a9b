"""Window attention, the ``rw`` baseline (POSTER++'s window mechanism on L4)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .regions import from_cells, pad_to_multiple, to_cells


class WindowAttention(nn.Module):
    """Multi-head attention inside fixed w x w windows with a relative position bias.

    POSTER++ takes the queries of its window cross-attention from a facial-landmark
    network. SFER-MDFAE removes that network, so here the queries come from L4
    itself through a learned linear map, like the keys and values: the only
    difference from KROA is then *where* a patch may look (a fixed local window
    instead of routed regions). The default w = 3 keeps the window local on the
    7x7 L4 (a patch sees at most 9 of 49 patches); the map is padded to a multiple
    of w and the padding is masked out of the attention. The bias table is Swin's:
    one learned value per head and relative offset.
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size: int = 3):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)  # (2, w*w)
        offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window_size - 1  # (w², w², 2)
        self.register_buffer("relative_index", offsets[..., 0] * (2 * window_size - 1) + offsets[..., 1],
                             persistent=False)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        x, valid = pad_to_multiple(x, ws)  # (B, Hp, Wp, C); padding < w, so no window is all padding
        hp, wp = x.shape[1:3]
        cells = to_cells(x, ws, ws)  # (B, windows, w², C)
        key_valid = to_cells(valid[..., None], ws, ws)[..., 0]  # (windows, w²)
        q, k, v = self.qkv(cells).chunk(3, dim=-1)  # (B, windows, w², C) each
        windows = cells.shape[1]

        def split_heads(t):  # (B, windows, w², C) -> (B, windows, heads, w², d)
            return t.reshape(b, windows, ws * ws, self.num_heads, c // self.num_heads).transpose(2, 3)

        bias = self.relative_position_bias[self.relative_index].permute(2, 0, 1)  # (heads, w², w²)
        bias = bias.masked_fill(~key_valid[:, None, None, :], float("-inf"))  # (windows, heads, w², w²)
        attended = F.scaled_dot_product_attention(
            split_heads(q), split_heads(k), split_heads(v), attn_mask=bias.to(q.dtype)
        )  # (B, windows, heads, w², d)
        attended = attended.transpose(2, 3).reshape(b, windows, ws * ws, c)
        attended = from_cells(attended, ws, ws, hp, wp)[:, :h, :w]  # (B, H, W, C)
        return self.proj(attended)


class WindowAttentionFE(nn.Module):
    """The ``rw`` block: R = L4 + WindowAttention(LayerNorm(L4)), channel-first in and out."""

    def __init__(self, dim: int, **attention_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = WindowAttention(dim, **attention_kwargs)

    def forward(self, l4: torch.Tensor) -> torch.Tensor:
        x = l4.permute(0, 2, 3, 1)  # (B, H, W, C)
        r = x + self.attention(self.norm(x))
        return r.permute(0, 3, 1, 2)  # (B, C, H, W)
